package dev.tidemark.bench.durable;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * The cost of durable mode (issue 6): 4 KiB random writes through a {@link TrackedDisk} on a raw file, queue depth 16
 * (16 asynchronous writes in flight per invocation, like an NBD client), durable against lazy. {@code steady}: the
 * working set (64 MiB) is dirty already, so no write gains a bit and nothing needs forcing; {@code fresh}: every write
 * lands in a clean 64 KiB chunk of a 16 GiB sparse disk (the bitmap is cleared at a cut when every chunk was used), so
 * every batch must force bitmap pages before its data. Aux counters report group commits (forces) per second and
 * writes per second. {@code storage} puts image and bitmaps in /dev/shm (tmpfs: msync is cheap, this measures the
 * engine's own cost) or in /tmp (the machine's disk: msync reaches the device). One benchmark thread, state per run.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
public class DurableCostBenchmark
{
    static final int QUEUE_DEPTH = 16;
    static final int BLOCK = 4096;
    static final long GRANULARITY = 64 << 10;
    static final long STEADY_SET = 64L << 20;
    static final long FRESH_DISK = 16L << 30;

    /** The disk under test, one per trial; confined to the benchmark thread. */
    @State(Scope.Thread)
    public static class Disk
    {
        @Param({"lazy", "durable"})
        public String mode;

        @Param({"steady", "fresh"})
        public String workingSet;

        @Param({"shm"})
        public String storage;

        TrackedDisk disk;
        Path directory;
        final ByteBuffer[] buffers = new ByteBuffer[QUEUE_DEPTH];
        final SplittableRandom random = new SplittableRandom(42);
        long[] order;
        int next;
        long size;

        @Setup(Level.Trial)
        public void open() throws IOException
        {
            directory = Files.createTempDirectory(Path.of("shm".equals(storage) ? "/dev/shm" : "/tmp"), "tm-durable");
            final boolean fresh = "fresh".equals(workingSet);
            size = fresh ? FRESH_DISK : STEADY_SET;
            final Path image = directory.resolve("disk.raw");
            disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image, size),
                DiskOptions.bitmapDirectoryFor(image)).withDurable("durable".equals(mode)));
            disk.transaction(BitmapActions.add("b", GRANULARITY, true, false));
            for (int i = 0; i < QUEUE_DEPTH; i++)
            {
                final byte[] data = new byte[BLOCK];
                random.nextBytes(data);
                buffers[i] = ByteBuffer.allocateDirect(BLOCK).put(data).flip();
            }
            if (fresh)
            {
                final int chunks = (int) (size / GRANULARITY);
                order = new long[chunks];
                for (int i = 0; i < chunks; i++)
                {
                    order[i] = i;
                }
                for (int i = chunks - 1; i > 0; i--)
                {
                    final int j = random.nextInt(i + 1);
                    final long t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
            }
            else
            {
                // Steady state: every chunk of the working set is dirty before measuring.
                final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);
                for (long offset = 0; offset < size; offset += GRANULARITY)
                {
                    disk.write(offset, block.clear(), false);
                }
            }
        }

        long nextOffset()
        {
            if (order == null)
            {
                return random.nextLong(size / BLOCK) * BLOCK;
            }
            if (next == order.length)
            {
                // Every chunk was used: start over on a clean bitmap (one cut per 262144 writes).
                disk.transaction(BitmapActions.clear("b"));
                next = 0;
            }
            return order[next++] * GRANULARITY + random.nextLong(GRANULARITY / BLOCK) * BLOCK;
        }

        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            disk.close();
            try (Stream<Path> files = Files.walk(directory))
            {
                for (final Path file : files.sorted(Comparator.reverseOrder()).toList())
                {
                    Files.deleteIfExists(file);
                }
            }
        }
    }

    /** Forces and writes counted per iteration; JMH reports them per second. */
    @State(Scope.Thread)
    @AuxCounters(AuxCounters.Type.OPERATIONS)
    public static class Counters
    {
        /** Group commits (bitmap forces before a batch's data). */
        public long forces;
        /** Writes completed. */
        public long writes;
        long baseForces;

        @Setup(Level.Iteration)
        public void reset(final Disk disk)
        {
            forces = 0;
            writes = 0;
            baseForces = disk.disk.ringStatistics().groupCommits();
        }
    }

    @Benchmark
    @OperationsPerInvocation(QUEUE_DEPTH)
    public void randomWrite4k(final Disk state, final Counters counters) throws Exception
    {
        final CompletableFuture<?>[] inFlight = new CompletableFuture<?>[QUEUE_DEPTH];
        for (int i = 0; i < QUEUE_DEPTH; i++)
        {
            inFlight[i] = state.disk.writeAsync(state.nextOffset(), state.buffers[i].duplicate(), false);
        }
        CompletableFuture.allOf(inFlight).get();
        counters.writes += QUEUE_DEPTH;
        counters.forces = state.disk.ringStatistics().groupCommits() - counters.baseForces;
    }
}
