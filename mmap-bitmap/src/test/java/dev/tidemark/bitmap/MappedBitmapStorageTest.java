package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The data area on disk: QEMU's word layout and SHA-256, page-exact forcing, regions larger than one
 * mapping, copy and merge across granularities. Single-threaded.
 */
class MappedBitmapStorageTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    @ParameterizedTest(name = "chunks={0}")
    @ValueSource(longs = {0, 1, 7, 63, 64, 65, 127, 128, 1000, 4097})
    void sha256MatchesQemuLayout(final long chunks) throws Exception
    {
        final SplittableRandom random = new SplittableRandom(chunks);
        final long diskSize = chunks == 0 ? 0 : chunks * G - 1;
        final BitSet model = new BitSet();
        try (MappedBitmap bitmap = MappedBitmap.create(dir.resolve("sha.tmbm"), "sha", diskSize, G))
        {
            for (int i = 0; i < chunks / 3 + 1 && chunks > 0; i++)
            {
                final int chunk = random.nextInt((int)chunks);
                bitmap.mark(chunk * G, 1);
                model.set(chunk);
            }
            if (chunks > 0)
            {
                bitmap.mark(diskSize - 1, 1);
                model.set((int)chunks - 1);
            }
            assertThat(bitmap.sha256()).isEqualTo(MappedBitmapModelTest.qemuSha256(model, chunks));
        }
        {
            // The file's data area holds exactly those words, little-endian, and zero padding after them.
            final byte[] file = Files.readAllBytes(dir.resolve("sha.tmbm"));
            final long words = Math.max(1, (chunks + 63) / 64);
            for (long chunk = 0; chunk < words * 64; chunk++)
            {
                final int at = (int)(BitmapFileDescriptor.HEADER_LENGTH + chunk / 8);
                assertThat((file[at] >> (chunk % 8)) & 1).as("chunk %d", chunk).isEqualTo(model.get((int)chunk) ? 1 : 0);
            }
            // Up to the end of the data area; the summary area follows it (format 1.1).
            for (int at = (int)(BitmapFileDescriptor.HEADER_LENGTH + words * 8); at < BitmapFileDescriptor.dataEnd(chunks); at++)
            {
                assertThat(file[at]).isZero();
            }
        }
    }

    @Test
    void emptyBitmapDigestIsQemusEightZeroBytes()
    {
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("e", 5 * G, G))
        {
            // sha256 of one zero 64-bit word, as QEMU reports for a fresh bitmap of up to 64 chunks.
            assertThat(HexFormat.of().formatHex(bitmap.sha256()))
                .isEqualTo("af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
        }
    }

    @Test
    void forceSendsExactlyThePagesThatGainedBits() throws Exception
    {
        final List<long[]> forced = new ArrayList<>();
        final int[] headerForces = {0};
        final MappedBitmap.Options options = new MappedBitmap.Options().regionBytes(8192).sinkDecorator(real -> new PageSink()
        {
            @Override
            public void forceData(final long fileOffset, final long length)
            {
                forced.add(new long[] {fileOffset, length});
                real.forceData(fileOffset, length);
            }

            @Override
            public void forceHeader()
            {
                headerForces[0]++;
                real.forceHeader();
            }
        });
        final long chunksPerPage = 4096 * 8;
        try (MappedBitmap bitmap = MappedBitmap.create(dir.resolve("pages.tmbm"), "p", 20 * chunksPerPage * 512, 512, options))
        {
            assertThat(headerForces[0]).as("in-use mark forced at open").isEqualTo(1);
            bitmap.mark(0, 512);
            bitmap.mark(chunksPerPage * 512 * 2 - 512, 1024);
            bitmap.mark(chunksPerPage * 512 * 5 + 7, 1);
            assertThat(bitmap.mark(0, 512)).isFalse();
            assertThat(bitmap.pendingPageCount()).isEqualTo(4);
            assertThat(bitmap.force()).isEqualTo(4);
            // Pages 0-2 form one run that crosses the 8 KiB region boundary; page 5 is its own run.
            assertThat(forced).extracting(r -> r[0] + "+" + r[1])
                .containsExactly((4096) + "+" + (3 * 4096), (4096 + 5 * 4096) + "+" + 4096);
            forced.clear();
            assertThat(bitmap.force()).isZero();
            assertThat(forced).isEmpty();
            bitmap.mark(0, 512);
            assertThat(bitmap.force()).as("already dirty: nothing gained, nothing to force").isZero();
            bitmap.mark(chunksPerPage * 512 * 19, 512);
            assertThat(bitmap.force()).isEqualTo(1);
            assertThat(forced).extracting(r -> r[0]).containsExactly(4096L + 19 * 4096);
            forced.clear();
            headerForces[0] = 0;
        }
        // A clean close forces the summary area through the sink, before the header that vouches for it.
        final long chunks = 20 * chunksPerPage;
        assertThat(forced).extracting(r -> r[0] + "+" + r[1]).containsExactly(
            BitmapFileDescriptor.summaryOffset(chunks) + "+" + BitmapFileDescriptor.summaryAreaLength(chunks));
        assertThat(headerForces[0]).isEqualTo(1);
    }

    @Test
    void dataLargerThanOneMappingIsSplitIntoRegions() throws Exception
    {
        // 2^34 + 64 chunks: 2 GiB + 8 bytes of data words, three 1 GiB regions; the file is sparse.
        final long chunks = (1L << 34) + 64;
        final long diskSize = chunks * 512;
        final Path file = dir.resolve("huge.tmbm");
        final long[] marks = {0, (1L << 33) - 1, 1L << 33, (1L << 34) - 1, chunks - 1};
        try (MappedBitmap bitmap = MappedBitmap.create(file, "huge", diskSize, 512))
        {
            assertThat(bitmap.wordCount()).isEqualTo((1L << 28) + 1);
            for (final long chunk : marks)
            {
                assertThat(bitmap.mark(chunk * 512, 512)).isTrue();
            }
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(marks.length);
            final List<Long> extents = MappedBitmapBasicsTest.extents(bitmap, 0, diskSize);
            assertThat(extents).containsExactly(0L, 512L, ((1L << 33) - 1) * 512, 1024L, ((1L << 34) - 1) * 512, 512L,
                (chunks - 1) * 512, 512L);
            assertThat(bitmap.nextDirty(512)).isEqualTo(((1L << 33) - 1) * 512);
            // Five distinct 4 KiB pages: the two middle marks and the last two straddle page boundaries.
            assertThat(bitmap.force()).isEqualTo(5);
        }
        assertThat(Files.size(file)).isEqualTo(BitmapFileDescriptor.fileLength(chunks));
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ))
        {
            for (final long chunk : marks)
            {
                final ByteBuffer word = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
                channel.read(word, BitmapFileDescriptor.HEADER_LENGTH + (chunk >>> 6) * 8);
                assertThat(word.getLong(0) & (1L << chunk)).as("chunk %d in the file", chunk).isNotZero();
            }
        }
    }

    @Test
    void copyToAndMergeAcrossGranularities() throws Exception
    {
        try (MappedBitmap fine = MappedBitmap.createAnonymous("fine", 100 * G, 4096);
            MappedBitmap coarse = MappedBitmap.createAnonymous("coarse", 100 * G, 4 * G))
        {
            fine.mark(G + 100, 10);
            fine.mark(40 * G - 1, 2);
            coarse.merge(fine.readOnlyView());
            assertThat(MappedBitmapBasicsTest.extents(coarse, 0, 100 * G)).containsExactly(0L, 4 * G, 36 * G, 8 * G);
            coarse.mark(99 * G, 1);
            fine.merge(coarse);
            assertThat(fine.dirtyByteCount()).isEqualTo(16 * G);
            try (MappedBitmap copy = fine.copyTo(dir.resolve("copy.tmbm"), "copy"))
            {
                assertThat(copy.name()).isEqualTo("copy");
                assertThat(copy.sha256()).isEqualTo(fine.sha256());
            }
            try (MappedBitmap reopened = MappedBitmap.open(dir.resolve("copy.tmbm")))
            {
                assertThat(MappedBitmapBasicsTest.extents(reopened, 0, 100 * G))
                    .isEqualTo(MappedBitmapBasicsTest.extents(fine, 0, 100 * G));
            }
            try (MappedBitmap anonymousCopy = fine.copyAnonymous("a"))
            {
                assertThat(anonymousCopy.dirtyChunkCount()).isEqualTo(fine.dirtyChunkCount());
            }
        }
    }

    @Test
    void resizeWithinTheSameFileLengthKeepsTheLastDataByte() throws Exception
    {
        // 32767 chunks and 32762 chunks both need exactly one data page: the file length does not change,
        // and the words in the last byte of that page (chunks 32760..32767) must survive the resize.
        final Path file = dir.resolve("same-length.tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, "s", 32767 * 512L, 512))
        {
            bitmap.mark(32760 * 512L, 512);
            bitmap.mark(32766 * 512L, 512);
            bitmap.resize(32762 * 512L - 100);
            assertThat(MappedBitmapBasicsTest.extents(bitmap, 0, bitmap.diskSize()))
                .containsExactly(32760 * 512L, 512L);
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.isDirty(32760 * 512L)).isTrue();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(1);
        }
    }

    @Test
    void resizeFileKeepsBitsAndDropsTheTail() throws Exception
    {
        final Path file = dir.resolve("resize.tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, "r", 100 * G, G))
        {
            bitmap.mark(10 * G, G);
            bitmap.mark(99 * G, G);
            bitmap.resize(50 * G + 3);
            assertThat(bitmap.chunkCount()).isEqualTo(51);
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(1);
            bitmap.resize(1_000_000 * G);
            assertThat(bitmap.nextDirty(11 * G)).isEqualTo(-1);
            bitmap.mark(999_999 * G, G);
        }
        assertThat(Files.size(file)).isEqualTo(BitmapFileDescriptor.fileLength(1_000_000));
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.diskSize()).isEqualTo(1_000_000 * G);
            assertThat(MappedBitmapBasicsTest.extents(bitmap, 0, bitmap.diskSize()))
                .containsExactly(10 * G, G, 999_999 * G, G);
            bitmap.resize(20 * G);
        }
        assertThat(Files.size(file)).isEqualTo(BitmapFileDescriptor.fileLength(20));
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.checkConsistency()).isEmpty();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(1);
        }
    }
}
