package dev.tidemark.bench.io;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;
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

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Not thread-safe: one benchmark thread per state. What a backup pump does to a target: fill a fresh
 * 256 MiB image in /dev/shm with cluster-aligned 4 MiB writes, then close it (a qcow2 close writes the
 * metadata). Raw file against qcow2 with 64 KiB clusters; the ratio is the qcow2 writer's overhead.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class StoreWriteBenchmark
{
    private static final int SIZE = 256 << 20;
    private static final int CHUNK = 4 << 20;

    @Param({"raw", "qcow2"})
    public String format;

    private final ByteBuffer data = ByteBuffer.allocateDirect(CHUNK);
    private Path dir;
    private Path file;
    private BlockStore store;

    /** Fills the source buffer. */
    @Setup(Level.Trial)
    public void setUpTrial() throws IOException
    {
        final byte[] bytes = new byte[CHUNK];
        new SplittableRandom(7).nextBytes(bytes);
        data.put(bytes).flip();
        dir = Files.createTempDirectory(Path.of("/dev/shm"), "tidemark-store-bench");
    }

    /** Creates a fresh, empty target. */
    @Setup(Level.Invocation)
    public void createTarget() throws IOException
    {
        file = dir.resolve("target." + format);
        Files.deleteIfExists(file);
        store = "raw".equals(format)
            ? RawFileStore.create(file, SIZE)
            : Qcow2Writer.create(file, SIZE, Qcow2Writer.Options.defaults());
    }

    /** Deletes the target. */
    @TearDown(Level.Invocation)
    public void deleteTarget() throws IOException
    {
        store.close();
        Files.deleteIfExists(file);
    }

    /** Removes the directory. */
    @TearDown(Level.Trial)
    public void tearDownTrial() throws IOException
    {
        Files.deleteIfExists(dir);
    }

    /** Writes 256 MiB in 4 MiB chunks and flushes. */
    @Benchmark
    public void fillAndFlush() throws IOException
    {
        for (long offset = 0; offset < SIZE; offset += CHUNK)
        {
            store.write(offset, data.duplicate());
        }
        store.flush();
    }
}
