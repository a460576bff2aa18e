package dev.tidemark.bitmap;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.UUID;
import java.util.zip.CRC32C;

import org.agrona.concurrent.UnsafeBuffer;

/**
 * The layout of a bitmap file, every offset in one place; stateless and safe for any number of threads.
 *
 * <p>A bitmap file is a 4 KiB header, the data area (QEMU's level-0 word array) and, from format 1.1, the
 * summary area (levels 1 and 2 as they were at the last clean close). All integers are little-endian.
 * {@code docs/bitmap-format.md} documents the same table in prose.
 *
 * <pre>
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +---------------------------------------------------------------+
 *  |                 Magic "TDMKBMAP" (8 bytes)                    |   0
 *  +-------------------------------+-------------------------------+
 *  |  Major version (u16)          |  Minor version (u16)          |   8
 *  +-------------------------------+-------------------------------+
 *  |                     Header length (u32) = 4096                |  12
 *  +---------------------------------------------------------------+
 *  |          CRC32C of the 4096 header bytes, this field 0        |  16
 *  +---------------------------------------------------------------+
 *  |    Flags (u32): bit0 in-use, bit1 inconsistent, bit2 durable  |  20
 *  +---------------------------------------------------------------+
 *  |  Granularity (u64) | Disk size (u64) | Chunk count (u64)      |  24, 32, 40
 *  |  Data offset (u64) | Data length (u64)                        |  48, 56
 *  |  Summary offset (u64) | Summary length (u64)   (0: none)      |  64, 72
 *  |  Creation time (u64 ms) | Generation (u64) | Open time (ms)   |  80, 88, 96
 *  |  Boot id at open (16 bytes, UUID big-endian halves)           | 104
 *  |  Last clean close time (u64 ms, 0 never)                      | 120
 *  |  Name length (u32) | reserved (u32)                           | 128, 132
 *  |  reserved up to 256                                           | 136
 *  |  Name, UTF-8, 1..1023 bytes, zero padded to 1024              | 256
 *  |  reserved, zero, up to 4096                                   | 1280
 *  +---------------------------------------------------------------+
 *  |  Data: max(1, ceil(chunks / 64)) u64 words, chunk i at bit     | 4096
 *  |  (i mod 64) of word i / 64, zero padded to a 4 KiB multiple    |
 *  +---------------------------------------------------------------+
 *  |  Summary (1.1): level 1, one bit per data word, padded to 4 KiB; | summary offset
 *  |  then level 2, one bit per level-1 word, padded to 4 KiB.       |
 *  |  Meaningful only when the summary fields are non-zero, which a  |
 *  |  clean close sets and every open for writing clears.            |
 *  +---------------------------------------------------------------+
 * </pre>
 */
public final class BitmapFileDescriptor
{
    /** "TDMKBMAP" read as a little-endian u64. */
    public static final long MAGIC;
    /** Major version this code writes and the only one it reads. */
    public static final int VERSION_MAJOR = 1;
    /**
     * Minor version this code writes: 1 adds the summary area after the data (1.0 code refuses such a file
     * with {@code BAD_LAYOUT}); 1.0 files are read, and a clean close rewrites them as 1.1. Newer minors are
     * read.
     */
    public static final int VERSION_MINOR = 1;

    /** Length of the header, also where the data area starts. */
    public static final int HEADER_LENGTH = 4096;
    /** The page size the data area is padded to and that {@code force()} works in. */
    public static final int PAGE_SIZE = 4096;

    /** Flag: a process has the file open (set at open, cleared by a clean close). */
    public static final int FLAG_IN_USE = 1;
    /** Flag: the bits are not to be trusted (found after an unclean close in lazy mode). */
    public static final int FLAG_INCONSISTENT = 1 << 1;
    /** Flag: durable mode, every page that gained bits is forced before the data it covers is written. */
    public static final int FLAG_DURABLE = 1 << 2;

    /** Smallest granularity, QEMU's limit. */
    public static final long MIN_GRANULARITY = 512;
    /** Largest granularity, QEMU's limit. */
    public static final long MAX_GRANULARITY = 1L << 31;
    /** Longest name in bytes of UTF-8, QEMU's limit. */
    public static final int MAX_NAME_BYTES = 1023;
    /** Largest disk: keeps every byte offset computed from a chunk index inside a long. */
    public static final long MAX_DISK_SIZE = 1L << 62;
    /** Most chunks: 2^39 chunks is 64 GiB of data (2 PiB at 4 KiB) and keeps level 1 within one buffer. */
    public static final long MAX_CHUNK_COUNT = 1L << 39;

