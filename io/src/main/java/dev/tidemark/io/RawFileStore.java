package dev.tidemark.io;

import com.sun.jna.LastErrorException;
import com.sun.nio.file.ExtendedOpenOption;
import org.agrona.BufferUtil;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.EnumSet;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Safe for concurrent use by any number of threads until {@link #close()}, which must not race with
 * other calls: a raw image file as a {@link BlockStore}, sparse-aware.
 *
 * <p>Data moves with positional {@link FileChannel} I/O ({@code pread}/{@code pwrite}), looping until the
 * whole buffer is done. A read that meets end of file inside the store's size (the file was truncated
 * behind our back) fills the rest with zeroes; any range outside {@code [0, size)} is refused with
 * {@link IllegalArgumentException} before any I/O.
 *
 * <p>Holes: {@link #discard} and {@link #writeZeroes} with {@code mayUnmap} punch holes with
 * {@code fallocate(PUNCH_HOLE | KEEP_SIZE)}; {@code writeZeroes} without {@code mayUnmap} uses
 * {@code ZERO_RANGE}. Both run on a second descriptor of the same file, opened through libc with JNA.
 * When the file system or platform refuses (EOPNOTSUPP), the store writes zero bytes instead and
 * remembers the refusal ({@link #punchHoleSupported()}). {@link #forEachAllocationExtent} walks
 * {@code lseek(SEEK_DATA/SEEK_HOLE)}; where that is refused it reports the whole range allocated and not
 * known to be zero ({@link #allocationQuerySupported()}).
 *
 * <p>O_DIRECT: {@link Option#DIRECT} opens with {@link ExtendedOpenOption#DIRECT} and fails with a clear
 * {@link IOException} when the file system refuses it (tmpfs does); {@link Option#PREFER_DIRECT} falls back
 * to buffered I/O there ({@link #isDirect()} tells which). In direct mode every offset and length must be
 * a multiple of {@link #directAlignment()} (else {@link IllegalArgumentException}); buffers that are not
 * direct or not aligned are bounced through an aligned buffer, at the cost of one copy.
 */
public final class RawFileStore implements BlockStore
{
    /** Open options. */
    public enum Option
    {
        /** Refuse writes; the file is opened read-only. */
        READ_ONLY,
        /** Bypass the page cache with O_DIRECT; fail if the file system refuses it. */
        DIRECT,
        /** Use O_DIRECT when the file system allows it, buffered I/O otherwise. */
        PREFER_DIRECT
    }

    private static final int ZERO_CHUNK = 1 << 20;
    private static final int MIN_DIRECT_ALIGNMENT = 4096;

    private final Path path;
    private final FileChannel channel;
    private final long size;
    private final boolean readOnly;
    private final boolean direct;
    private final int alignment;
    private final int nativeFd;
    private final String fileSystemType;
    private final ReentrantReadWriteLock nativeLock = new ReentrantReadWriteLock();
    private volatile boolean punchHoleSupported;
    private volatile boolean zeroRangeSupported;
    private volatile boolean seekDataSupported;
    private volatile boolean kernelCopySupported = true;
    private boolean closed;
    /**
     * The last data extent SEEK_HOLE reported, so that walking a long allocated region run by run costs one scan:
     * on tmpfs SEEK_HOLE walks the page cache up to the next hole, so a backup of a fully written image asking
     * for each 1 MiB run scanned to the end of the file every time. Writes only add data, so the extent stays true
     * until a hole is punched, which clears it.
     */
    private volatile DataExtent knownData;
    private final java.util.concurrent.atomic.AtomicLong punches = new java.util.concurrent.atomic.AtomicLong();

    /** An allocated byte range [start, end) as lseek last reported it. */
    private record DataExtent(long start, long end)
    {
    }

    private RawFileStore(
        final Path path,
        final FileChannel channel,
        final long size,
        final boolean readOnly,
        final boolean direct,
        final int alignment,
        final int nativeFd)
    {
        this.path = path;
        this.channel = channel;
        this.size = size;
        this.readOnly = readOnly;
        this.direct = direct;
        this.alignment = alignment;
        this.nativeFd = nativeFd;
        this.fileSystemType = describeFileStore(path);
        final boolean nativeOk = nativeFd >= 0;
        this.punchHoleSupported = nativeOk;
        this.zeroRangeSupported = nativeOk;
        this.seekDataSupported = nativeOk;
    }

    /**
     * Creates a new sparse file of {@code size} bytes (all hole) and opens it read-write.
     *
     * @throws FileAlreadyExistsException if {@code path} exists.
     * @throws IllegalArgumentException if {@code size} is negative or {@link Option#READ_ONLY} is given.
     */
    public static RawFileStore create(final Path path, final long size, final Option... options)
        throws IOException
    {
        if (size < 0)
        {
            throw new IllegalArgumentException("negative size " + size + " for " + path);
        }
        final Set<Option> set = toSet(options);
        if (set.contains(Option.READ_ONLY))
        {
            throw new IllegalArgumentException("cannot create " + path + " read-only");
        }
        Files.createFile(path);
        try (RandomAccessFile file = new RandomAccessFile(path.toFile(), "rw"))
        {
            file.setLength(size);
        }
        return open(path, options);
    }

    /**
     * Opens an existing file; the store's size is the file's length now.
     *
     * @throws java.nio.file.NoSuchFileException if the file does not exist.
     */
    public static RawFileStore open(final Path path, final Option... options) throws IOException
    {
        final Set<Option> set = toSet(options);
        final boolean readOnly = set.contains(Option.READ_ONLY);
        final boolean wantDirect = set.contains(Option.DIRECT) || set.contains(Option.PREFER_DIRECT);
        final Set<OpenOption> openOptions = new HashSet<>();
        openOptions.add(StandardOpenOption.READ);
        if (!readOnly)
        {
            openOptions.add(StandardOpenOption.WRITE);
        }
        FileChannel channel = null;
        boolean direct = false;
        int alignment = 1;
        if (wantDirect)
        {
            final Set<OpenOption> directOptions = new HashSet<>(openOptions);
            directOptions.add(ExtendedOpenOption.DIRECT);
            try
            {
                channel = FileChannel.open(path, directOptions);
                direct = true;
                alignment = Math.max(MIN_DIRECT_ALIGNMENT, (int)Files.getFileStore(path).getBlockSize());
            }
            catch (final IOException | UnsupportedOperationException ex)
            {
                if (set.contains(Option.DIRECT))
                {
                    throw new IOException("O_DIRECT refused for " + path + " (file system "
                        + describeFileStore(path) + "): " + ex.getMessage(), ex);
                }
            }
        }
        if (channel == null)
        {
            channel = FileChannel.open(path, openOptions);
        }
        int fd = -1;
        try
        {
            if (LinuxFiles.isAvailable())
            {
                fd = LinuxFiles.open(path, readOnly);
            }
            return new RawFileStore(path, channel, channel.size(), readOnly, direct, alignment, fd);
        }
        catch (final IOException | RuntimeException ex)
        {
            channel.close();
            if (fd >= 0)
            {
                LinuxFiles.close(fd);
            }
            throw ex;
        }
    }

    private static Set<Option> toSet(final Option... options)
    {
        final EnumSet<Option> set = EnumSet.noneOf(Option.class);
        for (final Option option : options)
        {
            set.add(option);
        }
        return set;
    }

    private static String describeFileStore(final Path path)
    {
        try
        {
            return Files.getFileStore(path).type();
        }
        catch (final IOException ex)
        {
            return "unknown";
        }
    }

    /** Makes the store behave as on a file system that refuses hole punching and hole seeking. */
    void disableNativeCallsForTest()
    {
        punchHoleSupported = false;
        zeroRangeSupported = false;
        seekDataSupported = false;
        kernelCopySupported = false;
    }

    /** @return the file this store reads and writes. */
    public Path path()
    {
        return path;
    }

    /**
     * @return the channel, for zero-copy {@link Transfer}s; callers must respect the store's size and must
     *         not close it.
     */
    public FileChannel channel()
    {
        return channel;
    }

    /** @return the type of the file system holding the file ({@code ext4}, {@code tmpfs}, ...), or "unknown". */
    public String fileSystemType()
    {
        return fileSystemType;
    }

    /** @return whether I/O bypasses the page cache (O_DIRECT). */
    public boolean isDirect()
    {
        return direct;
    }

    /** @return the alignment O_DIRECT needs for offsets, lengths and buffers; 1 when not direct. */
    public int directAlignment()
    {
        return alignment;
    }

    /** @return false once the file system refused PUNCH_HOLE (holes are then written as zero bytes). */
    public boolean punchHoleSupported()
    {
        return punchHoleSupported;
    }

    /** @return false once SEEK_DATA/SEEK_HOLE were refused (everything then reports as allocated). */
    public boolean allocationQuerySupported()
    {
        return seekDataSupported;
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public boolean isReadOnly()
    {
        return readOnly;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        final int length = dst.remaining();
        checkRange(offset, length);
        checkDirectAlignment(offset, length);
        if (direct && !isAligned(dst))
        {
            final ByteBuffer bounce = BufferUtil.allocateDirectAligned(roundUp(length), alignment);
            bounce.limit(length);
            readFully(offset, bounce);
            bounce.flip();
            dst.put(bounce);
            return;
        }
        readFully(offset, dst);
    }

    private void readFully(final long offset, final ByteBuffer dst) throws IOException
    {
        readFully(channel, offset, dst);
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code offset}; past the end of the file it fills zeroes (a hole as far
     * as readers care). Any thread, on a channel safe for positional reads.
     *
     * @param channel the file.
     * @param offset first byte.
     * @param dst filled to its limit.
     * @throws IOException when a read fails.
     */
    public static void readFully(final FileChannel channel, final long offset, final ByteBuffer dst) throws IOException
    {
        long position = offset;
        while (dst.hasRemaining())
        {
            final int n = channel.read(dst, position);
            if (n < 0)
            {
                while (dst.hasRemaining())
                {
                    dst.put((byte)0);
                }
                return;
            }
            position += n;
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        checkWritable();
        final int length = src.remaining();
        checkRange(offset, length);
        checkDirectAlignment(offset, length);
        if (direct && !isAligned(src))
        {
            final ByteBuffer bounce = BufferUtil.allocateDirectAligned(roundUp(length), alignment);
            bounce.put(src).flip();
            writeFully(offset, bounce);
            return;
        }
        writeFully(offset, src);
    }

    private void writeFully(final long offset, final ByteBuffer src) throws IOException
    {
        long position = offset;
        int stalls = 0;
        while (src.hasRemaining())
        {
            final int n = channel.write(src, position);
            if (n == 0 && ++stalls > 1000)
            {
                throw new IOException("short write to " + path + " at offset " + position + ": "
                    + src.remaining() + " bytes could not be written");
            }
            position += n;
        }
    }

    @Override
    public void flush() throws IOException
    {
        if (!readOnly)
        {
            channel.force(false);
        }
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        writeZeroes(offset, length, true);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        checkWritable();
        checkRange(offset, length);
        checkDirectAlignment(offset, length);
        if (length == 0)
        {
            return;
        }
        if (mayUnmap && punchHoleSupported && tryFallocate(
            LinuxFiles.FALLOC_FL_PUNCH_HOLE | LinuxFiles.FALLOC_FL_KEEP_SIZE, offset, length))
        {
            return;
        }
        if (zeroRangeSupported && tryFallocate(
            LinuxFiles.FALLOC_FL_ZERO_RANGE | LinuxFiles.FALLOC_FL_KEEP_SIZE, offset, length))
        {
            return;
        }
        writeZeroBytes(offset, length);
    }

    private boolean tryFallocate(final int mode, final long offset, final long length) throws IOException
    {
        final ReentrantReadWriteLock.ReadLock lock = nativeLock.readLock();
        lock.lock();
        try
        {
            ensureOpen();
            final boolean punch = (mode & LinuxFiles.FALLOC_FL_PUNCH_HOLE) != 0;
            if (punch)
            {
                punches.incrementAndGet();
                knownData = null;
            }
            try
            {
                LinuxFiles.fallocate(nativeFd, mode, offset, length);
            }
            finally
            {
                if (punch)
                {
                    punches.incrementAndGet();
                    knownData = null;
                }
            }
            return true;
        }
        catch (final LastErrorException ex)
        {
            if (LinuxFiles.isUnsupported(ex.getErrorCode()))
            {
                if ((mode & LinuxFiles.FALLOC_FL_PUNCH_HOLE) != 0)
                {
                    punchHoleSupported = false;
                }
                else
                {
                    zeroRangeSupported = false;
                }
                return false;
            }
            throw new IOException("fallocate(mode " + mode + ", offset " + offset + ", length " + length
                + ") on " + path + " failed: errno " + ex.getErrorCode(), ex);
        }
        finally
        {
            lock.unlock();
        }
    }

    private void writeZeroBytes(final long offset, final long length) throws IOException
    {
        final int chunk = Math.min(ZERO_CHUNK, roundUp(length));
        final ByteBuffer zeroes = BufferUtil.allocateDirectAligned(chunk, Math.max(alignment, 64));
        long position = offset;
        final long end = offset + length;
        while (position < end)
        {
            final int n = (int)Math.min(chunk, end - position);
            zeroes.clear().limit(n);
            writeFully(position, zeroes);
            position += n;
        }
    }

    /**
     * Copies {@code length} bytes of this store at {@code srcOffset} to {@code dst} at {@code dstOffset} with the
     * kernel's {@code copy_file_range} (one copy, page cache to page cache, no user-space buffer). Holes in the source
     * range are copied as zeroes; callers that want holes kept walk {@link #forEachAllocationExtent} first.
     *
     * <p>The kernel copy is an optimisation, never the only way: the method returns how many bytes it copied, from
     * {@code srcOffset} on, and stops early (without throwing) when the kernel refuses (no native binding, O_DIRECT
     * on either side, a file system or kernel without the call, an I/O error, the source ending early). The caller
     * copies the rest with reads and writes, which report errors on the side they happen.
     *
     * @return bytes copied, {@code 0 <= n <= length}.
     * @throws IllegalArgumentException if a range lies outside its store.
     * @throws IllegalStateException if {@code dst} is read-only.
     */
    public long copyTo(final long srcOffset, final RawFileStore dst, final long dstOffset, final long length)
    {
        checkRange(srcOffset, length);
        dst.checkRange(dstOffset, length);
        if (dst.readOnly)
        {
            throw new IllegalStateException("store " + dst.path + " is read-only");
        }
        if (length == 0 || dst.nativeFd < 0 || dst.direct || !dst.kernelCopySupported)
        {
            return 0;
        }
        final ReentrantReadWriteLock.ReadLock dstLock = dst.nativeLock.readLock();
        dstLock.lock();
        try
        {
            if (dst.closed)
            {
                return 0;
            }
            final long copied = kernelCopy(srcOffset, dst.nativeFd, dstOffset, length);
            if (copied < 0)
            {
                dst.kernelCopySupported = false;
                return 0;
            }
            return copied;
        }
        finally
        {
            dstLock.unlock();
        }
    }

    /**
     * As {@link #copyTo(long, RawFileStore, long, long)}, into a file that is not a raw store (a qcow2 image's host
     * clusters); the target has no size, so only this store's range is checked.
     *
     * @return bytes copied, {@code 0 <= n <= length}.
     */
    public long copyTo(final long srcOffset, final KernelCopyTarget dst, final long dstOffset, final long length)
    {
        checkRange(srcOffset, length);
        if (dstOffset < 0)
        {
            throw new IllegalArgumentException("negative target offset " + dstOffset);
        }
        synchronized (dst)
        {
            final int fd = dst.fd();
            if (length == 0 || fd < 0)
            {
                return 0;
            }
            final long copied = kernelCopy(srcOffset, fd, dstOffset, length);
            if (copied < 0)
            {
                dst.refuse();
                return 0;
            }
            return copied;
        }
    }

    /** @return bytes copied, or -1 when the kernel refuses this pair of files for good. */
    private long kernelCopy(final long srcOffset, final int dstFd, final long dstOffset, final long length)
    {
        if (nativeFd < 0 || direct || !kernelCopySupported)
        {
            return 0;
        }
        final ReentrantReadWriteLock.ReadLock srcLock = nativeLock.readLock();
        srcLock.lock();
        try
        {
            if (closed)
            {
                return 0;
            }
            long done = 0;
            while (done < length)
            {
                final long n = LinuxFiles.copyFileRange(nativeFd, srcOffset + done, dstFd, dstOffset + done,
                    length - done);
                if (n <= 0)
                {
                    return done;
                }
                done += n;
            }
            return done;
        }
        catch (final LastErrorException ex)
        {
            // Refused for this pair of files (another file system, an old kernel): the caller asks no more. Any
            // other error: the caller's buffered copy meets it again and reports it on its side.
            return LinuxFiles.isUnsupported(ex.getErrorCode()) ? -1 : 0;
        }
        finally
        {
            srcLock.unlock();
        }
    }

    /** @return whether {@link #copyTo} may still use the kernel's copy for this store. */
    public boolean kernelCopySupported()
    {
        return nativeFd >= 0 && !direct && kernelCopySupported;
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
        throws IOException
    {
        checkRange(offset, length);
        if (length == 0)
        {
            return;
        }
        final long end = offset + length;
        if (!seekDataSupported)
        {
            sink.accept(offset, length, true, false);
            return;
        }
        final ReentrantReadWriteLock.ReadLock lock = nativeLock.readLock();
        lock.lock();
        try
        {
            ensureOpen();
            final Coalescing coalescing = new Coalescing(sink);
            walkExtents(offset, end, coalescing);
            coalescing.finish();
        }
        catch (final LastErrorException ex)
        {
            if (!LinuxFiles.isUnsupported(ex.getErrorCode()))
            {
                throw new IOException("lseek(SEEK_DATA/SEEK_HOLE) on " + path + " failed: errno "
                    + ex.getErrorCode(), ex);
            }
            // Only reached before the first extent was emitted: file systems refuse on the first call.
            seekDataSupported = false;
            sink.accept(offset, length, true, false);
        }
        finally
        {
            lock.unlock();
        }
    }

    private void walkExtents(final long offset, final long end, final AllocationSink sink)
    {
        long position = offset;
        while (position < end)
        {
            final DataExtent known = knownData;
            if (known != null && position >= known.start() && position < known.end())
            {
                final long knownEnd = Math.min(known.end(), end);
                if (!sink.accept(position, knownEnd - position, true, false))
                {
                    return;
                }
                position = knownEnd;
                continue;
            }
            final long punchesBefore = punches.get();
            final long data = LinuxFiles.lseek(nativeFd, position, LinuxFiles.SEEK_DATA);
            if (data < 0 || data >= end)
            {
                sink.accept(position, end - position, false, true);
                return;
            }
            if (data > position && !sink.accept(position, data - position, false, true))
            {
                return;
            }
            final long hole = LinuxFiles.lseek(nativeFd, data, LinuxFiles.SEEK_HOLE);
            if (hole > data && punches.get() == punchesBefore)
            {
                knownData = new DataExtent(data, hole);
                if (punches.get() != punchesBefore)
                {
                    // A hole was punched meanwhile: the extent may already be stale.
                    knownData = null;
                }
            }
            // A file truncated behind our back: the rest reads as zeroes.
            final long dataEnd = hole < 0 ? end : Math.min(hole, end);
            if (!sink.accept(data, dataEnd - data, true, false))
            {
                return;
            }
            position = dataEnd;
        }
    }

    /**
     * Joins adjacent extents of the same kind before they reach the caller; confined to one walk's thread. A
     * cached data extent followed by data written after it was cached would otherwise arrive as two extents.
     */
    private static final class Coalescing implements AllocationSink
    {
        private final AllocationSink out;
        private long start = -1;
        private long length;
        private boolean allocated;
        private boolean zero;
        private boolean stopped;

        Coalescing(final AllocationSink out)
        {
            this.out = out;
        }

        @Override
        public boolean accept(final long offset, final long extentLength, final boolean isAllocated,
            final boolean isZero)
        {
            if (start >= 0 && isAllocated == allocated && isZero == zero && start + length == offset)
            {
                length += extentLength;
                return true;
            }
            if (start >= 0 && !out.accept(start, length, allocated, zero))
            {
                stopped = true;
                return false;
            }
            start = offset;
            length = extentLength;
            allocated = isAllocated;
            zero = isZero;
            return true;
        }

        void finish()
        {
            if (start >= 0 && !stopped)
            {
                out.accept(start, length, allocated, zero);
            }
        }
    }

    @Override
    public void close() throws IOException
    {
        final ReentrantReadWriteLock.WriteLock lock = nativeLock.writeLock();
        lock.lock();
        try
        {
            if (closed)
            {
                return;
            }
            closed = true;
            try
            {
                channel.close();
            }
            finally
            {
                if (nativeFd >= 0)
                {
                    LinuxFiles.close(nativeFd);
                }
            }
        }
        finally
        {
            lock.unlock();
        }
    }

    @Override
    public String toString()
    {
        return "RawFileStore[" + path + ", size=" + size + (readOnly ? ", read-only" : "")
            + (direct ? ", direct" : "") + "]";
    }

    private void ensureOpen() throws IOException
    {
        if (closed)
        {
            throw new java.nio.channels.ClosedChannelException();
        }
    }

    private void checkWritable()
    {
        if (readOnly)
        {
            throw new IllegalStateException("store " + path + " is read-only");
        }
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size - length)
        {
            throw new IllegalArgumentException("range [offset " + offset + ", length " + length
                + "] outside store " + path + " of size " + size);
        }
    }

    private void checkDirectAlignment(final long offset, final long length)
    {
        if (direct && ((offset | length) & (alignment - 1)) != 0)
        {
            throw new IllegalArgumentException("O_DIRECT store " + path + " needs offset and length aligned to "
                + alignment + " bytes: offset " + offset + ", length " + length);
        }
    }

    private boolean isAligned(final ByteBuffer buffer)
    {
        return buffer.isDirect() && (BufferUtil.address(buffer) + buffer.position()) % alignment == 0;
    }

    private int roundUp(final long length)
    {
        return (int)((length + alignment - 1) & -(long)alignment);
    }
}
