package dev.tidemark.io.qcow2;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.KernelCopyTarget;
import dev.tidemark.io.RawFileStore;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashSet;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Safe for concurrent use by any number of threads (writes, zeroes and flushes serialize on one fair lock,
 * reads share it) until {@link #close()}: a {@link BlockStore} that creates a new qcow2 version 3 image,
 * for backup targets.
 *
 * <p>Layout: cluster 0 holds the header, the backing-format extension and the backing file name; the L1
 * table and the refcount table follow, both sized when the image is created (the refcount table for the
 * most clusters the image can ever need). Everything else is appended as needed: data clusters, L2
 * tables, and a refcount block at the start of every range of {@code clusterSize / 2} clusters. Every
 * cluster below the end of the file is in use exactly once, so the refcounts (16-bit, refcount_order 4)
 * are all 1 and there are no leaks.
 *
 * <p>Writes: a whole cluster goes to a fresh cluster at the end of the file, or in place if this image
 * already holds it; a run of whole clusters is one positional write. A partial cluster is written in
 * place when the cluster is already allocated; otherwise the rest of the cluster is filled from the
 * backing chain (through a {@link Qcow2Reader} or raw store), or zeroes without one. Whole clusters of
 * {@link #writeZeroes} and {@link #discard} become zero clusters (L2 bit 0), keeping a host cluster they
 * already had (so nothing leaks; {@code mayUnmap} does not free it).
 *
 * <p>L2 tables: at most {@link Options#l2CacheBytes()} of them stay in memory (32 MiB by default, QEMU's
 * default on Linux), chosen by a clock; the write path does no metadata I/O while its tables are cached. A
 * table pushed out is written to its host cluster first, after the refcounts of every cluster allocated so
 * far, so the file never holds a table entry whose cluster has a zero refcount on disk. A table is read back
 * when a write needs it again; a read of an uncached table reads its one entry. Without the bound, an
 * incremental backup of scattered chunks of a large disk kept one 64 KiB table per 512 MiB of guest space in
 * the heap: 5 GiB for ~80,000 chunks spread over 64 TiB, and garbage-collector pauses of 0.4 s.
 *
 * <p>Crash behaviour: flush writes refcounts first, then L2 and L1 tables, then the header, with a
 * {@code force} after each step. The header is first written by the first flush, so a crash before it
 * leaves a file that no tool takes for qcow2 (QEMU probes it as raw). A crash later leaves the image of
 * the last flush, plus data written in place since, plus leaked clusters ({@code qemu-img check -r leaks}
 * reclaims them); the backup job that was writing it has failed anyway and must not be used as a chain
 * link.
 */
public final class Qcow2Writer implements BlockStore
{
    /** The default cluster size, QEMU's. */
    public static final int DEFAULT_CLUSTER_SIZE = 64 * 1024;
    /** The default bound on cached L2 tables, QEMU's default {@code l2-cache-size} on Linux. */
    public static final long DEFAULT_L2_CACHE_BYTES = 32L << 20;
    private static final int REFCOUNT_ORDER = 4;

    /**
     * Immutable creation options.
     *
     * @param clusterSize   a power of two in [512, 2 MiB].
     * @param backingFile   the backing file name to store (relative names resolve against the new image's
     *                      directory), or {@code null}.
     * @param backingFormat {@code "qcow2"} or {@code "raw"}, required with a backing file.
     */
    public record Options(int clusterSize, String backingFile, String backingFormat, long l2CacheBytes)
    {
        /**
         * @param clusterSize   a power of two in [512, 2 MiB].
         * @param backingFile   the backing file name, or {@code null}.
         * @param backingFormat {@code "qcow2"} or {@code "raw"}, required with a backing file.
         */
        public Options(final int clusterSize, final String backingFile, final String backingFormat)
        {
            this(clusterSize, backingFile, backingFormat, DEFAULT_L2_CACHE_BYTES);
        }

        /** @return 64 KiB clusters, no backing file, a 32 MiB L2 cache. */
        public static Options defaults()
        {
            return new Options(DEFAULT_CLUSTER_SIZE, null, null);
        }

        /** @return these options with another cluster size. */
        public Options withClusterSize(final int size)
        {
            return new Options(size, backingFile, backingFormat, l2CacheBytes);
        }

        /** @return these options with a backing file in {@code format} ("qcow2" or "raw"). */
        public Options withBacking(final String file, final String format)
        {
            return new Options(clusterSize, Objects.requireNonNull(file, "file"), Objects.requireNonNull(format,
                "format"), l2CacheBytes);
        }

        /** @return these options with another bound on cached L2 tables (at least one table is kept). */
        public Options withL2CacheBytes(final long bytes)
        {
            return new Options(clusterSize, backingFile, backingFormat, bytes);
        }
    }

    private final Path path;
    private final FileChannel channel;
    private final BlockStore backing;
    private final Qcow2Header header;
    private final long size;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Bits;
    private final int refBlockEntries;
    private final long maxClusters;
    /** The cached L2 tables by L1 index, {@code null} where not cached; changed under the write lock only. */
    private final long[][] l2Tables;
    private final long[] l2Hosts;
    private final BitSet dirtyL2 = new BitSet();
    /** The clock over cached tables: their L1 indexes, a hand, and a bit set by every use. */
    private final int[] cachedIndexes;
    private final BitSet recentlyUsed = new BitSet();
    private int cachedCount;
    private int clockHand;
    private ByteBuffer tableBuffer;
    /** Clusters below this have their refcount (and their block's table entry) in the file. */
    private long refcountsWrittenTo;
    private final long[] refBlocks;
    private final int l1Clusters;
    /**
     * Fair: a backup's copy-before-write (on a disk's write ring) that must write here waits for the one operation
     * in progress, not for every operation the job's worker starts while it is running and the ring is still waking.
     */
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock(true);
    private ByteBuffer scratch;
    private KernelCopyTarget kernelTarget;
    private boolean kernelTargetTried;
    private long nextCluster;
    private long clustersAtLastFlush;
    private boolean metadataDirty = true;
    private boolean closed;

    private Qcow2Writer(
        final Path path,
        final FileChannel channel,
        final BlockStore backing,
        final Qcow2Header header,
        final int l1Clusters,
        final long maxClusters,
        final int refTableEntries,
        final long l2CacheBytes)
    {
        this.path = path;
        this.channel = channel;
        this.backing = backing;
        this.header = header;
        this.size = header.size();
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.l2Bits = clusterBits - 3;
        this.refBlockEntries = clusterSize * 8 / (1 << REFCOUNT_ORDER);
        this.maxClusters = maxClusters;
        this.l2Tables = new long[header.l1Size()][];
        this.l2Hosts = new long[header.l1Size()];
        this.cachedIndexes = new int[(int)Math.max(1, Math.min(header.l1Size(), l2CacheBytes >> clusterBits))];
        this.refBlocks = new long[refTableEntries];
        this.l1Clusters = l1Clusters;
        this.nextCluster = 1 + l1Clusters + header.refcountTableClusters();
        // Refcount blocks for the fixed clusters, each placed at the end as it is needed.
        long block = 0;
        while (block <= (nextCluster - 1) / refBlockEntries)
        {
            if (refBlocks[(int)block] == 0)
            {
                refBlocks[(int)block] = nextCluster++ << clusterBits;
            }
            block++;
        }
    }

    /**
     * Creates a new image of {@code size} bytes at {@code image}; nothing is allocated yet, so it reads as its
     * backing file (or zeroes).
     *
     * @throws IllegalArgumentException on a bad size, cluster size, backing format, or a backing name that
     *                                  does not fit in cluster 0.
     * @throws java.nio.file.FileAlreadyExistsException if {@code image} exists.
     * @throws Qcow2FormatException if the backing file cannot be opened as its format.
     */
    public static Qcow2Writer create(final Path image, final long size, final Options options) throws IOException
    {
        final int clusterSize = options.clusterSize();
        if (clusterSize < 512 || clusterSize > (2 << 20) || Integer.bitCount(clusterSize) != 1)
        {
            throw new IllegalArgumentException("cluster size " + clusterSize
                + " is not a power of two in [512, 2097152]");
        }
        if (options.l2CacheBytes() < 0)
        {
            throw new IllegalArgumentException("L2 cache size " + options.l2CacheBytes() + " is negative");
        }
        if (size < 0 || size % 512 != 0)
        {
            throw new IllegalArgumentException("image size " + size + " is negative or not a multiple of 512");
        }
        if (options.backingFile() != null)
        {
            if (!"qcow2".equals(options.backingFormat()) && !"raw".equals(options.backingFormat()))
            {
                throw new IllegalArgumentException("backing format '" + options.backingFormat()
                    + "' is not qcow2 or raw");
            }
            if (options.backingFile().isEmpty() || options.backingFile().length() > Qcow2Header.MAX_BACKING_NAME)
            {
                throw new IllegalArgumentException("backing file name length " + options.backingFile().length()
                    + " outside [1, 1023]");
            }
        }
        final int clusterBits = Integer.numberOfTrailingZeros(clusterSize);
        final long l2Entries = clusterSize / 8;
        final long guestClusters = Qcow2Header.ceilDiv(size, clusterSize);
        final long l1Size = Qcow2Header.ceilDiv(guestClusters, l2Entries);
        if (l1Size * 8 > Qcow2Header.MAX_L1_BYTES)
        {
            throw new IllegalArgumentException("image size " + size + " needs an L1 table of " + l1Size * 8
                + " bytes, above QEMU's limit of 32 MiB; use larger clusters");
        }
        final int l1Clusters = (int)Math.max(1, Qcow2Header.ceilDiv(l1Size * 8, clusterSize));
        final long perBlock = clusterSize * 8L / (1 << REFCOUNT_ORDER);
        // Most clusters the image can need: header, L1, every L2 table and data cluster, then the refcount
        // table and blocks that cover all of those and themselves.
        final long fixed = 1 + l1Clusters + l1Size + guestClusters;
        long refTableClusters = 1;
        long blocks = 0;
        while (true)
        {
            final long newBlocks = Qcow2Header.ceilDiv(fixed + refTableClusters + blocks, perBlock);
            final long newTable = Math.max(1, Qcow2Header.ceilDiv(newBlocks * 8, clusterSize));
            if (newBlocks == blocks && newTable == refTableClusters)
            {
                break;
            }
            blocks = newBlocks;
            refTableClusters = newTable;
        }
        if (refTableClusters * clusterSize > Qcow2Header.MAX_REFTABLE_BYTES)
        {
            throw new IllegalArgumentException("image size " + size + " at cluster size " + clusterSize
                + " needs a refcount table above QEMU's limit of 8 MiB; use larger clusters");
        }
        final long maxClusters = fixed + refTableClusters + blocks;
        final Qcow2Header header = new Qcow2Header(3, clusterBits, size, 0, (int)l1Size, (long)clusterSize,
            (long)(1 + l1Clusters) << clusterBits, (int)refTableClusters, 0, 0, REFCOUNT_ORDER,
            Qcow2Header.V3_HEADER_LENGTH, options.backingFile(), options.backingFormat());
        // Fails early on a backing name too long for cluster 0.
        header.encode();
        BlockStore backing = null;
        if (options.backingFile() != null)
        {
            backing = Qcow2ReadPath.openBacking(image, options.backingFile(), options.backingFormat(), 1,
                new HashSet<>());
        }
        final FileChannel channel;
        try
        {
            channel = FileChannel.open(image, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
        }
        catch (final IOException | RuntimeException ex)
        {
            if (backing != null)
            {
                backing.close();
            }
            throw ex;
        }
        final int refTableEntries = (int)(refTableClusters * clusterSize / 8);
        return new Qcow2Writer(image, channel, backing, header, l1Clusters, maxClusters, refTableEntries,
            options.l2CacheBytes());
    }

    /** @return the image file. */
    public Path path()
    {
        return path;
    }

    /** @return the cluster size in bytes. */
    public int clusterSize()
    {
        return clusterSize;
    }

    /** @return the backing store opened for partial-cluster fills and reads, or {@code null}; owned here. */
    public BlockStore backing()
    {
        return backing;
    }

    /** @return the host file's size in bytes once flushed: clusters allocated so far times the cluster size. */
    public long allocatedBytes()
    {
        final ReentrantReadWriteLock.ReadLock readLock = lock.readLock();
        readLock.lock();
        try
        {
            return nextCluster << clusterBits;
        }
        finally
        {
            readLock.unlock();
        }
    }

    /** @return what the guest cluster holding {@code offset} is in this image alone. */
    public ClusterState clusterState(final long offset)
    {
        checkRange(offset, 1);
        final ReentrantReadWriteLock.ReadLock readLock = lock.readLock();
        readLock.lock();
        try
        {
            final long entry = entry(offset >>> clusterBits);
            if (Qcow2ReadPath.isData(entry))
            {
                return ClusterState.DATA;
            }
            return Qcow2ReadPath.isZero(entry) ? ClusterState.ZERO : ClusterState.UNALLOCATED;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("reading an L2 table of " + path, ex);
        }
        finally
        {
            readLock.unlock();
        }
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public boolean isReadOnly()
    {
        return false;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        checkRange(offset, dst.remaining());
        final ReentrantReadWriteLock.ReadLock readLock = lock.readLock();
        readLock.lock();
        try
        {
            ensureOpen();
            Qcow2ReadPath.read(channel, clusterBits, this::entry, backing, offset, dst);
        }
        finally
        {
            readLock.unlock();
        }
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
        throws IOException
    {
        checkRange(offset, length);
        final ReentrantReadWriteLock.ReadLock readLock = lock.readLock();
        readLock.lock();
        try
        {
            ensureOpen();
            Qcow2ReadPath.extents(clusterBits, this::entry, backing, offset, length, sink);
        }
        finally
        {
            readLock.unlock();
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        checkRange(offset, src.remaining());
        final ReentrantReadWriteLock.WriteLock writeLock = lock.writeLock();
        writeLock.lock();
        try
        {
            ensureOpen();
            metadataDirty = true;
            final long end = offset + src.remaining();
            long position = offset;
            while (position < end)
            {
                final long cluster = position >>> clusterBits;
                final long clusterStart = cluster << clusterBits;
                final long clusterEnd = Math.min(clusterStart + clusterSize, size);
                if (position == clusterStart && end >= clusterEnd)
                {
                    long lastWhole = cluster;
                    while (Math.min((lastWhole + 2) << clusterBits, size) <= end
                        && ((lastWhole + 1) << clusterBits) < size)
                    {
                        lastWhole++;
                    }
                    writeWholeClusters(cluster, lastWhole - cluster + 1, src);
                    position = Math.min((lastWhole + 1) << clusterBits, size);
                }
                else
                {
                    final int length = (int)(Math.min(clusterEnd, end) - position);
                    writePartial(cluster, (int)(position - clusterStart), length, src);
                    position += length;
                }
            }
        }
        finally
        {
            writeLock.unlock();
        }
    }

    /**
     * Writes the guest range {@code [offset, offset + length)} with the bytes of {@code src} at the same offsets,
     * copied by the kernel ({@code copy_file_range}) straight into the host clusters: no user-space buffer. Only
     * whole clusters (the image's last, short cluster counts as whole); a range that starts or ends inside a
     * cluster is not written at all and the method returns 0, as it does where the kernel's copy is unavailable.
     * Clusters whose kernel copy falls short are finished by reads and positional writes.
     *
     * @return the bytes written: {@code length} or 0.
     * @throws IOException when the fallback read of {@code src} or a write fails (the image is then as after a
     *                     failed {@link #write}).
     */
    public long copyFrom(final RawFileStore src, final long offset, final long length) throws IOException
    {
        checkRange(offset, length);
        final long end = offset + length;
        if (length == 0 || (offset & (clusterSize - 1)) != 0 || ((end & (clusterSize - 1)) != 0 && end != size)
            || end > src.size())
        {
            return 0;
        }
        final ReentrantReadWriteLock.WriteLock writeLock = lock.writeLock();
        writeLock.lock();
        try
        {
            ensureOpen();
            if (!kernelTargetTried)
            {
                kernelTargetTried = true;
                kernelTarget = KernelCopyTarget.open(path);
            }
            if (kernelTarget == null || !src.kernelCopySupported())
            {
                return 0;
            }
            metadataDirty = true;
            final long firstCluster = offset >>> clusterBits;
            final long count = ((end + clusterSize - 1) >>> clusterBits) - firstCluster;
            long done = 0;
            while (done < count)
            {
                final long cluster = firstCluster + done;
                final HostRun run = nextHostRun(cluster, count - done);
                final long guestStart = cluster << clusterBits;
                final long bytes = guestBytes(cluster, run);
                final long copied = src.copyTo(guestStart, kernelTarget, run.hostStart(), bytes);
                if (copied < bytes)
                {
                    finishThroughBuffer(src, guestStart + copied, run.hostStart() + copied, bytes - copied);
                }
                mapRun(cluster, run);
                done += run.clusters();
            }
            return length;
        }
        finally
        {
            writeLock.unlock();
        }
    }

    private void finishThroughBuffer(final RawFileStore src, final long guest, final long host, final long length)
        throws IOException
    {
        final ByteBuffer buffer = scratch();
        long done = 0;
        while (done < length)
        {
            final int piece = (int)Math.min(buffer.capacity(), length - done);
            buffer.clear().limit(piece);
            src.read(guest + done, buffer);
            buffer.flip();
            writeHost(host + done, buffer, piece);
            done += piece;
        }
    }

    /** Writes {@code count} whole guest clusters from {@code src}, coalescing contiguous host clusters. */
    private void writeWholeClusters(final long firstCluster, final long count, final ByteBuffer src)
        throws IOException
    {
        long done = 0;
        while (done < count)
        {
            final long cluster = firstCluster + done;
            final HostRun run = nextHostRun(cluster, count - done);
            writeHost(run.hostStart(), src, (int)guestBytes(cluster, run));
            mapRun(cluster, run);
            done += run.clusters();
        }
    }

    /** Immutable: guest clusters that go to one contiguous host range starting at {@code hostStart} (bytes). */
    private record HostRun(long clusters, long hostStart)
    {
    }

    /** @return the guest bytes {@code run} covers from {@code cluster}, the last cluster cut at the disk's end. */
    private long guestBytes(final long cluster, final HostRun run)
    {
        return Math.min((cluster + run.clusters()) << clusterBits, size) - (cluster << clusterBits);
    }

    /**
     * Finds the longest run, at most {@code remaining} clusters from {@code cluster}, that one host range can take:
     * clusters already mapped back to back, or unmapped ones, which are allocated together here.
     */
    private HostRun nextHostRun(final long cluster, final long remaining) throws IOException
    {
        final long host = entry(cluster) & Qcow2Header.OFFSET_MASK;
        long run = 1;
        if (host != 0)
        {
            while (run < remaining
                && (entry(cluster + run) & Qcow2Header.OFFSET_MASK) == host + (run << clusterBits))
            {
                run++;
            }
            return new HostRun(run, host);
        }
        while (run < remaining && (entry(cluster + run) & Qcow2Header.OFFSET_MASK) == 0)
        {
            run++;
        }
        final long first = allocate(run);
        return new HostRun(Math.min(run, nextCluster - first), first << clusterBits);
    }

    /** Points the run's guest clusters at its host range. */
    private void mapRun(final long cluster, final HostRun run) throws IOException
    {
        for (long i = 0; i < run.clusters(); i++)
        {
            setEntry(cluster + i, (run.hostStart() + (i << clusterBits)) | Qcow2Header.COPIED);
        }
    }

    private void writePartial(final long cluster, final int inCluster, final int length, final ByteBuffer src)
        throws IOException
    {
        final long entry = entry(cluster);
        if (Qcow2ReadPath.isData(entry))
        {
            writeHost((entry & Qcow2Header.OFFSET_MASK) + inCluster, src, length);
            return;
        }
        final ByteBuffer buffer = scratch();
        final long clusterStart = cluster << clusterBits;
        final int inImage = (int)Math.min(clusterSize, size - clusterStart);
        buffer.clear().limit(inImage);
        if (Qcow2ReadPath.isZero(entry))
        {
            Qcow2ReadPath.fillZeroes(buffer);
        }
        else
        {
            Qcow2ReadPath.readBacking(backing, clusterStart, buffer);
        }
        buffer.limit(clusterSize);
        Qcow2ReadPath.fillZeroes(buffer);
        final int savedLimit = src.limit();
        src.limit(src.position() + length);
        buffer.position(inCluster);
        buffer.put(src);
        src.limit(savedLimit);
        buffer.clear();
        long host = entry & Qcow2Header.OFFSET_MASK;
        if (host == 0)
        {
            host = allocate(1) << clusterBits;
        }
        writeHost(host, buffer, clusterSize);
        setEntry(cluster, host | Qcow2Header.COPIED);
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        writeZeroes(offset, length, true);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        checkRange(offset, length);
        final ReentrantReadWriteLock.WriteLock writeLock = lock.writeLock();
        writeLock.lock();
        try
        {
            ensureOpen();
            metadataDirty = true;
            final long end = offset + length;
            long position = offset;
            while (position < end)
            {
                final long cluster = position >>> clusterBits;
                final long clusterStart = cluster << clusterBits;
                final long clusterEnd = Math.min(clusterStart + clusterSize, size);
                final long partEnd = Math.min(clusterEnd, end);
                final long entry = entry(cluster);
                if (position == clusterStart && partEnd == clusterEnd)
                {
                    setEntry(cluster, (entry & Qcow2Header.OFFSET_MASK) == 0 ? Qcow2Header.ZERO
                        : (entry & Qcow2Header.OFFSET_MASK) | Qcow2Header.COPIED | Qcow2Header.ZERO);
                }
                else if (!Qcow2ReadPath.isZero(entry) && !(backing == null && Qcow2ReadPath.isUnallocated(entry)))
                {
                    final ByteBuffer zeroes = ByteBuffer.allocate((int)(partEnd - position));
                    writePartial(cluster, (int)(position - clusterStart), zeroes.remaining(), zeroes);
                }
                position = partEnd;
            }
        }
        finally
        {
            writeLock.unlock();
        }
    }

    /**
     * Writes the metadata (refcount blocks and table, L2 tables, L1 table, then the header) and forces it.
     * Every write completed before the call is then durable and visible to QEMU's tools.
     */
    @Override
    public void flush() throws IOException
    {
        final ReentrantReadWriteLock.WriteLock writeLock = lock.writeLock();
        writeLock.lock();
        try
        {
            ensureOpen();
            writeMetadata();
        }
        finally
        {
            writeLock.unlock();
        }
    }

    private void writeMetadata() throws IOException
    {
        if (!metadataDirty)
        {
            return;
        }
        final long fileEnd = nextCluster << clusterBits;
        if (channel.size() < fileEnd)
        {
            // Every cluster lies inside the file, even one whose table or data is a hole.
            final ByteBuffer oneByte = ByteBuffer.allocate(1);
            writeHost(fileEnd - 1, oneByte, 1);
        }
        channel.force(false);

        // 1. Refcounts first: a crash after this leaves at worst leaks, never a reference to a free cluster.
        final ByteBuffer block = ByteBuffer.allocateDirect(clusterSize).order(ByteOrder.BIG_ENDIAN);
        final long firstBlock = clustersAtLastFlush / refBlockEntries;
        final long lastBlock = (nextCluster - 1) / refBlockEntries;
        for (long b = firstBlock; b <= lastBlock; b++)
        {
            block.clear();
            final long start = b * refBlockEntries;
            final long used = Math.min(refBlockEntries, nextCluster - start);
            for (int i = 0; i < used; i++)
            {
                block.putShort(i * 2, (short)1);
            }
            for (long i = used; i < refBlockEntries; i++)
            {
                block.putShort((int)i * 2, (short)0);
            }
            writeHost(refBlocks[(int)b], block, clusterSize);
        }
        final ByteBuffer table = ByteBuffer.allocateDirect((int)(lastBlock + 1) * 8).order(ByteOrder.BIG_ENDIAN);
        for (int b = 0; b <= lastBlock; b++)
        {
            table.putLong(refBlocks[b]);
        }
        table.flip();
        writeHost(header.refcountTableOffset(), table, table.remaining());
        channel.force(false);
        refcountsWrittenTo = nextCluster;

        // 2. L2 tables that changed, then the whole L1 table.
        final ByteBuffer l2 = ByteBuffer.allocateDirect(clusterSize).order(ByteOrder.BIG_ENDIAN);
        for (int i = dirtyL2.nextSetBit(0); i >= 0; i = dirtyL2.nextSetBit(i + 1))
        {
            l2.clear();
            l2.asLongBuffer().put(l2Tables[i]);
            writeHost(l2Hosts[i], l2, clusterSize);
        }
        dirtyL2.clear();
        final ByteBuffer l1 = ByteBuffer.allocateDirect(l1Clusters * clusterSize).order(ByteOrder.BIG_ENDIAN);
        for (int i = 0; i < l2Hosts.length; i++)
        {
            l1.putLong(i * 8, l2Hosts[i] == 0 ? 0 : l2Hosts[i] | Qcow2Header.COPIED);
        }
        writeHost(header.l1TableOffset(), l1, l1.capacity());
        channel.force(false);

        // 3. The header last.
        final ByteBuffer encoded = header.encode();
        writeHost(0, encoded, encoded.remaining());
        channel.force(false);
        clustersAtLastFlush = nextCluster;
        metadataDirty = false;
    }

    /** Flushes the metadata and closes the file and the backing chain; later calls fail. Idempotent. */
    @Override
    public void close() throws IOException
    {
        final ReentrantReadWriteLock.WriteLock writeLock = lock.writeLock();
        writeLock.lock();
        try
        {
            if (closed)
            {
                return;
            }
            closed = true;
            try
            {
                if (kernelTarget != null)
                {
                    kernelTarget.close();
                }
                writeMetadata();
            }
            finally
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
        }
        finally
        {
            writeLock.unlock();
        }
    }

    @Override
    public String toString()
    {
        return "Qcow2Writer[" + path + ", size=" + size + ", cluster=" + clusterSize
            + (header.backingFile() == null ? "" : ", backing=" + header.backingFile()) + "]";
    }

    /**
     * @return the L2 entry of a guest cluster. Under the write lock an uncached table is brought into the cache;
     *         under the read lock (where the cache must not change) its one entry is read from the file, which
     *         holds every uncached table.
     */
    private long entry(final long guestCluster) throws IOException
    {
        final int index = (int)(guestCluster >>> l2Bits);
        final int slot = (int)(guestCluster & ((1L << l2Bits) - 1));
        long[] table = l2Tables[index];
        if (table == null)
        {
            if (l2Hosts[index] == 0)
            {
                return 0;
            }
            if (!lock.isWriteLockedByCurrentThread())
            {
                final ByteBuffer one = ByteBuffer.allocate(Long.BYTES).order(ByteOrder.BIG_ENDIAN);
                readHost(l2Hosts[index] + (long)slot * Long.BYTES, one);
                return one.getLong(0);
            }
            table = cacheTable(index, true);
        }
        else
        {
            recentlyUsed.set(index);
        }
        return table[slot];
    }

    /** Sets an L2 entry, making its table (and its host cluster) on first use; under the write lock. */
    private void setEntry(final long guestCluster, final long value) throws IOException
    {
        final int index = (int)(guestCluster >>> l2Bits);
        long[] table = l2Tables[index];
        if (table == null)
        {
            final boolean exists = l2Hosts[index] != 0;
            table = cacheTable(index, exists);
            if (!exists)
            {
                l2Hosts[index] = allocate(1) << clusterBits;
            }
        }
        else
        {
            recentlyUsed.set(index);
        }
        table[(int)(guestCluster & ((1L << l2Bits) - 1))] = value;
        dirtyL2.set(index);
    }

    /** Puts table {@code index} in the cache, evicting one by the clock when full; under the write lock. */
    private long[] cacheTable(final int index, final boolean readFromFile) throws IOException
    {
        long[] table;
        if (cachedCount < cachedIndexes.length)
        {
            table = new long[1 << l2Bits];
            cachedIndexes[cachedCount++] = index;
        }
        else
        {
            while (recentlyUsed.get(cachedIndexes[clockHand]))
            {
                recentlyUsed.clear(cachedIndexes[clockHand]);
                clockHand = (clockHand + 1) % cachedIndexes.length;
            }
            final int victim = cachedIndexes[clockHand];
            table = l2Tables[victim];
            if (dirtyL2.get(victim))
            {
                writeRefcountsSoFar();
                writeTable(victim, table);
                dirtyL2.clear(victim);
            }
            l2Tables[victim] = null;
            cachedIndexes[clockHand] = index;
            clockHand = (clockHand + 1) % cachedIndexes.length;
        }
        if (readFromFile)
        {
            final ByteBuffer buffer = tableBuffer();
            buffer.clear();
            readHost(l2Hosts[index], buffer);
            buffer.flip();
            buffer.asLongBuffer().get(table);
        }
        else
        {
            Arrays.fill(table, 0);
        }
        l2Tables[index] = table;
        recentlyUsed.set(index);
        return table;
    }

    private void writeTable(final int index, final long[] table) throws IOException
    {
        final ByteBuffer buffer = tableBuffer();
        buffer.clear();
        buffer.asLongBuffer().put(table);
        writeHost(l2Hosts[index], buffer, clusterSize);
    }

    /**
     * Writes the refcounts (1) of the clusters allocated since the last write of them, and the refcount-table
     * entries of blocks begun since, so that a table written now points only at counted clusters. A few bytes:
     * the rest of every block is zero in the file already (a hole) or was written before.
     */
    private void writeRefcountsSoFar() throws IOException
    {
        if (refcountsWrittenTo >= nextCluster)
        {
            return;
        }
        final ByteBuffer one = ByteBuffer.allocate(Long.BYTES).order(ByteOrder.BIG_ENDIAN);
        long cluster = refcountsWrittenTo;
        while (cluster < nextCluster)
        {
            final long block = cluster / refBlockEntries;
            final long blockEnd = Math.min(nextCluster, (block + 1) * refBlockEntries);
            final int count = (int)(blockEnd - cluster);
            final ByteBuffer counts = ByteBuffer.allocate(count * 2).order(ByteOrder.BIG_ENDIAN);
            for (int i = 0; i < count; i++)
            {
                counts.putShort((short)1);
            }
            counts.flip();
            writeHost(refBlocks[(int)block] + (cluster - block * refBlockEntries) * 2, counts, counts.remaining());
            one.clear();
            one.putLong(0, refBlocks[(int)block]);
            writeHost(header.refcountTableOffset() + block * Long.BYTES, one, Long.BYTES);
            cluster = blockEnd;
        }
        refcountsWrittenTo = nextCluster;
    }

    private ByteBuffer tableBuffer()
    {
        if (tableBuffer == null)
        {
            tableBuffer = ByteBuffer.allocateDirect(clusterSize).order(ByteOrder.BIG_ENDIAN);
        }
        return tableBuffer;
    }

    private void readHost(final long host, final ByteBuffer dst) throws IOException
    {
        // A table allocated but not yet extended into the file reads as zeroes.
        RawFileStore.readFully(channel, host, dst);
    }

    /**
     * Allocates up to {@code wanted} contiguous clusters at the end of the file and returns the first; fewer
     * when a refcount block has to start the next range (callers take {@code nextCluster - first}).
     */
    private long allocate(final long wanted) throws IOException
    {
        final int block = (int)(nextCluster / refBlockEntries);
        if (refBlocks[block] == 0)
        {
            // Entering a new refcount range: its block is the range's first cluster and counts itself.
            refBlocks[block] = nextCluster++ << clusterBits;
        }
        final long first = nextCluster;
        final long room = refBlockEntries - first % refBlockEntries;
        final long granted = Math.min(wanted, room);
        if (first + granted > maxClusters)
        {
            throw new IOException("qcow2 image " + path + " outgrew its refcount table (" + maxClusters
                + " clusters); this is a bug in the writer's sizing");
        }
        nextCluster = first + granted;
        return first;
    }

    private void writeHost(final long host, final ByteBuffer src, final int length) throws IOException
    {
        final int savedLimit = src.limit();
        src.limit(src.position() + length);
        try
        {
            long position = host;
            while (src.hasRemaining())
            {
                position += channel.write(src, position);
            }
        }
        finally
        {
            src.limit(savedLimit);
        }
    }

    private ByteBuffer scratch()
    {
        if (scratch == null)
        {
            scratch = ByteBuffer.allocateDirect(clusterSize);
        }
        return scratch;
    }

    private void ensureOpen() throws IOException
    {
        if (closed)
        {
            throw new ClosedChannelException();
        }
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size - length)
        {
            throw new IllegalArgumentException("range [offset " + offset + ", length " + length
                + "] outside image " + path + " of size " + size);
        }
    }
}
