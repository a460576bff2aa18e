package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runs on the test thread only (plus one bitmap's own rebuild thread): a 64 TiB disk at 4 KiB granularity
 * (2 GiB of data words per bitmap), every step timed against a generous bound that an O(disk)
 * implementation cannot meet on this data size, the bits checked against a sorted-set model (a
 * {@code BitSet} cannot index 2^34 chunks).
 */
class BigBitmapTest
{
    private static final long GRANULARITY = 4096;
    private static final long DISK = 64L << 40;
    private static final long CHUNKS = DISK / GRANULARITY;

    @TempDir
    Path systemTemp;

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void createMarkMergeClearDigestCloseReopenCostWhatIsDirty() throws Exception
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        final String why = "seed " + seed + " (replay with -Dtidemark.test.seed=" + seed + ")";
        final SplittableRandom random = new SplittableRandom(seed);
        final List<String> timings = new ArrayList<>();
        final TreeSet<Long> modelA = new TreeSet<>();
        final TreeSet<Long> modelB = new TreeSet<>();
        // tmpfs when there is one: a first write to a page of a sparse file on a disk file system allocates
        // a block, and a close msyncs, which is the disk's cost, not the bitmap's.
        final TmpfsDir dir = TmpfsDir.create(systemTemp);
        final Path file = dir.path().resolve("big.tmbm");
        // Class loading and first-call costs are not what is timed below.
        MappedBitmap.createAnonymous("warm-up", 1L << 30, GRANULARITY).close();
        bestOfThree(timings, "createAnonymous", 200, () -> MappedBitmap.createAnonymous("t", DISK, GRANULARITY));
        try (MappedBitmap a = MappedBitmap.createAnonymous("a", DISK, GRANULARITY);
            MappedBitmap b = MappedBitmap.createAnonymous("b", DISK, GRANULARITY))
        {
            timedRun(timings, "mark 10000 scattered ranges", 10_000, () ->
            {
                markScattered(a, modelA, random, 5_000);
                markScattered(b, modelB, random, 5_000);
            });
            // Steps that touch pages for the first time pay a page fault each (about 10000 here, up to a
            // hundred microseconds each on the loaded 2-core machine): their bounds are looser than those
            // of pure walks. An O(disk) step would touch all 524288 pages of the data.
            timedRun(timings, "merge b into a", 5_000, () -> a.merge(b.readOnlyView()));
            timedRun(timings, "merge b into a again", 1_000, () -> a.merge(b.readOnlyView()));
            timedRun(timings, "count b", 1_000, b::dirtyChunkCount);
            final TreeSet<Long> union = new TreeSet<>(modelA);
            union.addAll(modelB);
            assertThat(a.dirtyChunkCount()).as(why).isEqualTo(union.size());
            assertThat(chunksOf(a)).as(why).isEqualTo(union);

            final byte[] expectedDigest = qemuSha256(union);
            final byte[] digest = timed(timings, "sha256 of a", 60_000, a::sha256);
            assertThat(digest).as(why).isEqualTo(expectedDigest);

            final Path[] scratchFiles = {file.resolveSibling("t0"), file.resolveSibling("t1"), file.resolveSibling("t2")};
            final int[] next = {0};
            bestOfThree(timings, "create 2 GiB-data file", 300,
                () -> MappedBitmap.create(scratchFiles[next[0]++], "t", DISK, GRANULARITY));
            for (final Path scratch : scratchFiles)
            {
                java.nio.file.Files.delete(scratch);
            }
            try (MappedBitmap persistent = MappedBitmap.create(file, "p", DISK, GRANULARITY))
            {
                timedRun(timings, "merge a into the file", 5_000, () -> persistent.merge(a));
                timedRun(timings, "close the file", 5_000, persistent::close);
            }
            bestOfThree(timings, "reopen the clean file", 100, () -> MappedBitmap.open(file));
            try (MappedBitmap reopened = MappedBitmap.open(file))
            {
                assertThat(reopened.openState()).isEqualTo(OpenState.CLEAN);
                assertThat(reopened.isSummaryComplete()).as("a clean file's summary is loaded, not rebuilt").isTrue();
                assertThat(timed(timings, "count the reopened file", 2_000, reopened::dirtyChunkCount))
                    .as(why).isEqualTo(union.size());
                assertThat(chunksOf(reopened)).as(why).isEqualTo(union);
                assertThat(reopened.sha256()).as(why).isEqualTo(expectedDigest);

                // Clear a range in the middle: QEMU's rule, only whole chunks inside it.
                final long from = DISK / 4 + 123;
                final long length = DISK / 3;
                timedRun(timings, "clear a third of the file", 1_000, () -> reopened.clear(from, length));
                union.subSet((from + GRANULARITY - 1) / GRANULARITY, (from + length) / GRANULARITY).clear();
                assertThat(chunksOf(reopened)).as(why).isEqualTo(union);
                timedRun(timings, "close the file again", 5_000, reopened::close);
            }
            bestOfThree(timings, "reopen again", 100, () -> MappedBitmap.open(file));
            try (MappedBitmap reopened = MappedBitmap.open(file))
            {
                assertThat(chunksOf(reopened)).as(why).isEqualTo(union);
            }
            // No summary on record (as after a crash, or a 1.0 file): the open must not wait for the 2 GiB scan,
            // and marks must not wait for it either.
            HeaderPatch.patch(file, true, BitmapFileDescriptor::clearSummaryFields);
            bestOfThree(timings, "open without a stored summary", 100, () -> MappedBitmap.open(file));
            try (MappedBitmap rebuilding = MappedBitmap.open(file))
            {
                final long offset = DISK - 3 * GRANULARITY;
                timedRun(timings, "mark during the rebuild", 500, () -> rebuilding.mark(offset, 1));
                union.add(offset / GRANULARITY);
                timedRun(timings, "background rebuild of 2 GiB", 60_000, rebuilding::awaitSummary);
                assertThat(rebuilding.isSummaryComplete()).isTrue();
                assertThat(chunksOf(rebuilding)).as(why).isEqualTo(union);
                assertThat(rebuilding.checkConsistency()).as(why).isEmpty();
            }

            timedRun(timings, "clearAll a", 1_000, a::clearAll);
            assertThat(a.dirtyChunkCount()).isZero();
            assertThat(a.nextDirty(0)).isEqualTo(-1);
        }
        finally
        {
            System.out.println("BigBitmapTest (" + why + "): " + timings);
            dir.close();
        }
    }

    private static void markScattered(
        final MappedBitmap bitmap, final TreeSet<Long> model, final SplittableRandom random, final int count)
    {
        for (int i = 0; i < count; i++)
        {
            final long offset = random.nextLong(DISK - 64 * GRANULARITY);
            final long length = 1 + random.nextLong(3 * GRANULARITY);
            bitmap.mark(offset, length);
            for (long chunk = offset / GRANULARITY; chunk <= (offset + length - 1) / GRANULARITY; chunk++)
            {
                model.add(chunk);
            }
        }
    }

    static TreeSet<Long> chunksOf(final BitmapView bitmap)
    {
        final TreeSet<Long> out = new TreeSet<>();
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (offset, length) ->
        {
            for (long chunk = offset / bitmap.granularity(); chunk < (offset + length) / bitmap.granularity(); chunk++)
            {
                out.add(chunk);
            }
            return true;
        });
        return out;
    }

    /** QEMU's digest computed from the model alone: the 2^28 little-endian words, streamed. */
    private static byte[] qemuSha256(final TreeSet<Long> chunks) throws Exception
    {
        final MessageDigest digest = MessageDigest.getInstance("SHA-256");
        final byte[] block = new byte[1 << 20];
        final long bytes = CHUNKS / 8;
        for (long at = 0; at < bytes; at += block.length)
        {
            java.util.Arrays.fill(block, (byte)0);
            for (final long chunk : chunks.subSet(at * 8, (at + block.length) * 8))
            {
                final int bit = (int)(chunk - at * 8);
                block[bit >>> 3] |= (byte)(1 << (bit & 7));
            }
            digest.update(block);
        }
        return digest.digest();
    }

    interface Step<T>
    {
        T run() throws Exception;
    }

    interface VoidStep
    {
        void run() throws Exception;
    }

    private static <T> T timed(final List<String> timings, final String what, final long limitMillis, final Step<T> step)
        throws Exception
    {
        final long start = System.nanoTime();
        final T result = step.run();
        final long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        timings.add(what + " " + millis + " ms");
        final Supplier<String> message = () -> what + " took " + millis + " ms, more than " + limitMillis +
            " ms: does it cost in proportion to the disk? " + timings;
        assertThat(millis).as(message).isLessThanOrEqualTo(limitMillis);
        return result;
    }

    /**
     * Times three runs of a cheap step (closing what each returns) and bounds the fastest: a loaded machine
     * may stall one run for longer than the bound, an O(disk) step is slow every time.
     */
    private static void bestOfThree(
        final List<String> timings, final String what, final long limitMillis, final Step<? extends AutoCloseable> step)
        throws Exception
    {
        long best = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++)
        {
            final long start = System.nanoTime();
            try (AutoCloseable result = step.run())
            {
                best = Math.min(best, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
                assertThat(result).isNotNull();
            }
        }
        final long fastest = best;
        timings.add(what + " " + fastest + " ms (best of 3)");
        assertThat(fastest).as(() -> what + " took at best " + fastest + " ms, more than " + limitMillis +
            " ms: does it cost in proportion to the disk? " + timings).isLessThanOrEqualTo(limitMillis);
    }

    private static void timedRun(final List<String> timings, final String what, final long limitMillis, final VoidStep step)
        throws Exception
    {
        timed(timings, what, limitMillis, () ->
        {
            step.run();
            return null;
        });
    }
}
