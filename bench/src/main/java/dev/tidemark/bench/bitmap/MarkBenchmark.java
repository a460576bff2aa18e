package dev.tidemark.bench.bitmap;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import dev.tidemark.bitmap.MappedBitmap;
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
 * JMH states used by one benchmark thread each (one marker per disk, as in production: the ring's mark handler):
 * mark throughput on a 16 MiB mapped bitmap (128 Mi chunks of 64 KiB, an 8 TiB disk) against a plain, non-atomic
 * heap {@code long[]} of the same size, for random, sequential and hot-spot write patterns.
 *
 * <p>Fill states are the same for both sides and for every pattern: an invocation is a batch of {@value #BATCH}
 * marks (under 1 % of the chunks). "clear" clears both bitmaps before every batch, outside the timing, so a batch
 * always marks a nearly empty bitmap whose pages are resident (no side wraps round and starts hitting set bits);
 * "set" keeps both all set. {@code mappedFirstTouch} reports, separately, a batch on a bitmap file created sparse
 * just before it (every page is faulted in on its first mark), as after a disk's bitmap is added.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class MarkBenchmark
{
    static final long CHUNKS = 128L << 20;
    static final long GRANULARITY = 65536;
    static final long HOT_CHUNKS = CHUNKS / 100;
    static final int BATCH = 1 << 20;

    /** @return a new bitmap of {@link #CHUNKS} chunks in a sparse file at a fresh temporary path. */
    static MappedBitmap createSparse() throws IOException
    {
        final Path file = Files.createTempFile("tidemark-bench-", ".tmbm");
        Files.delete(file);
        return MappedBitmap.create(file, "bench", CHUNKS * GRANULARITY, GRANULARITY);
    }

    /** The bitmap and its heap twin; one benchmark thread. */
    @State(Scope.Thread)
    public static class Bitmaps
    {
        @Param({"clear", "set"})
        public String fill;

        MappedBitmap mapped;
        long[] heap;

        @Setup(Level.Trial)
        public void open() throws IOException
        {
            mapped = createSparse();
            heap = new long[(int)(CHUNKS / 64)];
            mapped.mark(0, CHUNKS * GRANULARITY);
            java.util.Arrays.fill(heap, -1L);
            // Every page touched once, so "clear" measures resident pages, as a bitmap in use has.
            reset();
        }

        /** Same fill before every batch on both sides. */
        @Setup(Level.Invocation)
        public void reset()
        {
            if ("clear".equals(fill))
            {
                mapped.clearAll();
                java.util.Arrays.fill(heap, 0L);
            }
        }

        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            mapped.close();
            Files.deleteIfExists(mapped.file());
        }
    }

    /** A bitmap file created sparse before every batch; one benchmark thread. */
    @State(Scope.Thread)
    public static class FreshFile
    {
        MappedBitmap mapped;

        @Setup(Level.Invocation)
        public void create() throws IOException
        {
            mapped = createSparse();
        }

        @TearDown(Level.Invocation)
        public void delete() throws IOException
        {
            mapped.close();
            Files.deleteIfExists(mapped.file());
        }
    }

    /** Per-thread position generator. */
    @State(Scope.Thread)
    public static class Cursor
    {
        @Param({"random", "sequential", "hotspot"})
        public String pattern;

        long seed;
        long next;
        int kind;

        @Setup(Level.Trial)
        public void seed()
        {
            seed = System.nanoTime() | 1;
            next = (seed >>> 1) % CHUNKS;
            kind = "sequential".equals(pattern) ? 1 : "hotspot".equals(pattern) ? 2 : 0;
        }

        long nextChunk()
        {
            switch (kind)
            {
                case 1:
                    next = next + 1 == CHUNKS ? 0 : next + 1;
                    return next;
                case 2:
                {
                    final long r = xorshift();
                    // 90 % of writes land in 1 % of the disk.
                    return (r & 0xF) < 14 ? (r >>> 8) % HOT_CHUNKS : (r >>> 8) % CHUNKS;
                }
                default:
                    return (xorshift() >>> 8) % CHUNKS;
            }
        }

        private long xorshift()
        {
            long x = seed;
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            seed = x;
            return x;
        }
    }

    /**
     * @param bitmaps the bitmaps.
     * @param cursor this thread's positions.
     * @return marks that set a bit.
     */
    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long mapped(final Bitmaps bitmaps, final Cursor cursor)
    {
        return markBatch(bitmaps.mapped, cursor);
    }

    /**
     * @param fresh a bitmap file created sparse before this batch.
     * @param cursor this thread's positions.
     * @return marks that set a bit.
     */
    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long mappedFirstTouch(final FreshFile fresh, final Cursor cursor)
    {
        return markBatch(fresh.mapped, cursor);
    }

    /** One batch of 4 KiB marks at the cursor's chunks; @return marks that set a bit. */
    private static long markBatch(final MappedBitmap bitmap, final Cursor cursor)
    {
        long gained = 0;
        for (int i = 0; i < BATCH; i++)
        {
            gained += bitmap.mark(cursor.nextChunk() * GRANULARITY, 4096) ? 1 : 0;
        }
        return gained;
    }

    /**
     * @param bitmaps the bitmaps.
     * @param cursor this thread's positions.
     * @return a fold of the old words.
     */
    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long heapLongArray(final Bitmaps bitmaps, final Cursor cursor)
    {
        final long[] heap = bitmaps.heap;
        long fold = 0;
        for (int i = 0; i < BATCH; i++)
        {
            final long chunk = cursor.nextChunk();
            final int word = (int)(chunk >>> 6);
            final long old = heap[word];
            heap[word] = old | (1L << chunk);
            fold ^= old;
        }
        return fold;
    }
}
