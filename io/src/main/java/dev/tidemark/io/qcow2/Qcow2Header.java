package dev.tidemark.io.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Immutable, so safe to share between threads: the qcow2 header fields this package uses, with the
 * on-disk layout (all fields big-endian) in one place, a parser that validates and a writer.
 *
 * <pre>
 *  offset size field                     offset size field (version 3 only)
 *  0      4    magic "QFI\xfb"            72     8    incompatible_features
 *  4      4    version (2 or 3)           80     8    compatible_features
 *  8      8    backing_file_offset        88     8    autoclear_features
 *  16     4    backing_file_size          96     4    refcount_order
 *  20     4    cluster_bits               100    4    header_length
 *  24     8    size (virtual, bytes)      104    1    compression_type (when header_length &gt; 104)
 *  32     4    crypt_method
 *  36     4    l1_size (entries)          then header extensions: type u32, length u32, data padded
 *  40     8    l1_table_offset            to 8 bytes; type 0 ends them. 0xe2792aca names the backing
 *  48     8    refcount_table_offset      format. The backing file name (not NUL-terminated) sits at
 *  56     4    refcount_table_clusters    backing_file_offset, inside cluster 0.
 *  60     4    nb_snapshots
 *  64     8    snapshots_offset
 * </pre>
 */
