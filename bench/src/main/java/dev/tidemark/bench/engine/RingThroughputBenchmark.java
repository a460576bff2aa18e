package dev.tidemark.bench.engine;

import com.lmax.disruptor.YieldingWaitStrategy;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;

/**
 * Tracked 4 KiB writes per second through the write ring into a null store, with 0, 1 or 4 recording bitmaps
 * (64 KiB granularity, 64 GiB disk, random offsets), from 1 or 2 producer threads, through the fused (one ring
 * thread) or the staged (three) pipeline; JMH confines each thread's state to it.
 *
 * <p>{@code oneProducer}/{@code twoProducers} publish without waiting for completion; the ring's capacity gives the
 * back-pressure, so that rate counts publications and says little about completed writes. The {@code ...Completed}
 * figures keep {@value #WINDOW} writes in flight per producer and count a write when its completion has run, as an
 * NBD client sees it. Fused and staged are parameters of the same run, so their ratio comes from one run.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class RingThroughputBenchmark
{
    private static final long DISK = 64L << 30;
    private static final int BLOCK = 4096;

    /** The disk, shared by the producers. */
    @State(Scope.Benchmark)
    public static class Disk
    {
        @Param({"0", "1", "4"})
        int bitmaps;

        /** The ring's wait strategy: the default backoff-blocking one, or Disruptor's yielding one. */
        @Param({"default", "yielding"})
        String wait;

        /** The ring's pipeline: {@link Pipeline#FUSED} or {@link Pipeline#STAGED}. */
        @Param({"fused", "staged"})
        String pipeline;

        TrackedDisk disk;
        Path directory;

        @Setup(Level.Trial)
        public void open() throws IOException
        {
            directory = Files.createTempDirectory("tidemark-ring-bench");
            DiskOptions options = DiskOptions.of(new NullStore(DISK), directory).withRingSize(8192)
                .withPipeline(Pipeline.valueOf(pipeline.toUpperCase(java.util.Locale.ROOT)));
            if ("yielding".equals(wait))
            {
                options = options.withWaitStrategy(YieldingWaitStrategy::new);
            }
            disk = TrackedDisk.open(options);
            for (int i = 0; i < bitmaps; i++)
            {
                disk.transaction(BitmapActions.add("b" + i));
            }
        }

        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            disk.flush();
            disk.close();
            try (var files = Files.list(directory))
            {
                for (final Path file : files.toList())
                {
                    Files.delete(file);
                }
            }
            Files.delete(directory);
        }
    }

    /** One producer's buffer and offsets. */
    @State(Scope.Thread)
    public static class Producer
    {
        final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);
        final SplittableRandom random = new SplittableRandom(42);
        final IoCompletion ignore = (sequence, error) -> { };
        final java.util.concurrent.atomic.AtomicLong completed = new java.util.concurrent.atomic.AtomicLong();
        final IoCompletion count = (sequence, error) -> completed.incrementAndGet();
        long submitted;
    }

    /** Writes in flight per producer in the completed-write figures, as an NBD client at queue depth 64. */
    static final int WINDOW = 64;

    /**
     * Publishes {@link #WINDOW} writes and waits until the ring has completed all of them: completed writes per
     * second, where the figures without completions count publications only.
     */
    private static long windowCompleted(final Disk disk, final Producer producer)
    {
        for (int i = 0; i < WINDOW; i++)
        {
            final long offset = producer.random.nextLong(DISK / BLOCK) * BLOCK;
            disk.disk.submit(RequestKind.WRITE, offset, BLOCK, producer.block, false, false, producer.count);
        }
        producer.submitted += WINDOW;
        while (producer.completed.get() < producer.submitted)
        {
            Thread.yield();
        }
        return producer.submitted;
    }

    /**
     * @param disk the disk.
     * @param producer this thread's state.
     * @return writes submitted so far.
     */
    @Benchmark
    @Threads(1)
    @OperationsPerInvocation(WINDOW)
    public long oneProducerCompleted(final Disk disk, final Producer producer)
    {
        return windowCompleted(disk, producer);
    }

    /**
     * @param disk the disk.
     * @param producer this thread's state.
     * @return writes submitted so far.
     */
    @Benchmark
    @Threads(2)
    @OperationsPerInvocation(WINDOW)
    public long twoProducersCompleted(final Disk disk, final Producer producer)
    {
        return windowCompleted(disk, producer);
    }

    private static long write(final Disk disk, final Producer producer)
    {
        final long offset = producer.random.nextLong(DISK / BLOCK) * BLOCK;
        return disk.disk.submit(RequestKind.WRITE, offset, BLOCK, producer.block, false, false, producer.ignore);
    }

    /**
     * @param disk the disk.
     * @param producer this thread's state.
     * @return the sequence, so that nothing is optimised away.
     */
    @Benchmark
    @Threads(1)
    public long oneProducer(final Disk disk, final Producer producer)
    {
        return write(disk, producer);
    }

    /**
     * @param disk the disk.
     * @param producer this thread's state.
     * @return the sequence, so that nothing is optimised away.
     */
    @Benchmark
    @Threads(2)
    public long twoProducers(final Disk disk, final Producer producer)
    {
        return write(disk, producer);
    }
}
