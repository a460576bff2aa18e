package dev.tidemark.bench.bitmap;

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
 * Listing the dirty extents of a 128 MiB bitmap (1 Gi chunks) at 0.1, 1 and 10 % dirty, clustered (runs of
 * 256 chunks) or scattered (single chunks); one benchmark thread walks a bitmap nobody else touches.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class ExtentWalkBenchmark
{
    static final long CHUNKS = 1L << 30;
    static final long GRANULARITY = 65536;

    @Param({"0.1", "1", "10"})
    public double percentDirty;

    @Param({"clustered", "scattered"})
    public String layout;

    MappedBitmap bitmap;
    long extents;

    @Setup(Level.Trial)
    public void fill()
    {
        bitmap = MappedBitmap.createAnonymous("walk", CHUNKS * GRANULARITY, GRANULARITY);
        final SplittableRandom random = new SplittableRandom(1);
        final long target = (long)(CHUNKS * percentDirty / 100);
        final long run = "clustered".equals(layout) ? 256 : 1;
        long dirty = 0;
        while (dirty < target)
        {
            final long batch = (target - dirty) / run + 1;
            for (long i = 0; i < batch; i++)
            {
                final long chunk = random.nextLong(CHUNKS - run);
                bitmap.mark(chunk * GRANULARITY, run * GRANULARITY);
            }
            dirty = bitmap.dirtyChunkCount();
        }
        final long[] count = {0};
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (o, l) ->
        {
            count[0]++;
            return true;
        });
        extents = count[0];
        System.out.printf("%n[walk setup] %s %.1f%%: %d dirty chunks in %d extents%n",
            layout, percentDirty, bitmap.dirtyChunkCount(), extents);
    }

    @TearDown(Level.Trial)
    public void close()
    {
        bitmap.close();
    }

    @Benchmark
    public long listExtents()
    {
        final long[] sum = {0};
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (offset, length) ->
        {
            sum[0] += length;
            return true;
        });
        return sum[0];
    }
}