record Qcow2Header(
    int version,
    int clusterBits,
    long size,
    int cryptMethod,
    int l1Size,
    long l1TableOffset,
    long refcountTableOffset,
    int refcountTableClusters,
    int nbSnapshots,
    long incompatibleFeatures,
    int refcountOrder,
    int headerLength,
    String backingFile,
    String backingFormat)
{
    static final int MAGIC = 0x514649fb;
    static final int V2_HEADER_LENGTH = 72;
    static final int V3_HEADER_LENGTH = 112;
    static final int EXT_END = 0;
    static final int EXT_BACKING_FORMAT = 0xe2792aca;
    static final int MIN_CLUSTER_BITS = 9;
    static final int MAX_CLUSTER_BITS = 21;
    static final int MAX_BACKING_NAME = 1023;
    static final long MAX_L1_BYTES = 32L << 20;
    static final long MAX_REFTABLE_BYTES = 8L << 20;

    static final long INCOMPAT_DIRTY = 1L;
    static final long INCOMPAT_CORRUPT = 1L << 1;
    static final long INCOMPAT_DATA_FILE = 1L << 2;
    static final long INCOMPAT_COMPRESSION = 1L << 3;
    static final long INCOMPAT_EXTL2 = 1L << 4;

    /** L1 and L2 entries: bits 9..55 hold a host offset. */
    static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO = 1L;
    static final long L1_RESERVED = ~(OFFSET_MASK | COPIED);
    static final long L2_RESERVED = ~(OFFSET_MASK | COPIED | COMPRESSED | ZERO);

    int clusterSize()
    {
        return 1 << clusterBits;
    }

    /**
     * Reads and validates the header of {@code image}.
     *
     * @throws Qcow2FormatException on a bad magic, an unsupported version or feature, or a field that
     *                              points outside the file.
     */
    static Qcow2Header read(final Path image, final FileChannel channel) throws IOException
    {
        final long fileSize = channel.size();
        if (fileSize < V2_HEADER_LENGTH)
        {
            throw new Qcow2FormatException(image, "file of " + fileSize + " bytes is too short for a qcow2 header");
        }
        final ByteBuffer fixed = readAt(channel, 0, (int)Math.min(fileSize, 112));
        if (fixed.getInt(0) != MAGIC)
        {
            throw new Qcow2FormatException(image, String.format("bad magic 0x%08x (qcow2 has 0x%08x)",
                fixed.getInt(0), MAGIC));
        }
        final int version = fixed.getInt(4);
        if (version != 2 && version != 3)
        {
            throw new Qcow2FormatException(image, "unsupported qcow2 version " + version + " (2 and 3 are read)");
        }
        final long backingOffset = fixed.getLong(8);
        final int backingSize = fixed.getInt(16);
        final int clusterBits = fixed.getInt(20);
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS)
        {
            throw new Qcow2FormatException(image, "cluster_bits " + clusterBits + " outside [9, 21]");
        }
        final int clusterSize = 1 << clusterBits;
        final long size = fixed.getLong(24);
        final int cryptMethod = fixed.getInt(32);
        final int l1Size = fixed.getInt(36);
        final long l1Offset = fixed.getLong(40);
        final long refcountTableOffset = fixed.getLong(48);
        final int refcountTableClusters = fixed.getInt(56);
        final int nbSnapshots = fixed.getInt(60);
        long incompatible = 0;
        int refcountOrder = 4;
        int headerLength = V2_HEADER_LENGTH;
        if (version == 3)
        {
            if (fileSize < 104)
            {
                throw new Qcow2FormatException(image, "file of " + fileSize + " bytes is too short for a v3 header");
            }
            incompatible = fixed.getLong(72);
            refcountOrder = fixed.getInt(96);
            headerLength = fixed.getInt(100);
            if (headerLength < 104 || headerLength > clusterSize || headerLength % 8 != 0)
            {
                throw new Qcow2FormatException(image, "header_length " + headerLength + " invalid");
            }
        }
        if (size < 0)
        {
            throw new Qcow2FormatException(image, "negative virtual size " + size);
        }
        if (cryptMethod != 0)
        {
            throw new Qcow2FormatException(image, "encrypted image (crypt_method " + cryptMethod + ") not supported");
        }
        checkIncompatible(image, incompatible);
        if (refcountOrder > 6)
        {
            throw new Qcow2FormatException(image, "refcount_order " + refcountOrder + " above 6");
        }
        final long l2Entries = clusterSize / 8;
        final long needL1 = ceilDiv(ceilDiv(size, clusterSize), l2Entries);
        if (l1Size < 0 || l1Size < needL1)
        {
            throw new Qcow2FormatException(image, "l1_size " + Integer.toUnsignedString(l1Size)
                + " too small for virtual size " + size + " (needs " + needL1 + ")");
        }
        if ((long)l1Size * 8 > MAX_L1_BYTES)
        {
            throw new Qcow2FormatException(image, "l1_size " + l1Size + " above QEMU's limit");
        }
        if (l1Size > 0 && (l1Offset <= 0 || (l1Offset & (clusterSize - 1)) != 0
            || l1Offset > fileSize - (long)l1Size * 8))
        {
            throw new Qcow2FormatException(image, "L1 table at offset " + l1Offset + " (" + l1Size
                + " entries) is unaligned or beyond the end of the file (" + fileSize + " bytes)");
        }
        String backingFile = null;
        String backingFormat = null;
        final ByteBuffer cluster0 = readAt(channel, 0, (int)Math.min(fileSize, clusterSize));
        // Header extensions follow the header in both versions (at 72 in version 2).
        backingFormat = readExtensions(image, cluster0, headerLength);
        if (backingOffset != 0)
        {
            if (backingSize <= 0 || backingSize > MAX_BACKING_NAME || backingOffset < 0
                || backingOffset > cluster0.limit() - (long)backingSize)
            {
                throw new Qcow2FormatException(image, "backing file name at offset " + backingOffset + " (length "
                    + Integer.toUnsignedString(backingSize) + ") lies outside the first cluster");
            }
            final byte[] name = new byte[backingSize];
            cluster0.get((int)backingOffset, name);
            backingFile = new String(name, StandardCharsets.UTF_8);
        }
        return new Qcow2Header(version, clusterBits, size, cryptMethod, l1Size, l1Offset, refcountTableOffset,
            refcountTableClusters, nbSnapshots, incompatible, refcountOrder, headerLength, backingFile,
            backingFormat);
    }

    private static void checkIncompatible(final Path image, final long incompatible) throws Qcow2FormatException
    {
        if ((incompatible & INCOMPAT_CORRUPT) != 0)
        {
            throw new Qcow2FormatException(image, "image is marked corrupt (incompatible feature bit 1); "
                + "repair it with qemu-img check -r all");
        }
        if ((incompatible & INCOMPAT_DATA_FILE) != 0)
        {
            throw new Qcow2FormatException(image, "external data file (incompatible feature bit 2) not supported");
        }
        if ((incompatible & INCOMPAT_EXTL2) != 0)
        {
            throw new Qcow2FormatException(image, "extended L2 entries (incompatible feature bit 4) not supported");
        }
        final long unknown = incompatible & ~(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION);
        if (unknown != 0)
        {
            throw new Qcow2FormatException(image, String.format("unknown incompatible features 0x%x", unknown));
        }
    }

    private static String readExtensions(final Path image, final ByteBuffer cluster0, final int headerLength)
        throws Qcow2FormatException
    {
        String backingFormat = null;
        int position = headerLength;
        while (true)
        {
            if (position > cluster0.limit() - 8)
            {
                throw new Qcow2FormatException(image, "header extensions run past the first cluster at offset "
                    + position);
            }
            final int type = cluster0.getInt(position);
            final int length = cluster0.getInt(position + 4);
            if (type == EXT_END)
            {
                return backingFormat;
            }
            if (length < 0 || length > cluster0.limit() - position - 8)
            {
                throw new Qcow2FormatException(image, String.format(
                    "header extension 0x%08x at offset %d has length %d beyond the first cluster",
                    type, position, length));
            }
            if (type == EXT_BACKING_FORMAT)
            {
                final byte[] name = new byte[length];
                cluster0.get(position + 8, name);
                backingFormat = new String(name, StandardCharsets.US_ASCII);
            }
            position += 8 + ((length + 7) & ~7);
        }
    }

    /**
     * Builds cluster 0 of a new version 3 image: the header, the backing format extension when there is a
     * backing file, the end marker and the backing file name.
     *
     * @throws IllegalArgumentException if it does not fit in one cluster.
     */
    ByteBuffer encode()
    {
        final byte[] backingName = backingFile == null ? new byte[0] : backingFile.getBytes(StandardCharsets.UTF_8);
        final byte[] formatName = backingFormat == null ? new byte[0]
            : backingFormat.getBytes(StandardCharsets.US_ASCII);
        int extensionsEnd = V3_HEADER_LENGTH;
        if (backingFile != null)
        {
            extensionsEnd += 8 + ((formatName.length + 7) & ~7);
        }
        extensionsEnd += 8;
        final int total = extensionsEnd + backingName.length;
        if (total > clusterSize())
        {
            throw new IllegalArgumentException("header with backing file name of " + backingName.length
                + " bytes needs " + total + " bytes, more than the cluster size " + clusterSize());
        }
        final ByteBuffer buffer = ByteBuffer.allocateDirect(total).order(ByteOrder.BIG_ENDIAN);
        buffer.putInt(0, MAGIC);
        buffer.putInt(4, 3);
        buffer.putLong(8, backingFile == null ? 0 : extensionsEnd);
        buffer.putInt(16, backingName.length);
        buffer.putInt(20, clusterBits);
        buffer.putLong(24, size);
        buffer.putInt(32, 0);
        buffer.putInt(36, l1Size);
        buffer.putLong(40, l1TableOffset);
        buffer.putLong(48, refcountTableOffset);
        buffer.putInt(56, refcountTableClusters);
        buffer.putInt(60, 0);
        buffer.putLong(64, 0);
        buffer.putLong(72, 0);
        buffer.putLong(80, 0);
        buffer.putLong(88, 0);
        buffer.putInt(96, refcountOrder);
        buffer.putInt(100, V3_HEADER_LENGTH);
        // Byte 104 is compression_type 0 (zlib), then padding to 112: already zero.
        int position = V3_HEADER_LENGTH;
        if (backingFile != null)
        {
            buffer.putInt(position, EXT_BACKING_FORMAT);
            buffer.putInt(position + 4, formatName.length);
            buffer.put(position + 8, formatName);
            position += 8 + ((formatName.length + 7) & ~7);
        }
        buffer.putInt(position, EXT_END);
        buffer.putInt(position + 4, 0);
        buffer.put(extensionsEnd, backingName);
        return buffer;
    }

    static ByteBuffer readAt(final FileChannel channel, final long offset, final int length) throws IOException
    {
        final ByteBuffer buffer = ByteBuffer.allocate(length).order(ByteOrder.BIG_ENDIAN);
        long position = offset;
        while (buffer.hasRemaining())
        {
            if (channel.read(buffer, position) < 0)
            {
                break;
            }
            position = offset + buffer.position();
        }
        buffer.flip();
        return buffer;
    }

    static long ceilDiv(final long value, final long divisor)
    {
        return (value + divisor - 1) / divisor;
    }
}
