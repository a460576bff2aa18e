package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.nio.file.Path;
import java.time.Duration;
import java.util.BitSet;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Each test owns two threads and joins them under a watchdog: one marks the destination while the other
 * merges sources into it and walks it (merge off the write thread); afterwards the destination must equal
 * the union of everything marked and merged, checked against {@link BitSet} models.
 */
class MergeWhileMarkingTest
{
    private static final long GRANULARITY = 512;
    /** 2^22 chunks: 64 Ki data words, 1024 level-1 words, 16 level-2 words. */
    private static final int CHUNKS = 1 << 22;
    private static final long DISK = CHUNKS * GRANULARITY;
    private static final int SOURCES = 3;
    /**
     * Where half of the sources' marks (one to three chunks each) and the marker's first marks (one chunk
     * each) go: 1024 words both threads write, so that a merge that is not atomic per word loses bits.
     */
    private static final long HOT_CHUNKS = 65536;

    @TempDir
    Path dir;

    @ParameterizedTest(name = "file-backed destination={0}")
    @ValueSource(booleans = {false, true})
    void mergeAndWalkWhileAnotherThreadMarks(final boolean fileBacked) throws Exception
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> run(fileBacked, seed),
            () -> "watchdog fired, seed " + seed + " (replay with -Dtidemark.test.seed=" + seed + ")");
    }

    private void run(final boolean fileBacked, final long seed) throws Exception
    {
        final String why = "seed " + seed + " (replay with -Dtidemark.test.seed=" + seed + ")";
        // Scratch memory for everything, the path 2 GiB bitmaps take.
        final MappedBitmap.Options options = new MappedBitmap.Options().scratchThreshold(0).regionBytes(1 << 16);
        final MappedBitmap[] sources = new MappedBitmap[SOURCES];
        final BitSet[] sourceModels = new BitSet[SOURCES];
        final SplittableRandom setup = new SplittableRandom(seed);
        try (MappedBitmap destination = fileBacked ?
            MappedBitmap.create(dir.resolve("dest.tmbm"), "dest", DISK, GRANULARITY, options) :
            MappedBitmap.createAnonymous("dest", DISK, GRANULARITY, options))
        {
            for (int s = 0; s < SOURCES; s++)
            {
                sources[s] = MappedBitmap.createAnonymous("source-" + s, DISK, GRANULARITY, options);
                sourceModels[s] = new BitSet(CHUNKS);
                for (int i = 0; i < 2000; i++)
                {
                    final boolean hot = setup.nextBoolean();
                    final long offset = hot ? setup.nextLong(HOT_CHUNKS * GRANULARITY) : setup.nextLong(DISK);
                    final long length = 1 + setup.nextLong(Math.min(DISK - offset, (hot ? 2 : 300) * GRANULARITY));
                    sources[s].mark(offset, length);
                    sourceModels[s].set((int)(offset / GRANULARITY), (int)((offset + length - 1) / GRANULARITY) + 1);
                }
            }
            final BitSet marked = new BitSet(CHUNKS);
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final AtomicBoolean merging = new AtomicBoolean(true);
            final CountDownLatch start = new CountDownLatch(1);
            final Thread marker = new Thread(() ->
            {
                final SplittableRandom random = new SplittableRandom(seed + 1);
                try
                {
                    start.await();
                    int i = 0;
                    // At least 50000 marks, and on until the merger is done, so that they overlap.
                    while (i++ < 50_000 || merging.get())
                    {
                        // Hot chunks in an order that never repeats one (odd stride modulo a power of two): a
                        // bit a racing merge erased is never set again by a later mark and hides nothing.
                        final boolean hot = i < 2 * HOT_CHUNKS && (i & 1) == 0;
                        final long offset = hot ? ((i / 2 * 40503L) & (HOT_CHUNKS - 1)) * GRANULARITY :
                            HOT_CHUNKS * GRANULARITY + random.nextLong(DISK - HOT_CHUNKS * GRANULARITY);
                        final long length = hot ? 1 : 1 + random.nextLong(Math.min(DISK - offset, 16 * GRANULARITY));
                        destination.mark(offset, length);
                        marked.set((int)(offset / GRANULARITY), (int)((offset + length - 1) / GRANULARITY) + 1);
                        if (!destination.isDirty(offset) || destination.nextDirty(offset) != offset)
                        {
                            throw new AssertionError("mark " + offset + "+" + length + " returned but is not visible");
                        }
                    }
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
            }, "marker");
            final Thread merger = new Thread(() ->
            {
                try
                {
                    start.await();
                    for (int round = 0; round < 30; round++)
                    {
                        final int s = round % SOURCES;
                        destination.merge(sources[s].readOnlyView());
                        // Every source bit is in the destination once merge returns, whatever the marker did.
                        final BitSet source = sourceModels[s];
                        for (int chunk = source.nextSetBit(0); chunk >= 0; chunk = source.nextSetBit(chunk + 1))
                        {
                            if (!destination.isDirty(chunk * GRANULARITY))
                            {
                                throw new AssertionError("round " + round + ": chunk " + chunk + " of source " + s +
                                    " is clean after the merge returned");
                            }
                        }
                        if (round % 10 == 9)
                        {
                            // QEMU's digest streamed over the mapping while marks land: no snapshot, no failure.
                            assertThat(destination.readOnlyView().sha256()).hasSize(32);
                        }
                        // A walk racing with the marker: ordered, disjoint extents.
                        MappedBitmapConcurrencyTest.assertOrderedDisjointExtents(destination, DISK);
                    }
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
                finally
                {
                    merging.set(false);
                }
            }, "merger");
            marker.start();
            merger.start();
            start.countDown();
            merger.join();
            marker.join();
            if (failure.get() != null)
            {
                throw new AssertionError(why, failure.get());
            }
            final BitSet expected = (BitSet)marked.clone();
            for (final BitSet source : sourceModels)
            {
                expected.or(source);
            }
            final BitSet actual = SummaryPersistenceTest.bitsOf(destination);
            final BitSet missing = (BitSet)expected.clone();
            missing.andNot(actual);
            final BitSet extra = (BitSet)actual.clone();
            extra.andNot(expected);
            assertThat(missing.cardinality()).as("%s: %d chunks lost, the first %d", why, missing.cardinality(),
                missing.nextSetBit(0)).isZero();
            assertThat(extra.cardinality()).as("%s: %d chunks never marked are dirty, the first %d", why,
                extra.cardinality(), extra.nextSetBit(0)).isZero();
            assertThat(destination.dirtyChunkCount()).as(why).isEqualTo(expected.cardinality());
            assertThat(destination.checkConsistency()).as(why).isEmpty();
        }
        finally
        {
            for (final MappedBitmap source : sources)
            {
                if (source != null)
                {
                    source.close();
                }
            }
        }
    }
}
