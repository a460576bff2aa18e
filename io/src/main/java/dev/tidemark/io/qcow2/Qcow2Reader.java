package dev.tidemark.io.qcow2;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.LongBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Safe for concurrent use by any number of threads (its tables are immutable once open; the table cache
 * publishes immutable entries) until {@link #close()}: a read-only {@link BlockStore} over a qcow2 image,
 * version 2 or 3, read through its backing chain.
 *
 * <p>On open it reads the header and every L1 and L2 table, and validates them: bad magic, unsupported
 * version, encryption, compressed clusters, an external data file, extended L2 entries, reserved bits,
 * unaligned offsets and tables or clusters beyond the end of the file each fail with a
 * {@link Qcow2FormatException} that says what and where. The L1 table stays in memory; L2 tables are read
 * again when a read needs them and kept in a direct-mapped cache of {@value #CACHED_TABLES} tables (32 MiB at
 * 64 KiB clusters), so an image whose data is scattered over a large disk (one 64 KiB table per 512 MiB touched:
 * 5 GiB for 80,000 scattered chunks of 64 TiB) does not fill the heap; an image of up to that many tables reads
 * with no metadata I/O once each table was read.
 *
 * <p>Reads: a data cluster reads from this file; a zero cluster (v3) reads zeroes; an unallocated cluster
 * reads from the backing file (qcow2 or raw; a relative name resolves against this image's directory;
 * the format comes from the backing-format header extension, or is probed) or zeroes without one, and past
 * the backing file's end. Internal snapshots are ignored: the active L1 table is read.
 */
public final class Qcow2Reader implements BlockStore
{
    private final Path path;
    private final FileChannel channel;
    private final Qcow2Header header;
    /** Bounds the cached L2 tables; a power of two. */
    static final int CACHED_TABLES = 512;

    /** Host offset of each L2 table by L1 index, 0 where none. */
    private final long[] l2Offsets;
    private final AtomicReferenceArray<CachedTable> tableCache = new AtomicReferenceArray<>(CACHED_TABLES);
    private final int l2Bits;
    private final BlockStore backing;

    private Qcow2Reader(
        final Path path,
        final FileChannel channel,
        final Qcow2Header header,
        final long[] l2Offsets,
        final BlockStore backing)
    {
        this.path = path;
        this.channel = channel;
        this.header = header;
        this.l2Offsets = l2Offsets;
        this.l2Bits = header.clusterBits() - 3;
        this.backing = backing;
    }

    /**
     * Opens {@code image} and its whole backing chain read-only.
     *
     * @throws Qcow2FormatException if any image of the chain is malformed or uses an unsupported feature.
     */
    public static Qcow2Reader open(final Path image) throws IOException
    {
        final Set<Path> seen = new HashSet<>();
        seen.add(image.toRealPath());
        return open(image, 0, seen);
    }

    /**
     * @return whether {@code file} starts with the qcow2 magic (what QEMU's format probe looks at first);
     *         false for a shorter file.
     */
    public static boolean isQcow2(final Path file) throws IOException
    {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ))
        {
            final ByteBuffer head = Qcow2Header.readAt(channel, 0, 4);
            return head.remaining() == 4 && head.getInt(0) == Qcow2Header.MAGIC;
        }
    }

    static Qcow2Reader open(final Path image, final int depth, final Set<Path> seen) throws IOException
    {
        final FileChannel channel = FileChannel.open(image, StandardOpenOption.READ);
        BlockStore backing = null;
        try
        {
            final Qcow2Header header = Qcow2Header.read(image, channel);
            final long[] tables = checkTables(image, channel, header);
            if (header.backingFile() != null)
            {
                backing = Qcow2ReadPath.openBacking(image, header.backingFile(), header.backingFormat(), depth, seen);
            }
            return new Qcow2Reader(image, channel, header, tables, backing);
        }
        catch (final IOException | RuntimeException ex)
        {
            channel.close();
            if (backing != null)
            {
                backing.close();
            }
            throw ex;
        }
    }

    /** Reads and validates every L2 table once. @return the host offset of each, by L1 index. */
    private static long[] checkTables(final Path image, final FileChannel channel, final Qcow2Header header)
        throws IOException
    {
        final long fileSize = channel.size();
        final int clusterSize = header.clusterSize();
        final int l2Entries = clusterSize / 8;
        final long guestClusters = Qcow2Header.ceilDiv(header.size(), clusterSize);
        final int usedL1 = (int)Qcow2Header.ceilDiv(guestClusters, l2Entries);
        final long[] offsets = new long[usedL1];
        if (usedL1 == 0)
        {
            return offsets;
        }
        final LongBuffer l1 = Qcow2Header.readAt(channel, header.l1TableOffset(), usedL1 * 8).asLongBuffer();
        for (int i = 0; i < usedL1; i++)
        {
            final long l1Entry = l1.get(i);
            if ((l1Entry & Qcow2Header.L1_RESERVED) != 0)
            {
                throw new Qcow2FormatException(image, String.format("L1 entry %d (0x%016x) has reserved bits set",
                    i, l1Entry));
            }
            final long l2Offset = l1Entry & Qcow2Header.OFFSET_MASK;
            if (l2Offset == 0)
            {
                continue;
            }
            if ((l2Offset & (clusterSize - 1)) != 0 || l2Offset > fileSize - clusterSize)
            {
                throw new Qcow2FormatException(image, "L2 table " + i + " at offset " + l2Offset
                    + " is unaligned or beyond the end of the file (" + fileSize + " bytes; truncated?)");
            }
            final LongBuffer table = Qcow2Header.readAt(channel, l2Offset, clusterSize).order(ByteOrder.BIG_ENDIAN)
                .asLongBuffer();
            final long firstCluster = (long)i * l2Entries;
            for (int j = 0; j < l2Entries && firstCluster + j < guestClusters; j++)
            {
                checkL2Entry(image, header, fileSize, (firstCluster + j) * clusterSize, table.get(j));
            }
            offsets[i] = l2Offset;
        }
        return offsets;
    }

    private static void checkL2Entry(
        final Path image,
        final Qcow2Header header,
        final long fileSize,
        final long guestOffset,
        final long entry) throws Qcow2FormatException
    {
        if ((entry & Qcow2Header.COMPRESSED) != 0)
        {
            throw new Qcow2FormatException(image, "compressed cluster at guest offset " + guestOffset
                + " is not supported; decompress with qemu-img convert -O qcow2");
        }
        if ((entry & Qcow2Header.L2_RESERVED) != 0 || (header.version() == 2 && (entry & Qcow2Header.ZERO) != 0))
        {
            throw new Qcow2FormatException(image, String.format(
                "L2 entry for guest offset %d (0x%016x) has reserved bits set", guestOffset, entry));
        }
        final long host = entry & Qcow2Header.OFFSET_MASK;
        if (host != 0 && ((host & (header.clusterSize() - 1)) != 0 || host >= fileSize))
        {
            throw new Qcow2FormatException(image, "data cluster for guest offset " + guestOffset
                + " at host offset " + host + " is unaligned or beyond the end of the file (" + fileSize
                + " bytes; truncated?)");
        }
    }

    private long entry(final long guestCluster) throws IOException
    {
        final int index = (int)(guestCluster >>> l2Bits);
        final long offset = l2Offsets[index];
        if (offset == 0)
        {
            return 0;
        }
        final int slot = index & (CACHED_TABLES - 1);
        CachedTable cached = tableCache.get(slot);
        if (cached == null || cached.index != index)
        {
            // Validated at open; the file is opened read-only and images are not changed under a reader.
            final long[] table = new long[1 << l2Bits];
            Qcow2Header.readAt(channel, offset, header.clusterSize()).order(ByteOrder.BIG_ENDIAN).asLongBuffer()
                .get(table);
            cached = new CachedTable(index, table);
            tableCache.set(slot, cached);
        }
        return cached.table[(int)(guestCluster & ((1 << l2Bits) - 1))];
    }

    /** An L2 table in the cache; immutable, so a racing reader sees a whole one. */
    private record CachedTable(int index, long[] table)
    {
    }

    /** @return the image file. */
    public Path path()
    {
        return path;
    }

    /** @return 2 or 3. */
    public int version()
    {
        return header.version();
    }

    /** @return the cluster size in bytes. */
    public int clusterSize()
    {
        return header.clusterSize();
    }

    /** @return the backing file name as stored in the header, or {@code null}. */
    public String backingFile()
    {
        return header.backingFile();
    }

    /** @return the backing format named by the header extension, or {@code null} (then probed). */
    public String backingFormat()
    {
        return header.backingFormat();
    }

    /** @return the opened backing store, or {@code null}; owned by this reader. */
    public BlockStore backing()
    {
        return backing;
    }

    /** @return how many images and raw files the chain holds, this one included. */
    public int chainLength()
    {
        if (backing instanceof Qcow2Reader)
        {
            return 1 + ((Qcow2Reader)backing).chainLength();
        }
        return backing == null ? 1 : 2;
    }

    /**
     * @return whether any guest cluster of this image alone is a data cluster; reads only the L2 tables that exist,
     *         so an empty image of any size answers at once (asking {@link #clusterState} for each of the 2^30
     *         clusters of an empty 64 TiB image took seconds of CPU).
     * @throws IOException when an L2 table cannot be read.
     */
    public boolean holdsData() throws IOException
    {
        final long guestClusters = Qcow2Header.ceilDiv(header.size(), header.clusterSize());
        for (int index = 0; index < l2Offsets.length; index++)
        {
            if (l2Offsets[index] == 0)
            {
                continue;
            }
            final long first = (long)index << l2Bits;
            final long end = Math.min(guestClusters, first + (1L << l2Bits));
            for (long cluster = first; cluster < end; cluster++)
            {
                if (Qcow2ReadPath.isData(entry(cluster)))
                {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * @return whether the guest cluster holding {@code offset} is a data cluster, a zero cluster, or
     *         unallocated in this image alone (not its backing chain).
     */
    public ClusterState clusterState(final long offset)
    {
        checkRange(offset, 1);
        final long entry;
        try
        {
            entry = entry(offset >>> header.clusterBits());
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("reading an L2 table of " + path, ex);
        }
        if (Qcow2ReadPath.isData(entry))
        {
            return ClusterState.DATA;
        }
        return Qcow2ReadPath.isZero(entry) ? ClusterState.ZERO : ClusterState.UNALLOCATED;
    }

    @Override
    public long size()
    {
        return header.size();
    }

    @Override
    public boolean isReadOnly()
    {
        return true;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        checkRange(offset, dst.remaining());
        Qcow2ReadPath.read(channel, header.clusterBits(), this::entry, backing, offset, dst);
    }

    @Override
    public void write(final long offset, final ByteBuffer src)
    {
        throw new IllegalStateException("qcow2 reader for " + path + " is read-only");
    }

    @Override
    public void flush()
    {
        // Nothing is ever written.
    }

    @Override
    public void discard(final long offset, final long length)
    {
        throw new IllegalStateException("qcow2 reader for " + path + " is read-only");
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap)
    {
        throw new IllegalStateException("qcow2 reader for " + path + " is read-only");
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
        throws IOException
    {
        checkRange(offset, length);
        Qcow2ReadPath.extents(header.clusterBits(), this::entry, backing, offset, length, sink);
    }

    @Override
    public void close() throws IOException
    {
        try
        {
            channel.close();
        }
        finally
        {
            if (backing != null)
            {
                backing.close();
            }
        }
    }

    @Override
    public String toString()
    {
        return "Qcow2Reader[" + path + ", v" + header.version() + ", size=" + header.size() + ", cluster="
            + header.clusterSize() + (backing == null ? "" : ", backing=" + backing) + "]";
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > header.size() - length)
        {
            throw new IllegalArgumentException("range [offset " + offset + ", length " + length
                + "] outside image " + path + " of size " + header.size());
        }
    }
}
