package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every bad-input case gets its own code and a message naming what and where; a failed open leaves the
 * file byte for byte as it was. Single-threaded (one test starts a child JVM).
 */
class MappedBitmapBadInputTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    private Path goodFile(final String name) throws Exception
    {
        final Path file = dir.resolve(name + ".tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, name, 100 * G, G))
        {
            bitmap.mark(0, 5 * G);
        }
        return file;
    }

    private void assertOpenRefused(final Path file, final BitmapError error, final String... messageParts) throws Exception
    {
        final byte[] before = Files.readAllBytes(file);
        for (final boolean readOnly : new boolean[] {false, true})
        {
            assertThatThrownBy(() -> MappedBitmap.open(file, readOnly, new MappedBitmap.Options()))
                .isInstanceOfSatisfying(BitmapFileException.class, ex ->
                {
                    assertThat(ex.error()).isEqualTo(error);
                    assertThat(ex.file()).isEqualTo(file);
                    assertThat(ex.getMessage()).contains(file.toString()).contains(messageParts);
                });
        }
        assertThat(Files.readAllBytes(file)).as("a failed open changes nothing").isEqualTo(before);
    }

    private void patched(final String name, final boolean reseal, final Consumer<UnsafeBuffer> change,
        final BitmapError error, final String... messageParts) throws Exception
    {
        final Path file = goodFile(name);
        HeaderPatch.patch(file, reseal, change);
        assertOpenRefused(file, error, messageParts);
    }

    private static void truncate(final Path file, final long size) throws IOException
    {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE))
        {
            channel.truncate(size);
        }
    }

    @Test
    void truncatedHeader() throws Exception
    {
        final Path file = goodFile("short");
        truncate(file, 100);
        assertOpenRefused(file, BitmapError.TRUNCATED, "100 bytes", "4096-byte header");
    }

    @Test
    void truncatedDataArea() throws Exception
    {
        final Path file = dir.resolve("bigger.tmbm");
        MappedBitmap.create(file, "bigger", 1L << 40, G).close();
        truncate(file, 8192);
        assertOpenRefused(file, BitmapError.TRUNCATED, "8192 bytes", "need");
    }

    @Test
    void emptyFile() throws Exception
    {
        final Path file = dir.resolve("empty.tmbm");
        Files.write(file, new byte[0]);
        assertOpenRefused(file, BitmapError.TRUNCATED, "0 bytes");
    }

    @Test
    void wrongMagic() throws Exception
    {
        patched("magic", true, h -> h.putByte(0, (byte)'X'), BitmapError.BAD_MAGIC, "offset 0");
    }

    @Test
    void unknownMajorVersion() throws Exception
    {
        patched("version", true, h -> h.putShort(BitmapFileDescriptor.VERSION_MAJOR_OFFSET, (short)2, ByteOrder.LITTLE_ENDIAN),
            BitmapError.UNSUPPORTED_VERSION, "2." + BitmapFileDescriptor.VERSION_MINOR, "offset 8");
    }

    @Test
    void newerMinorVersionIsRead() throws Exception
    {
        final Path file = goodFile("minor");
        HeaderPatch.patch(file, true,
            h -> h.putShort(BitmapFileDescriptor.VERSION_MINOR_OFFSET, (short)7, ByteOrder.LITTLE_ENDIAN));
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.formatVersion()).isEqualTo("1.7");
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(5);
        }
    }

    @Test
    void badChecksum() throws Exception
    {
        patched("crc", false, h -> h.putByte(3000, (byte)1), BitmapError.BAD_CHECKSUM, "CRC32C", "offset 16");
    }

    @Test
    void granularityNotPowerOfTwo() throws Exception
    {
        patched("gran3", true, h -> h.putLong(BitmapFileDescriptor.GRANULARITY_OFFSET, 3000, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_GRANULARITY, "3000", "offset 24");
    }

    @Test
    void granularityTooSmallOrLarge() throws Exception
    {
        patched("gran256", true, h -> h.putLong(BitmapFileDescriptor.GRANULARITY_OFFSET, 256, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_GRANULARITY, "256");
        patched("gran4g", true, h -> h.putLong(BitmapFileDescriptor.GRANULARITY_OFFSET, 1L << 32, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_GRANULARITY, "4294967296");
    }

    @Test
    void emptyAndTooLongName() throws Exception
    {
        patched("noname", true, h -> h.putInt(BitmapFileDescriptor.NAME_LENGTH_OFFSET, 0, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_NAME, "name length 0", "offset 128");
        patched("longname", true, h -> h.putInt(BitmapFileDescriptor.NAME_LENGTH_OFFSET, 1024, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_NAME, "name length 1024");
        patched("badutf8", true, h -> h.putByte(BitmapFileDescriptor.NAME_OFFSET, (byte)0xFF),
            BitmapError.BAD_NAME, "UTF-8");
    }

    @Test
    void negativeOrInconsistentSizes() throws Exception
    {
        patched("negsize", true, h -> h.putLong(BitmapFileDescriptor.DISK_SIZE_OFFSET, -5, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_SIZE, "-5", "negative", "offset 32");
        patched("chunks", true, h -> h.putLong(BitmapFileDescriptor.CHUNK_COUNT_OFFSET, 99, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_SIZE, "chunk count 99", "offset 40");
        patched("layout", true, h -> h.putLong(BitmapFileDescriptor.DATA_OFFSET_OFFSET, 8192, ByteOrder.LITTLE_ENDIAN),
            BitmapError.BAD_LAYOUT, "data area at offset 8192");
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void fileHeldByAnotherProcess() throws Exception
    {
        final Path file = goodFile("held");
        final Process child = ChildJvm.start("hold", file.toString());
        try (BufferedReader in = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.US_ASCII)))
        {
            assertThat(in.readLine()).isEqualTo("ready");
            final byte[] before = Files.readAllBytes(file);
            assertThatThrownBy(() -> MappedBitmap.open(file))
                .isInstanceOfSatisfying(BitmapFileException.class, ex -> assertThat(ex.error()).isEqualTo(BitmapError.LOCKED))
                .hasMessageContaining("another process");
            assertThatThrownBy(() -> MappedBitmap.openReadOnly(file))
                .isInstanceOfSatisfying(BitmapFileException.class, ex -> assertThat(ex.error()).isEqualTo(BitmapError.LOCKED));
            assertThat(Files.readAllBytes(file)).isEqualTo(before);
        }
        finally
        {
            child.destroyForcibly();
            child.waitFor(10, TimeUnit.SECONDS);
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
        }
    }

    @Test
    void badCreateArguments() throws Exception
    {
        final Path file = dir.resolve("args.tmbm");
        assertArgument(() -> MappedBitmap.create(file, "a", 100, 1000), BitmapError.BAD_GRANULARITY, "1000");
        assertArgument(() -> MappedBitmap.create(file, "a", 100, 256), BitmapError.BAD_GRANULARITY, "256");
        assertArgument(() -> MappedBitmap.create(file, "a", 100, 1L << 32), BitmapError.BAD_GRANULARITY, "power of two");
        assertArgument(() -> MappedBitmap.create(file, "", 100, G), BitmapError.BAD_NAME, "empty");
        assertArgument(() -> MappedBitmap.create(file, "é".repeat(512), 100, G), BitmapError.BAD_NAME, "1024 bytes");
        assertArgument(() -> MappedBitmap.create(file, "a", -1, G), BitmapError.BAD_SIZE, "negative");
        assertArgument(() -> MappedBitmap.createAnonymous("a", 1L << 62, 512), BitmapError.BAD_SIZE, "chunks");
        assertThat(file).doesNotExist();
        MappedBitmap.create(file, "x".repeat(1023), 100, G).close();
        assertThatThrownBy(() -> MappedBitmap.create(file, "a", 100, G))
            .isInstanceOfSatisfying(BitmapFileException.class, ex -> assertThat(ex.error()).isEqualTo(BitmapError.ALREADY_EXISTS));
    }

    @Test
    void badRanges()
    {
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("r", 10 * G, G);
            MappedBitmap other = MappedBitmap.createAnonymous("o", 11 * G, G))
        {
            assertArgument(() -> bitmap.mark(10 * G, 1), BitmapError.OUT_OF_RANGE, "beyond the disk", "offset 655360");
            assertArgument(() -> bitmap.mark(0, 10 * G + 1), BitmapError.OUT_OF_RANGE, "beyond");
            assertArgument(() -> bitmap.mark(-1, 1), BitmapError.OUT_OF_RANGE, "negative");
            assertArgument(() -> bitmap.mark(0, 0), BitmapError.OUT_OF_RANGE, "length 0");
            assertArgument(() -> bitmap.mark(5, Long.MAX_VALUE), BitmapError.OUT_OF_RANGE, "beyond");
            assertArgument(() -> bitmap.clear(0, -1), BitmapError.OUT_OF_RANGE, "negative");
            assertArgument(() -> bitmap.clear(G, 10 * G), BitmapError.OUT_OF_RANGE, "beyond");
            assertArgument(() -> bitmap.isDirty(10 * G), BitmapError.OUT_OF_RANGE, "outside");
            assertArgument(() -> bitmap.nextDirty(-1), BitmapError.OUT_OF_RANGE, "outside");
            assertArgument(() -> bitmap.forEachDirtyExtent(0, 11 * G, (o, l) -> true), BitmapError.OUT_OF_RANGE, "beyond");
            bitmap.mark(0, G);
            assertArgument(() -> bitmap.merge(other), BitmapError.SIZE_MISMATCH, "different sizes", "655360", "720896");
            assertArgument(() -> other.merge(bitmap.readOnlyView()), BitmapError.SIZE_MISMATCH, "different sizes");
            assertThat(other.dirtyChunkCount()).isZero();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(1);
        }
    }

    @Test
    void readOnlyAndClosedBitmapsRefuseMutation() throws Exception
    {
        final Path file = goodFile("ro");
        final byte[] before = Files.readAllBytes(file);
        try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
        {
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(5);
            assertThatThrownBy(() -> bitmap.mark(0, 1)).isInstanceOf(IllegalStateException.class).hasMessageContaining("read-only");
            assertThatThrownBy(bitmap::clearAll).isInstanceOf(IllegalStateException.class);
        }
        assertThat(Files.readAllBytes(file)).as("a read-only open changes nothing").isEqualTo(before);
        final MappedBitmap closed = MappedBitmap.createAnonymous("c", G, G);
        closed.close();
        assertThatThrownBy(() -> closed.mark(0, 1)).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
    }

    private interface Action
    {
        void run() throws Exception;
    }

    private static void assertArgument(final Action action, final BitmapError error, final String... parts)
    {
        assertThatThrownBy(action::run)
            .isInstanceOfSatisfying(BitmapArgumentException.class, ex -> assertThat(ex.error()).isEqualTo(error))
            .message().contains(parts);
    }
}