    public static final int MAGIC_OFFSET;
    public static final int VERSION_MAJOR_OFFSET;
    public static final int VERSION_MINOR_OFFSET;
    public static final int HEADER_LENGTH_OFFSET;
    public static final int CRC_OFFSET;
    public static final int FLAGS_OFFSET;
    public static final int GRANULARITY_OFFSET;
    public static final int DISK_SIZE_OFFSET;
    public static final int CHUNK_COUNT_OFFSET;
    public static final int DATA_OFFSET_OFFSET;
    public static final int DATA_LENGTH_OFFSET;
    public static final int SUMMARY_OFFSET_OFFSET;
    public static final int SUMMARY_LENGTH_OFFSET;
    public static final int CREATION_TIME_OFFSET;
    public static final int GENERATION_OFFSET;
    public static final int OPEN_TIME_OFFSET;
    public static final int BOOT_ID_OFFSET;
    public static final int CLEAN_CLOSE_TIME_OFFSET;
    public static final int NAME_LENGTH_OFFSET;
    public static final int NAME_OFFSET;
    public static final int NAME_FIELD_LENGTH = 1024;
    public static final int BOOT_ID_LENGTH = 16;

    static
    {
        long magic = 0;
        final byte[] ascii = "TDMKBMAP".getBytes(StandardCharsets.US_ASCII);
        for (int i = ascii.length - 1; i >= 0; i--)
        {
            magic = (magic << 8) | (ascii[i] & 0xFF);
        }
        MAGIC = magic;

        MAGIC_OFFSET = 0;
        VERSION_MAJOR_OFFSET = MAGIC_OFFSET + Long.BYTES;
        VERSION_MINOR_OFFSET = VERSION_MAJOR_OFFSET + Short.BYTES;
        HEADER_LENGTH_OFFSET = VERSION_MINOR_OFFSET + Short.BYTES;
        CRC_OFFSET = HEADER_LENGTH_OFFSET + Integer.BYTES;
        FLAGS_OFFSET = CRC_OFFSET + Integer.BYTES;
        GRANULARITY_OFFSET = FLAGS_OFFSET + Integer.BYTES;
        DISK_SIZE_OFFSET = GRANULARITY_OFFSET + Long.BYTES;
        CHUNK_COUNT_OFFSET = DISK_SIZE_OFFSET + Long.BYTES;
        DATA_OFFSET_OFFSET = CHUNK_COUNT_OFFSET + Long.BYTES;
        DATA_LENGTH_OFFSET = DATA_OFFSET_OFFSET + Long.BYTES;
        SUMMARY_OFFSET_OFFSET = DATA_LENGTH_OFFSET + Long.BYTES;
        SUMMARY_LENGTH_OFFSET = SUMMARY_OFFSET_OFFSET + Long.BYTES;
        CREATION_TIME_OFFSET = SUMMARY_LENGTH_OFFSET + Long.BYTES;
        GENERATION_OFFSET = CREATION_TIME_OFFSET + Long.BYTES;
        OPEN_TIME_OFFSET = GENERATION_OFFSET + Long.BYTES;
        BOOT_ID_OFFSET = OPEN_TIME_OFFSET + Long.BYTES;
        CLEAN_CLOSE_TIME_OFFSET = BOOT_ID_OFFSET + BOOT_ID_LENGTH;
        NAME_LENGTH_OFFSET = CLEAN_CLOSE_TIME_OFFSET + Long.BYTES;
        NAME_OFFSET = 256;
        if (NAME_LENGTH_OFFSET + 2 * Integer.BYTES > NAME_OFFSET || NAME_OFFSET + NAME_FIELD_LENGTH > HEADER_LENGTH)
        {
            throw new ExceptionInInitializerError("bitmap header fields overlap");
        }
    }

    private BitmapFileDescriptor()
    {
    }

