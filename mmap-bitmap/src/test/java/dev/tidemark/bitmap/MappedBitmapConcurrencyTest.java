package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Stress tests for lock-free marking: many markers, a concurrent walker and a concurrent clearer; each test
 * owns its threads and joins them under a watchdog.
 */
class MappedBitmapConcurrencyTest
{
    private static final int MARKERS = 4;
    private static final long GRANULARITY = 512;

    @TempDir
    Path dir;

    @Test
    void noMarkIsLostAndEveryReturnedMarkIsVisible() throws Exception
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> runMarkersAndWalker(seed),
            () -> "watchdog fired, seed " + seed);
    }

    private void runMarkersAndWalker(final long seed) throws Exception
    {
        final long chunks = 3 * 32768 + 77;
        final long diskSize = chunks * GRANULARITY - 100;
        final MappedBitmap.Options options = new MappedBitmap.Options().regionBytes(4096);
        try (MappedBitmap bitmap = MappedBitmap.create(dir.resolve("c.tmbm"), "c", diskSize, GRANULARITY, options))
        {
            final BitSet[] marked = new BitSet[MARKERS];
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final AtomicBoolean running = new AtomicBoolean(true);
            final CountDownLatch start = new CountDownLatch(1);
            final List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < MARKERS; t++)
            {
                final int id = t;
                marked[t] = new BitSet();
                threads.add(new Thread(() ->
                {
                    final SplittableRandom random = new SplittableRandom(seed + id);
                    try
                    {
                        start.await();
                        for (int i = 0; i < 100_000; i++)
                        {
                            // Hot area shared by all threads plus scattered marks, so CAS races happen.
                            final long offset = random.nextInt(4) == 0 ?
                                random.nextLong(64 * 64 * GRANULARITY) : random.nextLong(diskSize);
                            final long length = 1 + random.nextLong(Math.min(diskSize - offset, 200 * GRANULARITY));
                            bitmap.mark(offset, length);
                            marked[id].set((int)(offset / GRANULARITY), (int)((offset + length - 1) / GRANULARITY) + 1);
                            if (bitmap.nextDirty(offset) != offset)
                            {
                                throw new AssertionError("mark " + offset + "+" + length + " returned but nextDirty says " +
                                    bitmap.nextDirty(offset));
                            }
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                }, "marker-" + t));
            }
            threads.add(new Thread(() ->
            {
                try
                {
                    start.await();
                    long lastCount = 0;
                    while (running.get())
                    {
                        final long count = bitmap.dirtyChunkCount();
                        if (count < lastCount)
                        {
                            throw new AssertionError("dirty count went down from " + lastCount + " to " + count);
                        }
                        lastCount = count;
                        assertOrderedDisjointExtents(bitmap, diskSize);
                    }
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
            }, "walker"));
            threads.forEach(Thread::start);
            start.countDown();
            for (int t = 0; t < MARKERS; t++)
            {
                threads.get(t).join();
            }
            running.set(false);
            threads.get(MARKERS).join();
            if (failure.get() != null)
            {
                throw new AssertionError("seed " + seed, failure.get());
            }
            final BitSet union = new BitSet();
            for (final BitSet set : marked)
            {
                union.or(set);
            }
            MappedBitmapModelTest.checkAll(bitmap, union, diskSize, GRANULARITY);
        }
    }

    @ParameterizedTest(name = "chunks={0}")
    @ValueSource(longs = {256, 64 * 64 * 3})
    void noDirtyWordLosesItsSummaryWhenClearsRaceWithMarks(final long chunks) throws Exception
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> runMarkersAndClearer(seed, chunks),
            () -> "watchdog fired, seed " + seed);
    }

    private void runMarkersAndClearer(final long seed, final long chunks) throws Exception
    {
        // Small enough that markers and the clearer keep colliding on the same words and summary words.
        final long diskSize = chunks * GRANULARITY;
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("race", diskSize, GRANULARITY))
        {
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final AtomicBoolean running = new AtomicBoolean(true);
            final CountDownLatch start = new CountDownLatch(1);
            final List<Thread> markers = new ArrayList<>();
            final BitSet[] lastMarks = new BitSet[MARKERS];
            for (int t = 0; t < MARKERS; t++)
            {
                final int id = t;
                lastMarks[t] = new BitSet();
                markers.add(new Thread(() ->
                {
                    final SplittableRandom random = new SplittableRandom(seed + id);
                    try
                    {
                        start.await();
                        for (int i = 0; i < 2_000_000; i++)
                        {
                            final long chunk = random.nextLong(chunks);
                            bitmap.mark(chunk * GRANULARITY, 1);
                        }
                        // A final, never-cleared mark per thread: must survive the clearer's last pass.
                        final long last = (id * 997L) % chunks;
                        lastMarks[id].set((int)last);
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                }, "marker-" + t));
            }
            final Thread clearer = new Thread(() ->
            {
                final SplittableRandom random = new SplittableRandom(seed - 1);
                try
                {
                    start.await();
                    while (running.get())
                    {
                        if (random.nextInt(50) == 0)
                        {
                            bitmap.clearAll();
                        }
                        else
                        {
                            final long first = random.nextLong(chunks);
                            final long count = 1 + random.nextLong(Math.min(chunks - first, 200));
                            if (random.nextInt(4) == 0)
                            {
                                // A whole word at once: the word goes to zero and the summary bit is dropped.
                                final long word = first & ~63L;
                                bitmap.clear(word * GRANULARITY, 64 * GRANULARITY);
                                continue;
                            }
                            bitmap.clear(first * GRANULARITY, count * GRANULARITY);
                        }
                    }
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
            }, "clearer");
            markers.forEach(Thread::start);
            clearer.start();
            start.countDown();
            for (final Thread marker : markers)
            {
                marker.join();
            }
            running.set(false);
            clearer.join();
            if (failure.get() != null)
            {
                throw new AssertionError("seed " + seed, failure.get());
            }
            for (int t = 0; t < MARKERS; t++)
            {
                final long chunk = lastMarks[t].nextSetBit(0);
                bitmap.mark(chunk * GRANULARITY, 1);
            }
            assertOnlyStaleSummaryBits(bitmap, seed);
            for (int t = 0; t < MARKERS; t++)
            {
                final long chunk = lastMarks[t].nextSetBit(0);
                assertThat(bitmap.nextDirty(chunk * GRANULARITY)).isEqualTo(chunk * GRANULARITY);
            }
        }
    }
    @Test
    void markThatReturnedIsFoundThroughTheSummaryDespiteRacingClears() throws Exception
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> runSummaryRace(seed), () -> "watchdog fired, seed " + seed);
    }

    /**
     * One marker sets bits in word 1 while the clearer keeps zeroing that word, which drops its summary
     * bits. Word 0 stays clean, so {@code nextDirty(0)} can only find word 1 through the summary. Only the
     * marker sets bits: if its chunk is still dirty after the walk, the walk had to find it.
     */
    private void runSummaryRace(final long seed) throws Exception
    {
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("summary-race", 128 * GRANULARITY, GRANULARITY))
        {
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final AtomicBoolean running = new AtomicBoolean(true);
            final Thread clearer = new Thread(() ->
            {
                final SplittableRandom random = new SplittableRandom(seed);
                while (running.get())
                {
                    if (random.nextBoolean())
                    {
                        bitmap.clear(64 * GRANULARITY, 64 * GRANULARITY);
                    }
                    else
                    {
                        bitmap.clear((64 + random.nextInt(64)) * GRANULARITY, GRANULARITY);
                    }
                }
            }, "clearer");
            clearer.start();
            try
            {
                final SplittableRandom random = new SplittableRandom(seed + 1);
                for (int i = 0; i < 2_000_000 && failure.get() == null; i++)
                {
                    final long chunk = 64 + random.nextInt(64);
                    bitmap.mark(chunk * GRANULARITY, 1);
                    final long found = bitmap.nextDirty(0);
                    if ((found < 0 || found > chunk * GRANULARITY) && bitmap.isDirty(chunk * GRANULARITY))
                    {
                        failure.set(new AssertionError("iteration " + i + ": chunk " + chunk +
                            " is dirty but nextDirty(0) returned " + found + " (seed " + seed + ")"));
                    }
                }
            }
            finally
            {
                running.set(false);
                clearer.join();
            }
            if (failure.get() != null)
            {
                throw new AssertionError(failure.get());
            }
            assertOnlyStaleSummaryBits(bitmap, seed);
        }
    }

    /**
     * A marker that found a summary bit clear sets it after its data CAS; a clear that zeroed the word in between
     * leaves that bit set over a zero word, at level 1 or level 2 (MappedBitmap's class comment: readers skip it).
     * Every other inconsistency, a dirty word without its summary bit above all, is a bug.
     */
    private static void assertOnlyStaleSummaryBits(final MappedBitmap bitmap, final long seed)
    {
        assertThat(bitmap.checkConsistency()).as("seed %d", seed)
            .allMatch(problem -> problem.matches("level-[12] bit \\d+ is 1 but (data|level-1) word \\d+ is zero"));
    }

    /** Fails unless a walk of {@code [0, size)} yields ordered, disjoint, non-empty extents (a walk racing marks). */
    static void assertOrderedDisjointExtents(final BitmapView bitmap, final long size)
    {
        final long[] previousEnd = {-1};
        bitmap.forEachDirtyExtent(0, size, (o, l) ->
        {
            if (o <= previousEnd[0] || l <= 0)
            {
                throw new AssertionError("extent " + o + "+" + l + " after end " + previousEnd[0]);
            }
            previousEnd[0] = o + l;
            return true;
        });
    }
}
