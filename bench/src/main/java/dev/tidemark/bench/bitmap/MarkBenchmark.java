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
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;

/**
 * JMH state shared by its benchmark threads (each marks through the lock-free bitmap with its own cursor):
 * mark throughput on a 16 MiB mapped bitmap (128 Mi chunks of 64 KiB, an 8 TiB disk) against a plain,
 * non-atomic heap {@code long[]} of the same size, for random, sequential and hot-spot write patterns on a
 * mostly clear and a mostly set bitmap. JMH drives the threads; each benchmark thread has its own cursor.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class MarkBenchmark
{
    static final long CHUNKS = 128L << 20;
    static final long GRANULARITY = 65536;
    static final long HOT_CHUNKS = CHUNKS / 100;

    /** The shared bitmap (and its heap twin); read by every benchmark thread. */
    @State(Scope.Benchmark)
    public static class Bitmaps
    {
        @Param({"clear", "set"})
        public String fill;

        MappedBitmap mapped;
        long[] heap;
        Path file;

        @Setup(Level.Trial)
        public void open() throws IOException
        {
            file = Files.createTempFile("tidemark-bench-", ".tmbm");
            Files.delete(file);
            mapped = MappedBitmap.create(file, "bench", CHUNKS * GRANULARITY, GRANULARITY);
            heap = new long[(int)(CHUNKS / 64)];
            if ("set".equals(fill))
            {
                mapped.mark(0, CHUNKS * GRANULARITY);
                java.util.Arrays.fill(heap, -1L);
            }
        }

        /** Keeps a "clear" bitmap mostly clear: one 1 s iteration marks well under a third of it. */
        @Setup(Level.Iteration)
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
            Files.deleteIfExists(file);
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

    @Benchmark
    @Threads(1)
    public boolean mapped1Thread(final Bitmaps bitmaps, final Cursor cursor)
    {
        return bitmaps.mapped.mark(cursor.nextChunk() * GRANULARITY, 4096);
    }

    @Benchmark
    @Threads(2)
    public boolean mapped2Threads(final Bitmaps bitmaps, final Cursor cursor)
    {
        return bitmaps.mapped.mark(cursor.nextChunk() * GRANULARITY, 4096);
    }

    @Benchmark
    @Threads(1)
    public long heapLongArray1Thread(final Bitmaps bitmaps, final Cursor cursor)
    {
        final long chunk = cursor.nextChunk();
        final long[] heap = bitmaps.heap;
        final int word = (int)(chunk >>> 6);
        final long old = heap[word];
        heap[word] = old | (1L << chunk);
        return old;
    }
}
