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
 * Benchmark-scoped JMH state used by one benchmark thread: merge (OR) and count of two 128 MiB bitmaps
 * (1 Gi chunks); GB/s = 0.134 / (ms per op) * 1000. The sources are filled with random words: "every-word" sets
 * about half the bits of every word, "sparse" sets one bit in 1 % of the words. For "sparse", GB/s counts 128 MiB the
 * operation never reads (the summary level skips clear words): the trial prints the non-zero source words, and
 * words touched per second = that count / (seconds per op) is the figure to compare.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class MergeCountBenchmark
{
    static final long CHUNKS = 1L << 30;
    static final long GRANULARITY = 65536;

    @Param({"every-word", "sparse"})
    public String fill;

    MappedBitmap source;
    MappedBitmap target;

    @Setup(Level.Trial)
    public void fill()
    {
        source = MappedBitmap.createAnonymous("source", CHUNKS * GRANULARITY, GRANULARITY);
        target = MappedBitmap.createAnonymous("target", CHUNKS * GRANULARITY, GRANULARITY);
        final SplittableRandom random = new SplittableRandom(2);
        final long words = CHUNKS / 64;
        long nonZero = 0;
        for (long word = 0; word < words; word++)
        {
            if ("every-word".equals(fill))
            {
                long bits = random.nextLong();
                while (bits != 0)
                {
                    final long bit = Long.numberOfTrailingZeros(bits);
                    bits &= bits - 1;
                    source.mark(((word << 6) + bit) * GRANULARITY, 1);
                }
            }
            else if (random.nextInt(100) == 0)
            {
                source.mark(((word << 6) + random.nextInt(64)) * GRANULARITY, 1);
                nonZero++;
            }
        }
        System.out.println("source fill " + fill + ": non-zero words "
            + ("every-word".equals(fill) ? words : nonZero) + " of " + words);
    }

    /** Each merge starts from an empty target, so every source word is really ORed in. */
    @Setup(Level.Invocation)
    public void emptyTarget()
    {
        target.clearAll();
    }

    @TearDown(Level.Trial)
    public void close()
    {
        source.close();
        target.close();
    }

    @Benchmark
    public MappedBitmap merge()
    {
        target.merge(source);
        return target;
    }

    @Benchmark
    public long count()
    {
        return source.dirtyChunkCount();
    }
}
