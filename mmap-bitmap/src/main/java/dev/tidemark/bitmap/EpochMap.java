package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.UUID;
import java.util.function.LongSupplier;

import org.agrona.IoUtil;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A per-disk map from chunk to the checkpoint epoch in which the chunk was last written: {@link #mark},
 * {@link #force}, {@link #advance}, {@link #setDurable} and {@link #close} belong to one controlling thread (a
 * disk's mark thread); {@link #compact} runs on at most one other thread at a time, concurrently with marks;
 * readers ({@link #changedSince}, {@link #countChangedSince}, the getters) are safe from any thread.
 *
 * <h2>Model</h2>
 * Epochs are absolute 64-bit numbers that only grow; the engine's checkpoint {@code X} has epoch {@code x}, and a
 * write done while the current epoch is {@code e} stamps its chunks with {@code e}. Adding a checkpoint makes its
 * epoch the current one, so "changed since X" is "stamp &gt;= x". A zero entry means "not written since the map
 * exists". One map answers that question for every checkpoint, and a write costs one test-before-store per chunk
 * (a plain read; a store only if the stamp differs) however many checkpoints exist.
 *
 * <h2>Entries and wrap</h2>
 * An entry is 32 bits: the absolute epoch {@code a} is stored as {@code 1 + (a - 1) mod P}, where the period
 * {@code P} is at most 2^32 - 1 and set per file (tests use tiny periods to exercise the wrap). A reader decodes a
 * stamp relative to the current epoch {@code E}: it stands for the unique {@code a} in
 * {@code [E + K - (P - 1), E + K]}, where the slack {@code K = max(1, P / 4)} covers epochs that advanced while
 * the reader ran. That is exact as long as every non-zero stamp is at or after the map's <em>floor</em> and
 * {@code E - floor <= P - 1 - K}; {@link #canAdvanceTo} says whether a new epoch keeps that true.
 *
 * <p>{@link #compact} raises the floor: given the oldest live checkpoint's epoch {@code H} (the horizon), it zeroes
 * every stamp older than {@code H} (those answer "not changed" for every live checkpoint, as zero does), forces
 * the data, and then stores the new floor in the header. It runs off the write path and is safe against
 * concurrent marks because it uses compare-and-set from the stamp it decoded to zero: a mark that stored a new
 * stamp meanwhile makes the CAS fail and wins; a mark that stores after the CAS writes the current epoch, which
 * is at or after the new floor (or, with no live checkpoint, is the epoch the floor is capped at). While it runs,
 * {@link #canAdvanceTo} keeps the current epoch within {@code K} of the epoch it started at, so its decoding
 * stays exact. Removing checkpoints therefore costs the write path nothing; the space of 2^32 - 1 stamps only
 * runs out if one checkpoint is kept alive for more than three billion newer ones.
 *
 * <h2>Trust (invariant I5)</h2>
 * The header holds an in-use flag, a durable flag and the boot id of the holder, and the trust rule is
 * {@link MappedBitmap}'s: a clean close, or a holder killed in this boot (the page cache kept every store), or a
 * holder in durable mode (every page a mark dirtied was forced before the write's data went out) is trusted. In
 * every other case the map is untrusted for the past: the header's {@code untrustedThrough} becomes the current
 * epoch the header holds, and every checkpoint at or before it is answered "everything changed" from then on
 * (conservative, never silently wrong). The header itself may have lost its newest epochs, so the owner of the
 * checkpoint catalogue raises the mark with {@link #distrust} to the newest checkpoint it knows. Checkpoints added
 * later are exact: every stamp that matters for them is written after the open.
 *
 * <h2>File</h2>
 * A 4 KiB little-endian header (magic {@code TMEPOCH1}, version, entry width, granularity, disk size, period,
 * flags, boot id, current epoch, floor, untrusted-through, creation time), then one 32-bit entry per chunk, in a
 * sparse file: chunks never written cost no storage. The entries are mapped in regions of 2^28 (1 GiB).
 */
public final class EpochMap implements AutoCloseable
{
    /** Default bytes per chunk. */
    public static final long DEFAULT_GRANULARITY = 65536;
    /** The largest period: every non-zero 32-bit value is a stamp. */
    public static final long MAX_PERIOD = 0xFFFF_FFFFL;
    /** Header bytes before the entries. */
    static final int HEADER_LENGTH = 4096;
    static final long MAGIC = 0x3148434F50454D54L; // "TMEPOCH1" read as a little-endian long
    static final int VERSION = 1;
    static final int ENTRY_BYTES = 4;
    static final int OFF_MAGIC = 0;
    static final int OFF_VERSION = 8;
    static final int OFF_WIDTH = 12;
    static final int OFF_GRANULARITY = 16;
    static final int OFF_DISK_SIZE = 24;
    static final int OFF_PERIOD = 32;
    static final int OFF_FLAGS = 40;
    static final int OFF_BOOT_ID = 48;
    static final int OFF_CURRENT = 64;
    static final int OFF_FLOOR = 72;
    static final int OFF_UNTRUSTED = 80;
    static final int OFF_CREATED = 88;
    static final int FLAG_IN_USE = 1;
    static final int FLAG_DURABLE = 2;
    private static final int REGION_SHIFT = 28;
    private static final long REGION_MASK = (1L << REGION_SHIFT) - 1;
    private static final int ENTRIES_PER_PAGE_SHIFT = 10;

    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;
    private final MappedByteBuffer headerMapping;
    private final UnsafeBuffer header;
    private final MappedByteBuffer[] regionMappings;
    private final UnsafeBuffer[] regions;
    private final long granularity;
    private final int shift;
    private final long diskSize;
    private final long chunkCount;
    private final long period;
    private final long slack;
    private final OpenState openState;
    private final Object headerLock = new Object();
    private final Object compactLock = new Object();
    /** Orders epoch advances against the start of a compaction (see {@link #canAdvanceTo}). */
    private final Object advanceLock = new Object();
    /** Pages that gained a store since the last force; one bit per page, and their numbers in order. */
    private final long[] pendingBits;
    private long[] pendingPages = new long[64];
    private int pendingCount;
    private boolean durable;
    private boolean closed;
    private volatile boolean compacting;
    /** Test seam (power-loss simulation): sees every file range after it was forced; null in production. */
    static volatile ForceListener forceListener;
    /** Test seam (power-loss simulation): the boot id opens record and compare with; null: this boot's. */
    static volatile UUID bootIdOverride;
    private volatile long compactStart;

    private EpochMap(final Path file, final FileChannel channel, final FileLock lock,
        final MappedByteBuffer headerMapping, final long granularity, final long diskSize, final long period,
        final OpenState openState) throws IOException
    {
        this.file = file;
        this.channel = channel;
        this.lock = lock;
        this.headerMapping = headerMapping;
        this.header = new UnsafeBuffer(headerMapping);
        this.granularity = granularity;
        this.shift = Long.numberOfTrailingZeros(granularity);
        this.diskSize = diskSize;
        this.chunkCount = chunks(diskSize, granularity);
        this.period = period;
        this.slack = slackOf(period);
        this.openState = openState;
        final int regionCount = (int)((chunkCount + REGION_MASK) >>> REGION_SHIFT);
        this.regionMappings = new MappedByteBuffer[regionCount];
        this.regions = new UnsafeBuffer[regionCount];
        for (int r = 0; r < regionCount; r++)
        {
            final long entries = Math.min(1L << REGION_SHIFT, chunkCount - ((long)r << REGION_SHIFT));
            regionMappings[r] = channel.map(FileChannel.MapMode.READ_WRITE,
                HEADER_LENGTH + ((long)r << REGION_SHIFT) * ENTRY_BYTES, entries * ENTRY_BYTES);
            regions[r] = new UnsafeBuffer(regionMappings[r]);
        }
        final long pages = (chunkCount + (1L << ENTRIES_PER_PAGE_SHIFT) - 1) >>> ENTRIES_PER_PAGE_SHIFT;
        this.pendingBits = new long[(int)((pages + 63) >>> 6)];
    }

    // ------------------------------------------------------------------------------------------ factories

    /**
     * Creates a new map file, every chunk zero ("not written since the map exists"), current epoch 0.
     *
     * @param file where; must not exist.
     * @param diskSize bytes of the disk, {@code >= 0}.
     * @param granularity bytes per chunk, a power of two in 512 B..2 GiB.
     * @param period stamps per cycle, 3..{@link #MAX_PERIOD} ({@link #MAX_PERIOD} outside tests).
     * @return the open map, locked until {@link #close()}.
     * @throws BitmapArgumentException if an argument is out of range.
     * @throws BitmapFileException if the file exists or is locked.
     * @throws IOException if the file cannot be written.
     */
    public static EpochMap create(final Path file, final long diskSize, final long granularity, final long period)
        throws IOException
    {
        return create(file, diskSize, granularity, period, System::currentTimeMillis);
    }

    static EpochMap create(final Path file, final long diskSize, final long granularity, final long period,
        final LongSupplier clock) throws IOException
    {
        checkGeometry(diskSize, granularity, period);
        final FileChannel channel;
        try
        {
            channel = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
        }
        catch (final FileAlreadyExistsException ex)
        {
            throw new BitmapFileException(BitmapError.ALREADY_EXISTS, file, "a file already exists there");
        }
        boolean done = false;
        FileLock lock = null;
        try
        {
            lock = MappedBitmap.lockExclusive(file, channel);
            final ByteBuffer bytes = ByteBuffer.allocate(HEADER_LENGTH);
            final UnsafeBuffer h = new UnsafeBuffer(bytes);
            h.putLong(OFF_MAGIC, MAGIC, ByteOrder.LITTLE_ENDIAN);
            h.putInt(OFF_VERSION, VERSION, ByteOrder.LITTLE_ENDIAN);
            h.putInt(OFF_WIDTH, ENTRY_BYTES, ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_GRANULARITY, granularity, ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_DISK_SIZE, diskSize, ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_PERIOD, period, ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_CREATED, clock.getAsLong(), ByteOrder.LITTLE_ENDIAN);
            MappedBitmap.writeFully(channel, bytes, 0);
            final long length = fileLength(diskSize, granularity);
            if (length > HEADER_LENGTH)
            {
                // Sparse: the entries cost storage only where a chunk is written.
                MappedBitmap.writeFully(channel, ByteBuffer.allocate(1), length - 1);
            }
            channel.force(true);
            final EpochMap map = mapOpened(file, channel, lock, OpenState.CREATED, bootId());
            done = true;
            return map;
        }
        finally
        {
            if (!done)
            {
                MappedBitmap.closeQuietly(lock, channel);
                Files.deleteIfExists(file);
            }
        }
    }

    /**
     * Opens an existing map, applying the trust rule (class comment).
     *
     * @param file the map file.
     * @return the open map, locked until {@link #close()}.
     * @throws BitmapFileException if the file is malformed or locked; it is then unchanged.
     * @throws IOException if it cannot be read.
     */
    public static EpochMap open(final Path file) throws IOException
    {
        return open(file, bootId());
    }

    private static UUID bootId()
    {
        final UUID override = bootIdOverride;
        return override != null ? override : BootId.current();
    }

    static EpochMap open(final Path file, final UUID bootId) throws IOException
    {
        final FileChannel channel = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        boolean done = false;
        FileLock lock = null;
        try
        {
            lock = MappedBitmap.lockExclusive(file, channel);
            final ByteBuffer bytes = ByteBuffer.allocate(HEADER_LENGTH);
            int read = 0;
            while (bytes.hasRemaining())
            {
                final int n = channel.read(bytes, read);
                if (n < 0)
                {
                    break;
                }
                read += n;
            }
            if (read < HEADER_LENGTH)
            {
                throw new BitmapFileException(BitmapError.TRUNCATED, file, "header is " + read + " bytes, not "
                    + HEADER_LENGTH);
            }
            final UnsafeBuffer h = new UnsafeBuffer(bytes);
            if (h.getLong(OFF_MAGIC, ByteOrder.LITTLE_ENDIAN) != MAGIC)
            {
                throw new BitmapFileException(BitmapError.BAD_MAGIC, file, "not an epoch map (magic at offset 0)");
            }
            final int version = h.getInt(OFF_VERSION, ByteOrder.LITTLE_ENDIAN);
            if (version != VERSION || h.getInt(OFF_WIDTH, ByteOrder.LITTLE_ENDIAN) != ENTRY_BYTES)
            {
                throw new BitmapFileException(BitmapError.UNSUPPORTED_VERSION, file, "version " + version
                    + " entry width " + h.getInt(OFF_WIDTH, ByteOrder.LITTLE_ENDIAN) + " (offset 8, 12)");
            }
            final long granularity = h.getLong(OFF_GRANULARITY, ByteOrder.LITTLE_ENDIAN);
            final long diskSize = h.getLong(OFF_DISK_SIZE, ByteOrder.LITTLE_ENDIAN);
            final long period = h.getLong(OFF_PERIOD, ByteOrder.LITTLE_ENDIAN);
            try
            {
                checkGeometry(diskSize, granularity, period);
            }
            catch (final BitmapArgumentException ex)
            {
                throw new BitmapFileException(ex.error(), file, ex.getMessage() + " (header offsets 16..39)");
            }
            if (channel.size() < fileLength(diskSize, granularity))
            {
                throw new BitmapFileException(BitmapError.TRUNCATED, file, "file is " + channel.size()
                    + " bytes, its entries need " + fileLength(diskSize, granularity));
            }
            final int flags = h.getInt(OFF_FLAGS, ByteOrder.LITTLE_ENDIAN);
            final UUID stored = new UUID(h.getLong(OFF_BOOT_ID, ByteOrder.LITTLE_ENDIAN),
                h.getLong(OFF_BOOT_ID + 8, ByteOrder.LITTLE_ENDIAN));
            // The trust rule of the bitmaps (I5), fed with this header's flags.
            final OpenState state = MappedBitmap.trustRule(
                ((flags & FLAG_IN_USE) != 0 ? BitmapFileDescriptor.FLAG_IN_USE : 0)
                    | ((flags & FLAG_DURABLE) != 0 ? BitmapFileDescriptor.FLAG_DURABLE : 0), stored, bootId);
            final EpochMap map = mapOpened(file, channel, lock, state, bootId);
            done = true;
            return map;
        }
        finally
        {
            if (!done)
            {
                MappedBitmap.closeQuietly(lock, channel);
            }
        }
    }

    private static EpochMap mapOpened(final Path file, final FileChannel channel, final FileLock lock,
        final OpenState state, final UUID bootId) throws IOException
    {
        final MappedByteBuffer headerMapping = channel.map(FileChannel.MapMode.READ_WRITE, 0, HEADER_LENGTH);
        final UnsafeBuffer h = new UnsafeBuffer(headerMapping);
        final EpochMap map = new EpochMap(file, channel, lock, headerMapping,
            h.getLong(OFF_GRANULARITY, ByteOrder.LITTLE_ENDIAN), h.getLong(OFF_DISK_SIZE, ByteOrder.LITTLE_ENDIAN),
            h.getLong(OFF_PERIOD, ByteOrder.LITTLE_ENDIAN), state);
        final int flags = h.getInt(OFF_FLAGS, ByteOrder.LITTLE_ENDIAN);
        map.durable = (flags & FLAG_DURABLE) != 0;
        synchronized (map.headerLock)
        {
            if (!state.isTrusted())
            {
                // Every checkpoint up to now is answered "everything changed" from here on (class comment).
                h.putLongVolatile(OFF_UNTRUSTED, h.getLongVolatile(OFF_CURRENT));
            }
            h.putInt(OFF_FLAGS, flags | FLAG_IN_USE, ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_BOOT_ID, bootId.getMostSignificantBits(), ByteOrder.LITTLE_ENDIAN);
            h.putLong(OFF_BOOT_ID + 8, bootId.getLeastSignificantBits(), ByteOrder.LITTLE_ENDIAN);
            // The in-use mark reaches storage before any entry changes (as for bitmaps).
            map.forceHeader();
        }
        return map;
    }

    // ------------------------------------------------------------------------------------------ marking

    /**
     * Stamps every chunk of {@code [offset, offset + length)} with {@code epoch}: per chunk, a plain read and a
     * store only if the stamp differs. In durable mode the pages that gained a store are kept for {@link #force()}
     * (lazy mode keeps nothing: turning durable mode on forces the whole map). Controlling thread only.
     *
     * @param offset first byte.
     * @param length bytes, {@code > 0}.
     * @param epoch the current epoch (the one {@link #advance} set last).
     * @return whether any entry changed, i.e. whether {@link #force()} has pages to force.
     * @throws BitmapArgumentException if the range is outside the disk.
     */
    public boolean mark(final long offset, final long length, final long epoch)
    {
        if (offset < 0 || length <= 0 || offset >= diskSize || length > diskSize - offset)
        {
            throw new BitmapArgumentException(BitmapError.OUT_OF_RANGE, "mark range offset " + offset + " length "
                + length + " is outside the epoch map of " + file + " (disk size " + diskSize + ")");
        }
        final int stamp = (int)stampOf(epoch);
        final long last = (offset + length - 1) >>> shift;
        boolean stored = false;
        for (long chunk = offset >>> shift; chunk <= last; chunk++)
        {
            final UnsafeBuffer region = regions[(int)(chunk >>> REGION_SHIFT)];
            final int index = (int)((chunk & REGION_MASK) << 2);
            if (region.getInt(index) != stamp)
            {
                region.putIntOrdered(index, stamp);
                if (durable)
                {
                    notePage(chunk >>> ENTRIES_PER_PAGE_SHIFT);
                }
                stored = true;
            }
        }
        return stored;
    }

    private void notePage(final long page)
    {
        final int word = (int)(page >>> 6);
        final long bit = 1L << page;
        if ((pendingBits[word] & bit) == 0)
        {
            pendingBits[word] |= bit;
            if (pendingCount == pendingPages.length)
            {
                pendingPages = java.util.Arrays.copyOf(pendingPages, pendingCount * 2);
            }
            pendingPages[pendingCount++] = page;
        }
    }

    /**
     * Forces the pages that gained a store since the last force (durable mode's group commit); controlling thread.
     *
     * @return pages forced.
     */
    public int force()
    {
        final int count = pendingCount;
        if (count == 0 || closed)
        {
            return 0;
        }
        java.util.Arrays.sort(pendingPages, 0, count);
        long runStart = -1;
        long runLength = 0;
        for (int i = 0; i < count; i++)
        {
            final long page = pendingPages[i];
            pendingBits[(int)(page >>> 6)] &= ~(1L << page);
            if (runStart >= 0 && runStart + runLength == page)
            {
                runLength++;
                continue;
            }
            if (runStart >= 0)
            {
                forcePages(runStart, runLength);
            }
            runStart = page;
            runLength = 1;
        }
        forcePages(runStart, runLength);
        pendingCount = 0;
        return count;
    }

    /** @return pages that gained a store since the last {@link #force()}. */
    public int pendingPageCount()
    {
        return pendingCount;
    }

    private void forcePages(final long firstPage, final long pages)
    {
        long entry = firstPage << ENTRIES_PER_PAGE_SHIFT;
        final long end = Math.min(chunkCount, (firstPage + pages) << ENTRIES_PER_PAGE_SHIFT);
        while (entry < end)
        {
            final int region = (int)(entry >>> REGION_SHIFT);
            final long regionEnd = Math.min(end, ((long)region + 1) << REGION_SHIFT);
            final int index = (int)((entry & REGION_MASK) << 2);
            regionMappings[region].force(index, (int)((regionEnd - entry) << 2));
            forced(HEADER_LENGTH + entry * ENTRY_BYTES, (regionEnd - entry) * ENTRY_BYTES);
            entry = regionEnd;
        }
    }

    /**
     * Makes {@code epoch} the current one; controlling thread, between two marks. In durable mode the header is
     * forced before this returns (so a journal commit that follows never names an epoch the map lost).
     *
     * @param epoch greater than the current epoch.
     * @throws IllegalStateException if {@code epoch} is not after the current one or would break the wrap bound.
     */
    public void advance(final long epoch)
    {
        if (!tryAdvance(epoch))
        {
            throw new IllegalStateException("epoch map " + file + ": cannot advance from " + currentEpoch() + " to "
                + epoch + " (floor " + floor() + ", period " + period + ")");
        }
    }

    /**
     * As {@link #advance}, but says whether the wrap bound allowed it (class comment) instead of throwing.
     *
     * @param epoch greater than the current epoch.
     * @return whether the current epoch is now {@code epoch}.
     */
    public boolean tryAdvance(final long epoch)
    {
        checkOpen();
        synchronized (advanceLock)
        {
            if (epoch <= currentEpoch())
            {
                throw new IllegalStateException("epoch map " + file + ": epoch " + epoch + " is not after "
                    + currentEpoch());
            }
            if (!canAdvanceTo(epoch))
            {
                return false;
            }
            setCurrent(epoch);
            return true;
        }
    }

    /**
     * Declares every checkpoint up to {@code epoch} untrusted (answered "everything changed") and makes the current
     * epoch at least {@code epoch}; for a map recreated after it was lost. Controlling thread.
     *
     * @param epoch the newest epoch the lost map may have held.
     */
    public void distrust(final long epoch)
    {
        checkOpen();
        synchronized (advanceLock)
        {
            synchronized (headerLock)
            {
                header.putLongVolatile(OFF_UNTRUSTED, Math.max(untrustedThrough(), epoch));
                if (currentEpoch() < epoch)
                {
                    header.putLongVolatile(OFF_CURRENT, epoch);
                    header.putLongVolatile(OFF_FLOOR, epoch);
                }
                forceHeader();
            }
        }
    }

    /**
     * Sets the current epoch back after an aborted {@link #advance}; controlling thread, no mark in between.
     *
     * @param epoch the epoch that was current before.
     */
    public void restore(final long epoch)
    {
        checkOpen();
        synchronized (advanceLock)
        {
            setCurrent(epoch);
        }
    }

    private void setCurrent(final long epoch)
    {
        synchronized (headerLock)
        {
            header.putLongVolatile(OFF_CURRENT, epoch);
            if (durable)
            {
                forceHeader();
            }
        }
    }

    /**
     * @param epoch a candidate next epoch.
     * @return whether advancing to it keeps every stamp decodable (class comment), also while a compaction runs.
     */
    public boolean canAdvanceTo(final long epoch)
    {
        if (epoch - floor() > period - 1 - slack)
        {
            return false;
        }
        return !compacting || epoch <= compactStart + slack;
    }

    /** @return whether the current epoch is past the middle of its span, so that a compaction is due. */
    public boolean compactionDue()
    {
        return currentEpoch() - floor() > (period - 1 - slack) / 2;
    }

    // ------------------------------------------------------------------------------------------ reading

    /**
     * Reports the extents of {@code [offset, offset + length)} changed since the checkpoint of epoch {@code epoch},
     * coalesced and in ascending order. An epoch at or before {@link #untrustedThrough()} reports the whole range.
     *
     * @param epoch a checkpoint's epoch, {@code >= 1}.
     * @param offset first byte.
     * @param length bytes.
     * @param sink receives the extents; returning false stops the walk.
     */
    public void changedSince(final long epoch, final long offset, final long length, final ExtentConsumer sink)
    {
        checkRange(offset, length);
        if (length == 0)
        {
            return;
        }
        if (!isTrustedFor(epoch))
        {
            sink.accept(offset, length);
            return;
        }
        final long end = offset + length;
        final long current = Math.max(currentEpoch(), epoch);
        final long stampCurrent = stampOf(current);
        final long limit = current + slack - epoch;
        long runStart = -1;
        long runEnd = -1;
        final long lastChunk = (end - 1) >>> shift;
        for (long chunk = offset >>> shift; chunk <= lastChunk; chunk++)
        {
            final long stamp = regions[(int)(chunk >>> REGION_SHIFT)].getIntVolatile(
                (int)((chunk & REGION_MASK) << 2)) & 0xFFFF_FFFFL;
            if (stamp == 0 || Math.floorMod(stampCurrent + slack - stamp, period) > limit)
            {
                continue;
            }
            final long from = Math.max(offset, chunk << shift);
            final long to = Math.min(end, (chunk + 1) << shift);
            if (runEnd == from)
            {
                runEnd = to;
                continue;
            }
            if (runStart >= 0 && !sink.accept(runStart, runEnd - runStart))
            {
                return;
            }
            runStart = from;
            runEnd = to;
        }
        if (runStart >= 0)
        {
            sink.accept(runStart, runEnd - runStart);
        }
    }

    /**
     * @param epoch a checkpoint's epoch.
     * @return bytes of the disk changed since it (chunks clipped at the disk's end).
     */
    public long countChangedSince(final long epoch)
    {
        final long[] total = new long[1];
        changedSince(epoch, 0, diskSize, (o, l) ->
        {
            total[0] += l;
            return true;
        });
        return total[0];
    }

    /**
     * Counts for many checkpoints in one walk of the map.
     *
     * @param epochs checkpoints' epochs, in ascending order.
     * @return for each, bytes of the disk changed since it (as {@link #countChangedSince(long)}).
     */
    public long[] countChangedSince(final long[] epochs)
    {
        final long[] bytes = new long[epochs.length];
        if (epochs.length == 0 || chunkCount == 0)
        {
            return bytes;
        }
        final long current = Math.max(currentEpoch(), epochs[epochs.length - 1]);
        final long stampCurrent = stampOf(current);
        // perBucket[i]: bytes whose epoch is at or after epochs[i] and before epochs[i + 1].
        final long[] perBucket = new long[epochs.length];
        final long lastChunkBytes = diskSize - ((chunkCount - 1) << shift);
        for (long chunk = 0; chunk < chunkCount; chunk++)
        {
            final long stamp = regions[(int)(chunk >>> REGION_SHIFT)].getIntVolatile(
                (int)((chunk & REGION_MASK) << 2)) & 0xFFFF_FFFFL;
            if (stamp == 0)
            {
                continue;
            }
            final long epoch = current + slack - Math.floorMod(stampCurrent + slack - stamp, period);
            int bucket = java.util.Arrays.binarySearch(epochs, epoch);
            bucket = bucket >= 0 ? bucket : -bucket - 2;
            if (bucket >= 0)
            {
                perBucket[bucket] += chunk == chunkCount - 1 ? lastChunkBytes : granularity;
            }
        }
        long sum = 0;
        for (int i = epochs.length - 1; i >= 0; i--)
        {
            sum += perBucket[i];
            bytes[i] = isTrustedFor(epochs[i]) ? sum : diskSize;
        }
        return bytes;
    }

    /**
     * @param epoch a checkpoint's epoch.
     * @return whether its answers are exact (false: it predates an untrusted open and is answered "everything").
     */
    public boolean isTrustedFor(final long epoch)
    {
        return epoch > untrustedThrough();
    }

    /** @return the current epoch. */
    public long currentEpoch()
    {
        return header.getLongVolatile(OFF_CURRENT);
    }

    /** @return every non-zero stamp is at or after this epoch. */
    public long floor()
    {
        return header.getLongVolatile(OFF_FLOOR);
    }

    /** @return checkpoints at or before this epoch are answered "everything changed"; 0 when none is. */
    public long untrustedThrough()
    {
        return header.getLongVolatile(OFF_UNTRUSTED);
    }

    /**
     * @param epoch an absolute epoch.
     * @return the 32-bit stamp it is stored as (0 for epoch 0).
     */
    long stampOf(final long epoch)
    {
        return epoch <= 0 ? 0 : 1 + Math.floorMod(epoch - 1, period);
    }

    /** @return the raw stamp of a chunk (tests and tools). */
    long stampAt(final long chunk)
    {
        return regions[(int)(chunk >>> REGION_SHIFT)].getIntVolatile((int)((chunk & REGION_MASK) << 2)) & 0xFFFF_FFFFL;
    }

    // ------------------------------------------------------------------------------------------ compaction

    /**
     * Zeroes every stamp older than {@code horizon}, forces the entries and raises the floor (class comment). Runs
     * concurrently with marks, off the write path; one compaction at a time.
     *
     * @param horizon the oldest live checkpoint's epoch, or the current epoch + 1 when there is none.
     * @return how many entries were zeroed.
     */
    public long compact(final long horizon)
    {
        synchronized (compactLock)
        {
            checkOpen();
            final long start;
            synchronized (advanceLock)
            {
                // No advance between reading the start and announcing it: every later stamp is within the slack.
                start = currentEpoch();
                compactStart = start;
                compacting = true;
            }
            try
            {
                final long stampStart = stampOf(start);
                long zeroed = 0;
                for (long chunk = 0; chunk < chunkCount; chunk++)
                {
                    final UnsafeBuffer region = regions[(int)(chunk >>> REGION_SHIFT)];
                    final int index = (int)((chunk & REGION_MASK) << 2);
                    final int raw = region.getIntVolatile(index);
                    if (raw == 0)
                    {
                        continue;
                    }
                    final long epoch = start + slack - Math.floorMod(stampStart + slack - (raw & 0xFFFF_FFFFL), period);
                    // A failed CAS means a mark stored the current epoch meanwhile: it stays.
                    if (epoch < horizon && region.compareAndSetInt(index, raw, 0))
                    {
                        zeroed++;
                    }
                }
                forceAllEntries();
                synchronized (headerLock)
                {
                    // Marks during the compaction may have stored the epoch current at its start.
                    final long newFloor = Math.min(horizon, start);
                    if (newFloor > floor())
                    {
                        header.putLongVolatile(OFF_FLOOR, newFloor);
                    }
                    if (untrustedThrough() != 0 && untrustedThrough() < horizon)
                    {
                        header.putLongVolatile(OFF_UNTRUSTED, 0);
                    }
                    forceHeader();
                }
                return zeroed;
            }
            finally
            {
                compacting = false;
            }
        }
    }

    // ------------------------------------------------------------------------------------------ state

    /**
     * Writes back every dirty page of the map from the calling thread, beside the controlling thread's marks, so that
     * a {@link #setDurable setDurable(true)} right after has only the pages marked since to write (lazy mode tracks
     * no pages, so that call msyncs every mapping; msync costs what is dirty, not the mapping's size). Any thread
     * while the map is open; concurrent marks are not lost, they are forced by that later call.
     */
    public void forceAhead()
    {
        checkOpen();
        for (int r = 0; r < regionMappings.length; r++)
        {
            regionMappings[r].force();
        }
    }

    /**
     * Switches durable mode: turning it on forces every entry stored so far first; the flag is stored in the header
     * and the header forced. Controlling thread.
     *
     * @param on the mode.
     */
    public void setDurable(final boolean on)
    {
        checkOpen();
        if (on && !durable)
        {
            // Lazy mode tracked no pages: msync the mappings, which writes back only the dirty ones.
            forceAllEntries();
        }
        else if (!on)
        {
            force();
        }
        durable = on;
        synchronized (headerLock)
        {
            final int flags = header.getInt(OFF_FLAGS, ByteOrder.LITTLE_ENDIAN);
            header.putInt(OFF_FLAGS, on ? flags | FLAG_DURABLE : flags & ~FLAG_DURABLE, ByteOrder.LITTLE_ENDIAN);
            forceHeader();
        }
    }

    /** @return whether durable mode is on. */
    public boolean isDurable()
    {
        return durable;
    }

    /** @return what the trust rule found on open. */
    public OpenState openState()
    {
        return openState;
    }

    /** @return bytes per chunk. */
    public long granularity()
    {
        return granularity;
    }

    /** @return bytes of the disk. */
    public long diskSize()
    {
        return diskSize;
    }

    /** @return chunks of the disk. */
    public long chunkCount()
    {
        return chunkCount;
    }

    /** @return stamps per cycle. */
    public long period()
    {
        return period;
    }

    /** @return the backing file. */
    public Path file()
    {
        return file;
    }

    /** @return the creation time stored in the header, in epoch millis. */
    public long creationTimeMillis()
    {
        return header.getLong(OFF_CREATED, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return bytes of address space the entries take (resident only where chunks were written). */
    public long mappedBytes()
    {
        return chunkCount * ENTRY_BYTES;
    }

    /**
     * Closes cleanly: forces every entry, clears the in-use flag, forces the header, unmaps and unlocks.
     * Controlling thread, no compaction running.
     */
    @Override
    public void close()
    {
        if (closed)
        {
            return;
        }
        synchronized (compactLock)
        {
            forceAllEntries();
            synchronized (headerLock)
            {
                header.putInt(OFF_FLAGS, header.getInt(OFF_FLAGS, ByteOrder.LITTLE_ENDIAN) & ~FLAG_IN_USE,
                    ByteOrder.LITTLE_ENDIAN);
                forceHeader();
            }
            closed = true;
            unmapAndUnlock();
        }
    }

    /**
     * Unmaps and unlocks without the clean-close steps: what a killed process leaves behind (tests).
     */
    void abandon()
    {
        synchronized (compactLock)
        {
            closed = true;
            unmapAndUnlock();
        }
    }

    /** Unmaps all (views first: none reads unmapped memory), unlocks and closes the file; under compactLock. */
    private void unmapAndUnlock()
    {
        for (int r = 0; r < regions.length; r++)
        {
            regions[r].wrap(new byte[0]);
            IoUtil.unmap(regionMappings[r]);
        }
        header.wrap(new byte[HEADER_LENGTH]);
        IoUtil.unmap(headerMapping);
        MappedBitmap.closeQuietly(lock, channel);
    }

    /** @return whether {@link #close()} ran. */
    public boolean isClosed()
    {
        return closed;
    }

    @Override
    public String toString()
    {
        return "EpochMap[" + file + ", granularity " + granularity + ", current " + currentEpoch() + ", floor "
            + floor() + ", untrusted through " + untrustedThrough() + ", " + openState + "]";
    }

    // ------------------------------------------------------------------------------------------ helpers

    private void forceHeader()
    {
        headerMapping.force();
        forced(0, HEADER_LENGTH);
    }

    private void forceAllEntries()
    {
        for (int r = 0; r < regionMappings.length; r++)
        {
            regionMappings[r].force();
            forced(HEADER_LENGTH + ((long)r << REGION_SHIFT) * ENTRY_BYTES, regionMappings[r].capacity());
        }
    }

    private void forced(final long fileOffset, final long length)
    {
        final ForceListener listener = forceListener;
        if (listener != null)
        {
            listener.forced(file, fileOffset, length);
        }
    }

    /** Sees forced file ranges (tests); called on the forcing thread. */
    interface ForceListener
    {
        /**
         * @param file the map's file.
         * @param fileOffset first byte forced.
         * @param length bytes forced.
         */
        void forced(Path file, long fileOffset, long length);
    }

    static long slackOf(final long period)
    {
        return Math.max(1, period / 4);
    }

    static long chunks(final long diskSize, final long granularity)
    {
        return (diskSize + granularity - 1) / granularity;
    }

    static long fileLength(final long diskSize, final long granularity)
    {
        final long entries = chunks(diskSize, granularity) * ENTRY_BYTES;
        return HEADER_LENGTH + (entries + 4095) / 4096 * 4096;
    }

    private static void checkGeometry(final long diskSize, final long granularity, final long period)
    {
        final String granularityProblem = BitmapFileDescriptor.granularityProblem(granularity);
        if (granularityProblem != null)
        {
            throw new BitmapArgumentException(BitmapError.BAD_GRANULARITY, granularityProblem);
        }
        if (diskSize < 0 || chunks(diskSize, granularity) > (1L << 40))
        {
            throw new BitmapArgumentException(BitmapError.BAD_SIZE, "disk size " + diskSize + " at granularity "
                + granularity + " is out of range for an epoch map");
        }
        if (period < 3 || period > MAX_PERIOD)
        {
            throw new BitmapArgumentException(BitmapError.BAD_SIZE, "epoch period " + period + " is outside 3.."
                + MAX_PERIOD);
        }
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > diskSize || length > diskSize - offset)
        {
            throw new BitmapArgumentException(BitmapError.OUT_OF_RANGE, "range offset " + offset + " length "
                + length + " is outside the epoch map of " + file + " (disk size " + diskSize + ")");
        }
    }

    private void checkOpen()
    {
        if (closed)
        {
            throw new IllegalStateException("epoch map " + file + " is closed");
        }
    }
}