    /**
     * @param chunkCount chunks tracked.
     * @return QEMU's word count, {@code max(1, ceil(chunkCount / 64))}.
     */
    public static long wordCount(final long chunkCount)
    {
        return Math.max(1, (chunkCount + 63) >>> 6);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return bytes of the data area in the file: the words, padded to a whole page.
     */
    public static long dataAreaLength(final long chunkCount)
    {
        return align(wordCount(chunkCount) * Long.BYTES, PAGE_SIZE);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return the length a bitmap file with that many chunks must have.
     */
    public static long fileLength(final long chunkCount)
    {
        return summaryOffset(chunkCount) + summaryAreaLength(chunkCount);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return the length a file must have for its data area alone (format 1.0, or 1.1 while open).
     */
    public static long dataEnd(final long chunkCount)
    {
        return HEADER_LENGTH + dataAreaLength(chunkCount);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return words of level 1: one bit per data word.
     */
    public static long level1Words(final long chunkCount)
    {
        return (wordCount(chunkCount) + 63) >>> 6;
    }

    /**
     * @param chunkCount chunks tracked.
     * @return words of level 2: one bit per level-1 word.
     */
    public static long level2Words(final long chunkCount)
    {
        return (level1Words(chunkCount) + 63) >>> 6;
    }

    /**
     * @param chunkCount chunks tracked.
     * @return where the summary area starts in the file: right after the data area.
     */
    public static long summaryOffset(final long chunkCount)
    {
        return dataEnd(chunkCount);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return bytes of the summary area: level 1 and then level 2, each padded to a whole page.
     */
    public static long summaryAreaLength(final long chunkCount)
    {
        return level2OffsetInSummary(chunkCount) + align(level2Words(chunkCount) * Long.BYTES, PAGE_SIZE);
    }

    /**
     * @param chunkCount chunks tracked.
     * @return where level 2 starts, relative to the summary offset.
     */
    public static long level2OffsetInSummary(final long chunkCount)
    {
        return align(level1Words(chunkCount) * Long.BYTES, PAGE_SIZE);
    }

    /**
     * Records that the summary area holds levels 1 and 2 exactly as a clean close left them.
     *
     * @param header the header buffer.
     * @param chunkCount chunks tracked.
     */
    public static void writeSummaryFields(final UnsafeBuffer header, final long chunkCount)
    {
        header.putLong(SUMMARY_OFFSET_OFFSET, summaryOffset(chunkCount), ByteOrder.LITTLE_ENDIAN);
        header.putLong(SUMMARY_LENGTH_OFFSET, summaryAreaLength(chunkCount), ByteOrder.LITTLE_ENDIAN);
        header.putShort(VERSION_MINOR_OFFSET, (short)Math.max(VERSION_MINOR,
            header.getShort(VERSION_MINOR_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF), ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Records that the summary area is not to be read (set by every open for writing: from then on the
     * data may change without the persisted summary following).
     *
     * @param header the header buffer.
     */
    public static void clearSummaryFields(final UnsafeBuffer header)
    {
        header.putLong(SUMMARY_OFFSET_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(SUMMARY_LENGTH_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * @param header a validated header.
     * @return whether the summary fields say the summary area is meaningful.
     */
    public static boolean hasSummary(final UnsafeBuffer header)
    {
        return header.getLong(SUMMARY_OFFSET_OFFSET, ByteOrder.LITTLE_ENDIAN) != 0;
    }

    /**
     * @param diskSize bytes of the disk.
     * @param granularity bytes per chunk.
     * @return {@code ceil(diskSize / granularity)}.
     */
    public static long chunkCount(final long diskSize, final long granularity)
    {
        return (diskSize + granularity - 1) >>> Long.numberOfTrailingZeros(granularity);
    }

    /**
     * @param granularity candidate granularity.
     * @return {@code null} if acceptable, else what is wrong with it.
     */
    public static String granularityProblem(final long granularity)
    {
        if (granularity < MIN_GRANULARITY || granularity > MAX_GRANULARITY || Long.bitCount(granularity) != 1)
        {
            return "granularity " + granularity + " must be a power of two between 512 and 2147483648 bytes";
        }
        return null;
    }

    /**
     * @param diskSize candidate disk size.
     * @param granularity a granularity that passed {@link #granularityProblem(long)}.
     * @return {@code null} if acceptable, else what is wrong with it.
     */
    public static String diskSizeProblem(final long diskSize, final long granularity)
    {
        if (diskSize < 0)
        {
            return "disk size " + diskSize + " is negative";
        }
        if (diskSize > MAX_DISK_SIZE)
        {
            return "disk size " + diskSize + " exceeds the largest supported, " + MAX_DISK_SIZE;
        }
        if (chunkCount(diskSize, granularity) > MAX_CHUNK_COUNT)
        {
            return "disk size " + diskSize + " at granularity " + granularity + " needs " +
                chunkCount(diskSize, granularity) + " chunks, more than the supported " + MAX_CHUNK_COUNT;
        }
        return null;
    }

    /**
     * @param name candidate bitmap name.
     * @return its UTF-8 bytes.
     * @throws BitmapArgumentException if it is empty or longer than 1023 bytes of UTF-8.
     */
    public static byte[] encodeName(final String name)
    {
        if (name == null || name.isEmpty())
        {
            throw new BitmapArgumentException(BitmapError.BAD_NAME, "bitmap name cannot be empty");
        }
        final byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        if (bytes.length > MAX_NAME_BYTES)
        {
            throw new BitmapArgumentException(BitmapError.BAD_NAME,
                "bitmap name too long: " + bytes.length + " bytes of UTF-8, at most " + MAX_NAME_BYTES);
        }
        return bytes;
    }

    /**
     * Computes the header checksum: CRC32C of the 4096 header bytes with the checksum field read as zero.
     *
     * @param header a buffer holding at least the header.
     * @return the checksum as an unsigned 32-bit value in an int.
     */
    public static int computeCrc(final UnsafeBuffer header)
    {
        final byte[] bytes = new byte[HEADER_LENGTH];
        header.getBytes(0, bytes);
        for (int i = 0; i < Integer.BYTES; i++)
        {
            bytes[CRC_OFFSET + i] = 0;
        }
        final CRC32C crc = new CRC32C();
        crc.update(bytes, 0, bytes.length);
        return (int)crc.getValue();
    }

    /**
     * Recomputes and stores the header checksum; call after every header change.
     *
     * @param header the header buffer.
     */
    public static void sealCrc(final UnsafeBuffer header)
    {
        header.putInt(CRC_OFFSET, computeCrc(header), ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Writes the fields of a freshly created header (not the checksum; call {@link #sealCrc}).
     *
     * @param header a zeroed buffer of at least {@link #HEADER_LENGTH} bytes.
     * @param name the name's UTF-8 bytes from {@link #encodeName}.
     * @param diskSize bytes of the disk.
     * @param granularity bytes per chunk.
     * @param creationTimeMillis creation time.
     */
    public static void writeNewHeader(
        final UnsafeBuffer header,
        final byte[] name,
        final long diskSize,
        final long granularity,
        final long creationTimeMillis)
    {
        final long chunks = chunkCount(diskSize, granularity);
        header.putLong(MAGIC_OFFSET, MAGIC, ByteOrder.LITTLE_ENDIAN);
        header.putShort(VERSION_MAJOR_OFFSET, (short)VERSION_MAJOR, ByteOrder.LITTLE_ENDIAN);
        header.putShort(VERSION_MINOR_OFFSET, (short)VERSION_MINOR, ByteOrder.LITTLE_ENDIAN);
        header.putInt(HEADER_LENGTH_OFFSET, HEADER_LENGTH, ByteOrder.LITTLE_ENDIAN);
        header.putInt(FLAGS_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(GRANULARITY_OFFSET, granularity, ByteOrder.LITTLE_ENDIAN);
        writeGeometry(header, diskSize, granularity);
        header.putLong(SUMMARY_OFFSET_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(SUMMARY_LENGTH_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(CREATION_TIME_OFFSET, creationTimeMillis, ByteOrder.LITTLE_ENDIAN);
        header.putLong(GENERATION_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(OPEN_TIME_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putLong(CLEAN_CLOSE_TIME_OFFSET, 0, ByteOrder.LITTLE_ENDIAN);
        header.putInt(NAME_LENGTH_OFFSET, name.length, ByteOrder.LITTLE_ENDIAN);
        header.putBytes(NAME_OFFSET, name);
        if (chunks > MAX_CHUNK_COUNT)
        {
            throw new IllegalStateException("chunk count " + chunks + " was not validated");
        }
    }

    /**
     * Writes disk size, chunk count, data offset and data length for a (new or resized) geometry.
     *
     * @param header the header buffer.
     * @param diskSize bytes of the disk.
     * @param granularity bytes per chunk.
     */
    public static void writeGeometry(final UnsafeBuffer header, final long diskSize, final long granularity)
    {
        final long chunks = chunkCount(diskSize, granularity);
        header.putLong(DISK_SIZE_OFFSET, diskSize, ByteOrder.LITTLE_ENDIAN);
        header.putLong(CHUNK_COUNT_OFFSET, chunks, ByteOrder.LITTLE_ENDIAN);
        header.putLong(DATA_OFFSET_OFFSET, HEADER_LENGTH, ByteOrder.LITTLE_ENDIAN);
        header.putLong(DATA_LENGTH_OFFSET, wordCount(chunks) * Long.BYTES, ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Checks a header read from a file, field by field, without changing anything.
     *
     * @param file the file, for messages.
     * @param header the bytes read from the start of the file (at most {@link #HEADER_LENGTH}).
     * @param headerBytesRead how many bytes were read.
     * @param fileLength the file's length.
     * @throws BitmapFileException naming the first field that is wrong.
     */
    public static void validate(
        final Path file, final UnsafeBuffer header, final int headerBytesRead, final long fileLength)
        throws BitmapFileException
    {
        if (headerBytesRead < Long.BYTES)
        {
            throw new BitmapFileException(BitmapError.TRUNCATED, file,
                "file is " + fileLength + " bytes, shorter than the " + HEADER_LENGTH + "-byte header");
        }
        final long magic = header.getLong(MAGIC_OFFSET, ByteOrder.LITTLE_ENDIAN);
        if (magic != MAGIC)
        {
            throw new BitmapFileException(BitmapError.BAD_MAGIC, file,
                String.format("bad magic 0x%016x at offset 0, expected 0x%016x (\"TDMKBMAP\")", magic, MAGIC));
        }
        if (headerBytesRead < HEADER_LENGTH)
        {
            throw new BitmapFileException(BitmapError.TRUNCATED, file,
                "file is " + fileLength + " bytes, shorter than the " + HEADER_LENGTH + "-byte header");
        }
        final int major = header.getShort(VERSION_MAJOR_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF;
        final int minor = header.getShort(VERSION_MINOR_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF;
        if (major != VERSION_MAJOR)
        {
            throw new BitmapFileException(BitmapError.UNSUPPORTED_VERSION, file,
                "format version " + major + "." + minor + " at offset " + VERSION_MAJOR_OFFSET +
                " is not supported; this build reads major version " + VERSION_MAJOR);
        }
        final int headerLength = header.getInt(HEADER_LENGTH_OFFSET, ByteOrder.LITTLE_ENDIAN);
        if (headerLength != HEADER_LENGTH)
        {
            throw new BitmapFileException(BitmapError.BAD_LAYOUT, file,
                "header length " + headerLength + " at offset " + HEADER_LENGTH_OFFSET + ", expected " + HEADER_LENGTH);
        }
        final int storedCrc = header.getInt(CRC_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final int actualCrc = computeCrc(header);
        if (storedCrc != actualCrc)
        {
            throw new BitmapFileException(BitmapError.BAD_CHECKSUM, file,
                String.format("header CRC32C at offset %d is 0x%08x but the header hashes to 0x%08x",
                    CRC_OFFSET, storedCrc, actualCrc));
        }
        final long granularity = header.getLong(GRANULARITY_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final String granularityProblem = granularityProblem(granularity);
        if (granularityProblem != null)
        {
            throw new BitmapFileException(BitmapError.BAD_GRANULARITY, file,
                granularityProblem + " (offset " + GRANULARITY_OFFSET + ")");
        }
        final long diskSize = header.getLong(DISK_SIZE_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final String sizeProblem = diskSizeProblem(diskSize, granularity);
        if (sizeProblem != null)
        {
            throw new BitmapFileException(BitmapError.BAD_SIZE, file, sizeProblem + " (offset " + DISK_SIZE_OFFSET + ")");
        }
        final long chunks = header.getLong(CHUNK_COUNT_OFFSET, ByteOrder.LITTLE_ENDIAN);
        if (chunks != chunkCount(diskSize, granularity))
        {
            throw new BitmapFileException(BitmapError.BAD_SIZE, file,
                "chunk count " + chunks + " at offset " + CHUNK_COUNT_OFFSET + " disagrees with disk size " + diskSize +
                " and granularity " + granularity + " (expected " + chunkCount(diskSize, granularity) + ")");
        }
        final long dataOffset = header.getLong(DATA_OFFSET_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final long dataLength = header.getLong(DATA_LENGTH_OFFSET, ByteOrder.LITTLE_ENDIAN);
        if (dataOffset != HEADER_LENGTH || dataLength != wordCount(chunks) * Long.BYTES)
        {
            throw new BitmapFileException(BitmapError.BAD_LAYOUT, file,
                "data area at offset " + dataOffset + " length " + dataLength + " (fields at " + DATA_OFFSET_OFFSET +
                ", " + DATA_LENGTH_OFFSET + "), expected offset " + HEADER_LENGTH + " length " +
                wordCount(chunks) * Long.BYTES);
        }
        final long summaryOffset = header.getLong(SUMMARY_OFFSET_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final long summaryLength = header.getLong(SUMMARY_LENGTH_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final boolean summaryAbsent = summaryOffset == 0 && summaryLength == 0;
        if (!summaryAbsent && (summaryOffset != summaryOffset(chunks) || summaryLength != summaryAreaLength(chunks)))
        {
            throw new BitmapFileException(BitmapError.BAD_LAYOUT, file,
                "summary area at offset " + summaryOffset + " length " + summaryLength + " (fields at " +
                SUMMARY_OFFSET_OFFSET + ", " + SUMMARY_LENGTH_OFFSET + "), expected both 0 or offset " +
                summaryOffset(chunks) + " length " + summaryAreaLength(chunks));
        }
        final int nameLength = header.getInt(NAME_LENGTH_OFFSET, ByteOrder.LITTLE_ENDIAN);
        if (nameLength < 1 || nameLength > MAX_NAME_BYTES)
        {
            throw new BitmapFileException(BitmapError.BAD_NAME, file,
                "name length " + nameLength + " at offset " + NAME_LENGTH_OFFSET + " is outside 1.." + MAX_NAME_BYTES);
        }
        try
        {
            decodeName(header);
        }
        catch (final CharacterCodingException ex)
        {
            throw new BitmapFileException(BitmapError.BAD_NAME, file,
                "name at offset " + NAME_OFFSET + " is not valid UTF-8");
        }
        final long expectedLength = summaryAbsent ? dataEnd(chunks) : fileLength(chunks);
        if (fileLength < expectedLength)
        {
            throw new BitmapFileException(BitmapError.TRUNCATED, file,
                "file is " + fileLength + " bytes but its " + chunks + " chunks need " + expectedLength);
        }
    }

    /**
     * @param header a validated header.
     * @return the name.
     * @throws CharacterCodingException if the name bytes are not UTF-8.
     */
    public static String decodeName(final UnsafeBuffer header) throws CharacterCodingException
    {
        final int nameLength = header.getInt(NAME_LENGTH_OFFSET, ByteOrder.LITTLE_ENDIAN);
        final byte[] bytes = new byte[nameLength];
        header.getBytes(NAME_OFFSET, bytes);
        return StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT)
            .onUnmappableCharacter(CodingErrorAction.REPORT)
            .decode(ByteBuffer.wrap(bytes))
            .toString();
    }

    /**
     * @param header a header buffer.
     * @return the boot id stored at open.
     */
    public static UUID bootId(final UnsafeBuffer header)
    {
        return new UUID(
            header.getLong(BOOT_ID_OFFSET, ByteOrder.BIG_ENDIAN),
            header.getLong(BOOT_ID_OFFSET + Long.BYTES, ByteOrder.BIG_ENDIAN));
    }

    /**
     * @param header a header buffer.
     * @param bootId the boot id to store.
     */
    public static void putBootId(final UnsafeBuffer header, final UUID bootId)
    {
        header.putLong(BOOT_ID_OFFSET, bootId.getMostSignificantBits(), ByteOrder.BIG_ENDIAN);
        header.putLong(BOOT_ID_OFFSET + Long.BYTES, bootId.getLeastSignificantBits(), ByteOrder.BIG_ENDIAN);
    }

    /**
     * @param value a length.
     * @param alignment a power of two.
     * @return {@code value} rounded up to a multiple of {@code alignment}.
     */
    public static long align(final long value, final long alignment)
    {
        return (value + alignment - 1) & -alignment;
    }
}
