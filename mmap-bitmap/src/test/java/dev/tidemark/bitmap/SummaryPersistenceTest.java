package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.BitSet;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runs on the test thread, plus the bitmaps' own rebuild threads: the persisted summary (format 1.1) is
 * trusted only after a clean close, rebuilt in the background after a crash-style open without losing
 * the marks that arrive meanwhile; 1.0 files are read and upgraded, bad summary fields refused.
 */
class SummaryPersistenceTest
{
    private static final long GRANULARITY = 4096;
    /** 2^28 chunks: 32 MiB of data words, 32 rebuild steps of 1 MiB. */
    private static final long DISK = 1L << 40;
    private static final int CHUNKS = (int)(DISK / GRANULARITY);

    @TempDir
    Path dir;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void rebuiltSummaryIsExactAfterACrashStyleOpenAndMarksDuringTheRebuildAreKept() throws Exception
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        final String why = "seed " + seed + " (replay with -Dtidemark.test.seed=" + seed + ")";
        final SplittableRandom random = new SplittableRandom(seed);
        final BitSet model = new BitSet(CHUNKS);
        try (TmpfsDir tmpfs = TmpfsDir.create(dir))
        {
            rebuildAfterCrash(tmpfs.path(), seed, why, random, model);
        }
    }

    private static void rebuildAfterCrash(
        final Path dir, final long seed, final String why, final SplittableRandom random, final BitSet model)
        throws Exception
    {
        final Path file = dir.resolve("live.tmbm");
        final Path crashed = dir.resolve("crashed.tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, "live", DISK, GRANULARITY))
        {
            markRandom(bitmap, model, random, 3000);
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            // The summary area now holds the first close's levels; change the bits so that it is stale.
            for (int i = 0; i < 300; i++)
            {
                final int chunk = model.nextSetBit(random.nextInt(CHUNKS));
                if (chunk >= 0)
                {
                    bitmap.clear((long)chunk * GRANULARITY, GRANULARITY);
                    model.clear(chunk);
                }
            }
            markRandom(bitmap, model, random, 3000);
            // What SIGKILL leaves: the file as the page cache holds it while the bitmap is open.
            Files.copy(file, crashed);
        }

        final CountDownLatch release = new CountDownLatch(1);
        final MappedBitmap.Options options = new MappedBitmap.Options().scratchThreshold(0).rebuildProgress(words ->
        {
            try
            {
                // Hold the rebuild at its first step until the test has marked, then pace it.
                release.await(30, TimeUnit.SECONDS);
                Thread.sleep(2);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        });
        try (MappedBitmap bitmap = MappedBitmap.open(crashed, false, options))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
            assertThat(bitmap.isSummaryComplete()).as("an in-use file's summary is rebuilt, not trusted").isFalse();
            // Marks and walks work during the rebuild: the summary counts as all set.
            final long marked = markRandom(bitmap, model, random, 500);
            assertThat(bitmap.nextDirty(marked)).isEqualTo(marked);
            release.countDown();
            int during = 0;
            while (!bitmap.isSummaryComplete())
            {
                markRandom(bitmap, model, random, 10);
                during += 10;
            }
            assertThat(bitmap.awaitSummary()).isTrue();
            assertThat(during).as("marks while the rebuild ran").isPositive();
            assertThat(bitmap.checkConsistency()).as(why + ", " + during + " marks during the rebuild").isEmpty();
            assertThat(bitsOf(bitmap)).as(why).isEqualTo(model);
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(model.cardinality());
        }
        try (MappedBitmap bitmap = MappedBitmap.open(crashed))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.CLEAN);
            assertThat(bitmap.isSummaryComplete()).isTrue();
            assertThat(bitsOf(bitmap)).as(why).isEqualTo(model);
            assertThat(bitmap.checkConsistency()).as(why).isEmpty();
        }
    }

    @Test
    void aCleanCloseStoresTheSummaryAndAnOpenForWritingDisownsIt() throws Exception
    {
        final Path file = dir.resolve("fields.tmbm");
        final long chunks = DISK / GRANULARITY;
        try (MappedBitmap bitmap = MappedBitmap.create(file, "f", DISK, GRANULARITY))
        {
            bitmap.mark(5 * GRANULARITY, 1);
            assertThat(summaryOffset(file)).as("no summary while open").isZero();
        }
        assertThat(summaryOffset(file)).isEqualTo(BitmapFileDescriptor.summaryOffset(chunks));
        assertThat(Files.size(file)).isEqualTo(BitmapFileDescriptor.fileLength(chunks));
        try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
        {
            assertThat(bitmap.isSummaryComplete()).isTrue();
            assertThat(bitmap.nextDirty(0)).isEqualTo(5 * GRANULARITY);
            assertThat(summaryOffset(file)).as("a read-only open changes nothing").isNotZero();
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(summaryOffset(file)).isZero();
            assertThat(bitmap.formatVersion()).isEqualTo("1.1");
        }
    }

    @Test
    void aFormat10FileIsReadRebuiltAndUpgradedOnCleanClose() throws Exception
    {
        final Path file = dir.resolve("old.tmbm");
        final long chunks = DISK / GRANULARITY;
        try (MappedBitmap bitmap = MappedBitmap.create(file, "old", DISK, GRANULARITY))
        {
            bitmap.mark(7 * GRANULARITY, 3 * GRANULARITY);
            bitmap.mark(DISK - 1, 1);
        }
        // What format 1.0 wrote: no summary fields, no summary area.
        HeaderPatch.patch(file, true, h ->
        {
            h.putShort(BitmapFileDescriptor.VERSION_MINOR_OFFSET, (short)0, ByteOrder.LITTLE_ENDIAN);
            BitmapFileDescriptor.clearSummaryFields(h);
        });
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE))
        {
            channel.truncate(BitmapFileDescriptor.dataEnd(chunks));
        }
        try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
        {
            assertThat(bitmap.formatVersion()).isEqualTo("1.0");
            assertThat(bitmap.awaitSummary()).isTrue();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(4);
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.CLEAN);
            assertThat(bitmap.awaitSummary()).isTrue();
            assertThat(bitmap.checkConsistency()).isEmpty();
            assertThat(MappedBitmapBasicsTest.extents(bitmap, 0, DISK))
                .containsExactly(7 * GRANULARITY, 3 * GRANULARITY, DISK - GRANULARITY, GRANULARITY);
        }
        assertThat(Files.size(file)).isEqualTo(BitmapFileDescriptor.fileLength(chunks));
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.formatVersion()).isEqualTo("1.1");
            assertThat(bitmap.isSummaryComplete()).isTrue();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(4);
        }
    }

    @Test
    void summaryFieldsThatDoNotMatchTheGeometryAreRefused() throws Exception
    {
        final Path file = dir.resolve("bad.tmbm");
        MappedBitmap.create(file, "bad", DISK, GRANULARITY).close();
        HeaderPatch.patch(file, true,
            h -> h.putLong(BitmapFileDescriptor.SUMMARY_OFFSET_OFFSET, 8192, ByteOrder.LITTLE_ENDIAN));
        final byte[] before = Files.readAllBytes(file);
        assertThatThrownBy(() -> MappedBitmap.open(file))
            .isInstanceOfSatisfying(BitmapFileException.class, ex ->
            {
                assertThat(ex.error()).isEqualTo(BitmapError.BAD_LAYOUT);
                assertThat(ex.getMessage()).contains("summary area at offset 8192", "fields at 64");
            });
        assertThat(Files.readAllBytes(file)).isEqualTo(before);
    }

    @Test
    void aCleanFileCutInsideItsSummaryIsTruncated() throws Exception
    {
        final Path file = dir.resolve("cut.tmbm");
        final long chunks = DISK / GRANULARITY;
        MappedBitmap.create(file, "cut", DISK, GRANULARITY).close();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE))
        {
            channel.truncate(BitmapFileDescriptor.dataEnd(chunks) + 4096);
        }
        assertThatThrownBy(() -> MappedBitmap.open(file))
            .isInstanceOfSatisfying(BitmapFileException.class, ex -> assertThat(ex.error()).isEqualTo(BitmapError.TRUNCATED));
    }

    private static long summaryOffset(final Path file) throws Exception
    {
        final long[] offset = new long[1];
        final byte[] bytes = new byte[BitmapFileDescriptor.HEADER_LENGTH];
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ))
        {
            channel.read(java.nio.ByteBuffer.wrap(bytes), 0);
        }
        offset[0] = new org.agrona.concurrent.UnsafeBuffer(bytes)
            .getLong(BitmapFileDescriptor.SUMMARY_OFFSET_OFFSET, ByteOrder.LITTLE_ENDIAN);
        return offset[0];
    }

    /** @return the offset of the last mark. */
    private static long markRandom(final MappedBitmap bitmap, final BitSet model, final SplittableRandom random, final int count)
    {
        long offset = 0;
        for (int i = 0; i < count; i++)
        {
            offset = random.nextLong(DISK - 8 * GRANULARITY);
            final long length = 1 + random.nextLong(2 * GRANULARITY);
            bitmap.mark(offset, length);
            model.set((int)(offset / GRANULARITY), (int)((offset + length - 1) / GRANULARITY) + 1);
        }
        return offset;
    }

    static BitSet bitsOf(final BitmapView bitmap)
    {
        final BitSet out = new BitSet();
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (offset, length) ->
        {
            out.set((int)(offset / bitmap.granularity()), (int)((offset + length - 1) / bitmap.granularity()) + 1);
            return true;
        });
        return out;
    }
}
