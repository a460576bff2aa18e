package dev.tidemark.bench.engine;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;

/**
 * 4 KiB random writes to a 1 GiB raw file in /dev/shm: through a {@link TrackedDisk} with one recording bitmap
 * (synchronous, and pipelined with a window per thread; fused or staged ring pipeline), against plain synchronous {@link FileChannel}
 * positional writes, from the same two threads; JMH confines each thread's state to it.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Threads(2)
public class TrackedFileWriteBenchmark
{
    private static final long SIZE = 1L << 30;
    private static final int BLOCK = 4096;
    private static final int WINDOW = 64;

    /** The files, shared by the writers. */
    @State(Scope.Benchmark)
    public static class Files2
    {
        /** The ring's pipeline: {@link Pipeline#FUSED} or {@link Pipeline#STAGED}. */
        @Param({"fused", "staged"})
        String pipeline;

        Path directory;
        TrackedDisk disk;
        FileChannel plain;

        @Setup(Level.Trial)
        public void open() throws IOException
        {
            directory = Files.createTempDirectory(Path.of("/dev/shm"), "tidemark-bench");
            final Path image = directory.resolve("tracked.raw");
            disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image, SIZE),
                DiskOptions.bitmapDirectoryFor(image)).withPipeline(Pipeline.valueOf(pipeline.toUpperCase(
                java.util.Locale.ROOT))));
            disk.transaction(BitmapActions.add("b0"));
            final Path other = directory.resolve("plain.raw");
            plain = FileChannel.open(other, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
            plain.truncate(SIZE);
            plain.write(ByteBuffer.allocate(1), SIZE - 1);
        }

        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            disk.close();
            plain.close();
            try (Stream<Path> files = Files.walk(directory))
            {
                for (final Path file : files.sorted(Comparator.reverseOrder()).toList())
                {
                    Files.delete(file);
                }
            }
        }
    }

    /** One writer's buffers, offsets and in-flight window. */
    @State(Scope.Thread)
    public static class Writer
    {
        final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);
        final ByteBuffer[] window = new ByteBuffer[WINDOW];
        final Semaphore inFlight = new Semaphore(WINDOW);
        final IoCompletion release = (sequence, error) -> inFlight.release();
        final SplittableRandom random = new SplittableRandom(7);
        int next;

        @Setup(Level.Trial)
        public void buffers()
        {
            for (int i = 0; i < WINDOW; i++)
            {
                window[i] = ByteBuffer.allocateDirect(BLOCK);
            }
        }

        @TearDown(Level.Iteration)
        public void drain() throws InterruptedException
        {
            inFlight.acquire(WINDOW);
            inFlight.release(WINDOW);
        }
    }

    /**
     * Tracked writes kept in flight, up to {@value #WINDOW} per thread, as an NBD connection keeps them.
     *
     * @param files the files.
     * @param writer this thread's state.
     * @throws InterruptedException if interrupted while the window is full.
     */
    @Benchmark
    public void trackedPipelined(final Files2 files, final Writer writer) throws InterruptedException
    {
        writer.inFlight.acquire();
        final ByteBuffer buffer = writer.window[writer.next++ & (WINDOW - 1)];
        buffer.clear();
        files.disk.submit(RequestKind.WRITE, writer.random.nextLong(SIZE / BLOCK) * BLOCK, BLOCK, buffer, false,
            false, writer.release);
    }

    /**
     * @param files the files.
     * @param writer this thread's state.
     * @throws IOException if a write fails.
     */
    @Benchmark
    public void tracked(final Files2 files, final Writer writer) throws IOException
    {
        writer.block.clear();
        files.disk.write(writer.random.nextLong(SIZE / BLOCK) * BLOCK, writer.block, false);
    }

    /**
     * @param files the files.
     * @param writer this thread's state.
     * @throws IOException if a write fails.
     */
    @Benchmark
    public void plainFileChannel(final Files2 files, final Writer writer) throws IOException
    {
        writer.block.clear();
        final long offset = writer.random.nextLong(SIZE / BLOCK) * BLOCK;
        while (writer.block.hasRemaining())
        {
            files.plain.write(writer.block, offset + writer.block.position());
        }
    }
}
