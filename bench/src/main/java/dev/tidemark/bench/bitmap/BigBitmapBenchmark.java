package dev.tidemark.bench.bitmap;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import dev.tidemark.bitmap.MappedBitmap;
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

/**
 * Benchmark-scoped JMH state used by one benchmark thread: bitmaps of a 64 TiB disk at 4 KiB granularity
 * (2 GiB of data words each) with 0.1 % of the chunks dirty, in runs of {@code run} chunks placed at
 * random. Measures adding an anonymous bitmap, opening a cleanly closed file, merging one bitmap into an
 * empty one and clearing a dirty one; each should cost in proportion to the dirty part, not the disk.
 * Files go to {@code /dev/shm} when it exists (a disk's block allocation is not what is measured).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class BigBitmapBenchmark
{
    static final long GRANULARITY = 4096;
    static final long DISK = 64L << 40;
    static final long CHUNKS = DISK / GRANULARITY;

    /** Chunks per dirty run: 256 is a 1 MiB write, 4096 a 16 MiB one. */
    @Param({"256", "4096"})
    public long run;

    Path dir;
    Path file;
    MappedBitmap source;
    MappedBitmap target;
    MappedBitmap opened;

    @Setup(Level.Trial)
    public void fill() throws IOException
    {
        final Path shm = Path.of("/dev/shm");
        dir = Files.isDirectory(shm) ? Files.createTempDirectory(shm, "tidemark-bench-") : Files.createTempDirectory("tidemark-bench-");
        file = dir.resolve("big.tmbm");
        source = MappedBitmap.createAnonymous("source", DISK, GRANULARITY);
        target = MappedBitmap.createAnonymous("target", DISK, GRANULARITY);
        final SplittableRandom random = new SplittableRandom(7);
        final long runs = CHUNKS / 1000 / run;
        for (long i = 0; i < runs; i++)
        {
            final long first = random.nextLong(CHUNKS / run) * run;
            source.mark(first * GRANULARITY, run * GRANULARITY);
        }
        try (MappedBitmap persistent = MappedBitmap.create(file, "big", DISK, GRANULARITY))
        {
            persistent.merge(source);
        }
    }

    @TearDown(Level.Trial)
    public void close() throws IOException
    {
        source.close();
        target.close();
        Files.deleteIfExists(file);
        Files.deleteIfExists(dir);
    }

    /** The target starts empty for merge, and dirty (the source's bits) for clearAll. */
    @Setup(Level.Invocation)
    public void prepareTarget(final org.openjdk.jmh.infra.BenchmarkParams params)
    {
        if (params.getBenchmark().endsWith("clearAll"))
        {
            target.merge(source);
        }
        else if (params.getBenchmark().endsWith("merge"))
        {
            target.clearAll();
        }
    }

    @TearDown(Level.Invocation)
    public void closeOpened()
    {
        if (opened != null)
        {
            opened.close();
            opened = null;
        }
    }

    @Benchmark
    public MappedBitmap addAnonymous()
    {
        opened = MappedBitmap.createAnonymous("added", DISK, GRANULARITY);
        return opened;
    }

    @Benchmark
    public MappedBitmap openClean() throws IOException
    {
        opened = MappedBitmap.open(file);
        return opened;
    }

    @Benchmark
    public MappedBitmap merge()
    {
        target.merge(source);
        return target;
    }

    @Benchmark
    public MappedBitmap clearAll()
    {
        target.clearAll();
        return target;
    }
}
