package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;
import java.util.function.UnaryOperator;

import org.agrona.BufferUtil;
import org.agrona.IoUtil;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A dirty bitmap in off-heap memory: {@link #mark}, {@link #merge} and every reader are safe for any number
 * of threads; clear and clear-all may run from one controlling thread at a time concurrently with them;
 * resize, force, durable-mode changes and close belong to the controlling thread, with no marker or merger
 * running for resize and close.
 *
 * <h2>Levels</h2>
 * The bits live in three levels. Level 0 is the data: one bit per chunk in 64-bit words, exactly QEMU's
 * level-0 array, so that its SHA-256 equals {@code x-debug-block-dirty-bitmap-sha256}. For a persistent
 * bitmap level 0 is the data area of the mapped file; for an anonymous one it is lazily zeroed memory (a
 * deleted sparse scratch file, see {@link ScratchFile}; small ones use direct memory). Level 1 has one bit
 * per level-0 word ("this word may be non-zero"), level 2 one bit per level-1 word; they live in lazily
 * zeroed memory too, so a 64 TiB disk at 4 KiB costs virtual address space up front and resident memory
 * only for the pages that hold dirty bits.
 *
 * <p>A clean close stores levels 1 and 2 in the file's summary area (format 1.1) and records that in the
 * header; every open for writing erases that record before a bit can change. Opening a file whose summary
 * is on record maps it copy-on-write, so the open costs two {@code mmap} calls whatever the disk size. Any
 * other open (after a crash, of a 1.0 file) starts a background thread that rebuilds the summary from the
 * data; until it ends, readers treat every summary bit as set (correct, just slower) and markers are not
 * held up at all (see {@link #isSummaryComplete()}, {@link #awaitSummary()}).
 *
 * <p>Level 0 may be larger than the 2 GiB one mapping can hold, so it is split into regions of a
 * power-of-two size (1 GiB by default); word {@code w} lives in region {@code w >>> regionWordShift}.
 *
 * <h2>Cost</h2>
 * Marking touches one level-0 word per 64 chunks written plus one word in each summary level. Finding
 * the next dirty chunk reads level 2 flat (1/4096 of level 0), then only the level-1 and level-0 words
 * whose summary bit is set, so walks, counts, merges, clears and clear-all cost time in proportion to the
 * dirty words, not to the disk. Finding the next clean chunk scans level 0 word by word, which is in
 * proportion to the dirty run it skips. {@link #sha256()} hashes every data byte (QEMU's digest), but
 * feeds pieces the summary knows to be zero from a constant array instead of touching the mapping.
 *
 * <h2>Concurrency</h2>
 * A marker sets the data bits first (read; when every target bit is already set, no write at all;
 * otherwise a compare-and-set loop), then notes the file page as needing a force, then makes sure the
 * level-1 and level-2 bits are set, again read before write. Because the summary bits are checked even
 * when the data bits were already set, a mark that returns has its bit visible to every walk that starts
 * after it, even if another marker set the data bit and has not yet reached the summary. A merge with the
 * same granularity walks the source's summary and sets each non-zero source word through exactly this
 * path, so it is a marker: it may run on any thread, concurrently with marks, reads, other merges and the
 * one clearer, and no bit set by a concurrent mark is lost.
 *
 * <p>Only the controlling thread clears. When a clear leaves a data word zero it clears the level-1 bit
 * and then re-reads the data word; if a marker slipped a bit in meanwhile, it sets the level-1 bit again
 * (the same dance between levels 1 and 2). All these reads and writes are volatile or CAS, so in their
 * single total order either the marker sees the cleared summary bit and sets it, or the clearer sees the
 * marker's data bit: no dirty word is ever left without its summary bit once both have finished. A
 * summary bit may be left set over a zero word (a marker that saw it clear sets it after a racing clear zeroed
 * the word again) until the word is next dirtied and cleared; readers skip such words.
 *
 * <p>Between clearing a level-1 bit and restoring it, a word a marker has just dirtied is briefly
 * invisible through the summary. The clearer therefore brackets every summary drop with a sequence
 * number that is odd while the drop runs (a seqlock with one writer); a search for the next dirty chunk
 * that overlapped a drop is repeated. So a mark that returned is found by every search that starts after
 * it, even while the controlling thread clears the same words.
 *
 * <p>The background rebuild needs only to find the bits set before it started: a bit set later is put
 * into the summary by its own marker. It ORs its findings in with CAS and drops again, the clearer's way,
 * any bit a racing clear made stale, so the rebuilt summary is exact.
 *
 * <p>Reads are not snapshots: a walk racing with markers may or may not report bits set after it
 * started, and never reports as clean a bit whose mark returned before it started.
 */
public final class MappedBitmap implements DirtyBitmap
{
    /** Default region size of level 0: 1 GiB, half the largest mapping. */
    static final int DEFAULT_REGION_BYTES = 1 << 30;
    private static final int WORDS_PER_PAGE_SHIFT = 9;
    /** Levels or anonymous data up to this size live in direct memory; above it in a scratch file. */
    static final long DEFAULT_SCRATCH_THRESHOLD = 1 << 20;
    private static final int SHA_PIECE_BYTES = 64 * 64 * Long.BYTES;
    private static final byte[] ZERO_PIECE = new byte[SHA_PIECE_BYTES];
    private static final int REBUILD_READ_BYTES = 1 << 20;

    static
    {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN)
        {
            throw new ExceptionInInitializerError("the bitmap file format is little-endian; this platform is not");
        }
    }

    private final Path file;
    private final FileChannel channel;
    private final FileLock lock;
    private final boolean readOnly;
    private final int regionBytes;
    private final int regionWordShift;
    private final long regionWordMask;
    private final String name;
    private final long granularity;
    private final int granularityShift;
    private final LongSupplier clock;
    private final UnsafeBuffer header;
    private final MappedByteBuffer headerMapping;
    private final OpenState openState;
    private PageSink pageSink;

    private long diskSize;
    private long chunkCount;
    private long wordCount;
    private ByteBuffer[] regionBuffers;
    private UnsafeBuffer[] regions;
    private UnsafeBuffer level1;
    private long level1Words;
    private UnsafeBuffer level2;
    private long level2Words;
    /** Lazily zeroed backing of an anonymous bitmap's level 0 above the scratch threshold, else null. */
    private ScratchFile dataScratch;
    /** Lazily zeroed backing of levels 1 and 2 above the scratch threshold, else null (direct memory). */
    private ScratchFile levelScratch;
    private MappedByteBuffer level1Mapping;
    private MappedByteBuffer level2Mapping;
    /** The summary area, mapped only while a clean close writes it (see {@link MappedPageSink}). */
    private MappedByteBuffer summaryMapping;
    /** False while a background rebuild runs: readers then treat every summary bit as set. */
    private volatile boolean summaryComplete = true;
    private volatile boolean stopRebuild;
    /** Why the last summary rebuild or summary write failed, or null. */
    private volatile Exception summaryFailure;
    private Thread rebuilder;
    private final Path scratchDir;
    private final long scratchThreshold;
    private final LongConsumer rebuildProgress;
    private UnsafeBuffer pages;
    private long pageWords;
    private final AtomicLong summaryDropSequence = new AtomicLong();
    private boolean inconsistent;
    private boolean durable;
    private boolean closed;
    /** {@code !readOnly && !closed}, one field for the hot path. */
    private boolean markable;
    private BitmapView readOnlyView;

    private MappedBitmap(
        final Path file,
        final FileChannel channel,
        final FileLock lock,
        final boolean readOnly,
        final int regionBytes,
        final String name,
        final long granularity,
        final long diskSize,
        final LongSupplier clock,
        final MappedByteBuffer headerMapping,
        final OpenState openState,
        final Options options)
    {
        this.file = file;
        this.scratchDir = options.scratchDir;
        this.scratchThreshold = options.scratchThreshold;
        this.rebuildProgress = options.rebuildProgress;
        this.channel = channel;
        this.lock = lock;
        this.readOnly = readOnly;
        this.regionBytes = regionBytes;
        this.regionWordShift = Integer.numberOfTrailingZeros(regionBytes) - 3;
        this.regionWordMask = (1L << regionWordShift) - 1;
        this.name = name;
        this.granularity = granularity;
        this.granularityShift = Long.numberOfTrailingZeros(granularity);
        this.clock = clock;
        this.headerMapping = headerMapping;
        this.header = headerMapping == null ? null : new UnsafeBuffer(headerMapping);
        this.openState = openState;
        this.markable = !readOnly;
        this.diskSize = diskSize;
        this.chunkCount = BitmapFileDescriptor.chunkCount(diskSize, granularity);
        this.wordCount = BitmapFileDescriptor.wordCount(chunkCount);
    }

    // ------------------------------------------------------------------------------------------------
    // Factories
    // ------------------------------------------------------------------------------------------------

    /**
     * Creates a bitmap in lazily zeroed memory, all clean, for successors and non-persistent bitmaps. It costs
     * about a millisecond whatever its size: the memory (a deleted sparse scratch file, see
     * {@code docs/bitmap-format.md}, "Memory") is taken page by page as bits are set.
     *
     * @param name 1..1023 bytes of UTF-8.
     * @param diskSize bytes of the tracked disk, {@code >= 0}.
     * @param granularity bytes per chunk, a power of two in 512 B..2 GiB.
     * @return the bitmap; {@link #close()} releases it.
     * @throws BitmapArgumentException if an argument is out of range.
     */
    public static MappedBitmap createAnonymous(final String name, final long diskSize, final long granularity)
    {
        return createAnonymous(name, diskSize, granularity, new Options());
    }

    static MappedBitmap createAnonymous(
        final String name, final long diskSize, final long granularity, final Options options)
    {
        checkGeometry(diskSize, granularity);
        BitmapFileDescriptor.encodeName(name);
        final MappedBitmap bitmap = new MappedBitmap(
            null, null, null, false, options.regionBytes, name, granularity, diskSize, options.clock, null,
            OpenState.ANONYMOUS, options);
        try
        {
            bitmap.allocateAnonymousRegions();
            bitmap.allocateLevels();
        }
        catch (final RuntimeException ex)
        {
            bitmap.unmapAll();
            throw ex;
        }
        return bitmap;
    }

    /**
     * Creates a new bitmap file, all clean, and opens it.
     *
     * @param file where; must not exist.
     * @param name 1..1023 bytes of UTF-8.
     * @param diskSize bytes of the tracked disk, {@code >= 0}.
     * @param granularity bytes per chunk, a power of two in 512 B..2 GiB.
     * @return the open bitmap, in use and locked until {@link #close()}.
     * @throws BitmapArgumentException if an argument is out of range.
     * @throws BitmapFileException if the file exists or is held by another process.
     * @throws IOException if the file cannot be written.
     */
    public static MappedBitmap create(final Path file, final String name, final long diskSize, final long granularity)
        throws IOException
    {
        return create(file, name, diskSize, granularity, new Options());
    }

    static MappedBitmap create(
        final Path file, final String name, final long diskSize, final long granularity, final Options options)
        throws IOException
    {
        checkGeometry(diskSize, granularity);
        final byte[] nameBytes = BitmapFileDescriptor.encodeName(name);
        final FileChannel channel;
        try
        {
            channel = FileChannel.open(
                file, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ, StandardOpenOption.WRITE);
        }
        catch (final FileAlreadyExistsException ex)
        {
            throw new BitmapFileException(BitmapError.ALREADY_EXISTS, file, "a file already exists there");
        }
        boolean done = false;
        FileLock lock = null;
        try
        {
            lock = lockExclusive(file, channel);
            final long chunks = BitmapFileDescriptor.chunkCount(diskSize, granularity);
            final ByteBuffer headerBytes = ByteBuffer.allocate(BitmapFileDescriptor.HEADER_LENGTH);
            final UnsafeBuffer newHeader = new UnsafeBuffer(headerBytes);
            BitmapFileDescriptor.writeNewHeader(newHeader, nameBytes, diskSize, granularity, options.clock.getAsLong());
            BitmapFileDescriptor.sealCrc(newHeader);
            writeFully(channel, headerBytes, 0);
            writeFully(channel, ByteBuffer.allocate(1), BitmapFileDescriptor.fileLength(chunks) - 1);
            channel.force(true);
            final MappedBitmap bitmap = mapOpened(
                file, channel, lock, false, name, granularity, diskSize, OpenState.CREATED, options);
            done = true;
            return bitmap;
        }
        finally
        {
            if (!done)
            {
                closeQuietly(lock, channel);
                Files.deleteIfExists(file);
            }
        }
    }

    /**
     * Opens an existing bitmap file for marking, applying the trust rule (see {@link OpenState}).
     *
     * @param file the bitmap file.
     * @return the open bitmap, in use and locked until {@link #close()}.
     * @throws BitmapFileException if the file is malformed or held by another process; the file is then
     *         unchanged.
     * @throws IOException if the file cannot be read.
     */
    public static MappedBitmap open(final Path file) throws IOException
    {
        return open(file, false, new Options());
    }

    /**
     * Opens an existing bitmap file for reading only: the file is not changed at all (no generation bump,
     * no in-use mark); mutators throw {@link IllegalStateException}. {@link #openState()} reports what a
     * writable open would find.
     *
     * @param file the bitmap file.
     * @return the bitmap, locked shared until {@link #close()}.
     * @throws BitmapFileException if the file is malformed or held by a writer.
     * @throws IOException if the file cannot be read.
     */
    public static MappedBitmap openReadOnly(final Path file) throws IOException
    {
        return open(file, true, new Options());
    }

    static MappedBitmap open(final Path file, final boolean readOnly, final Options options) throws IOException
    {
        final FileChannel channel = readOnly ?
            FileChannel.open(file, StandardOpenOption.READ) :
            FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        boolean done = false;
        FileLock lock = null;
        try
        {
            lock = readOnly ? lockShared(file, channel) : lockExclusive(file, channel);
            final long fileLength = channel.size();
            final ByteBuffer headerBytes = ByteBuffer.allocate(BitmapFileDescriptor.HEADER_LENGTH);
            int read = 0;
            while (headerBytes.hasRemaining())
            {
                final int n = channel.read(headerBytes, read);
                if (n < 0)
                {
                    break;
                }
                read += n;
            }
            final UnsafeBuffer onDisk = new UnsafeBuffer(headerBytes);
            BitmapFileDescriptor.validate(file, onDisk, read, fileLength);
            final long granularity = onDisk.getLong(BitmapFileDescriptor.GRANULARITY_OFFSET, ByteOrder.LITTLE_ENDIAN);
            final long diskSize = onDisk.getLong(BitmapFileDescriptor.DISK_SIZE_OFFSET, ByteOrder.LITTLE_ENDIAN);
            final String name = BitmapFileDescriptor.decodeName(onDisk);
            final int flags = onDisk.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
            final OpenState state = trustRule(flags, BitmapFileDescriptor.bootId(onDisk), options.bootId);
            final MappedBitmap bitmap = mapOpened(
                file, channel, lock, readOnly, name, granularity, diskSize, state, options);
            done = true;
            return bitmap;
        }
        finally
        {
            if (!done)
            {
                closeQuietly(lock, channel);
            }
        }
    }

    /**
     * The trust rule of invariant I5, as a pure function.
     *
     * @param flags the header flags found on open.
     * @param storedBootId the boot id the previous holder recorded.
     * @param currentBootId this boot's id.
     * @return the state the bitmap opens in.
     */
    static OpenState trustRule(final int flags, final UUID storedBootId, final UUID currentBootId)
    {
        if ((flags & BitmapFileDescriptor.FLAG_INCONSISTENT) != 0)
        {
            return OpenState.INCONSISTENT;
        }
        if ((flags & BitmapFileDescriptor.FLAG_IN_USE) == 0)
        {
            return OpenState.CLEAN;
        }
        if (!BootId.UNKNOWN.equals(currentBootId) && currentBootId.equals(storedBootId))
        {
            return OpenState.TRUSTED_SAME_BOOT;
        }
        return (flags & BitmapFileDescriptor.FLAG_DURABLE) != 0 ? OpenState.TRUSTED_DURABLE : OpenState.INCONSISTENT;
    }

    private static MappedBitmap mapOpened(
        final Path file,
        final FileChannel channel,
        final FileLock lock,
        final boolean readOnly,
        final String name,
        final long granularity,
        final long diskSize,
        final OpenState state,
        final Options options) throws IOException
    {
        final MappedByteBuffer headerMapping = channel.map(
            readOnly ? FileChannel.MapMode.READ_ONLY : FileChannel.MapMode.READ_WRITE,
            0, BitmapFileDescriptor.HEADER_LENGTH);
        final MappedBitmap bitmap = new MappedBitmap(
            file, channel, lock, readOnly, options.regionBytes, name, granularity, diskSize, options.clock,
            headerMapping, state, options);
        bitmap.pageSink = options.sinkDecorator.apply(bitmap.new MappedPageSink());
        final boolean rebuild;
        try
        {
            bitmap.mapRegions();
            final int flags = bitmap.header.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
            // A new file is all zero. A clean close left an exact summary, which every open for writing
            // disowns (below) before a bit can change; anything else is rebuilt from the data.
            final boolean summaryOnDisk = BitmapFileDescriptor.hasSummary(bitmap.header) &&
                (flags & BitmapFileDescriptor.FLAG_IN_USE) == 0 &&
                channel.size() >= BitmapFileDescriptor.fileLength(bitmap.chunkCount);
            if (summaryOnDisk && state != OpenState.CREATED && !readOnly)
            {
                bitmap.mapSummaryPrivate();
            }
            else
            {
                bitmap.allocateLevels();
                if (summaryOnDisk && state != OpenState.CREATED)
                {
                    bitmap.loadSummary();
                }
            }
            rebuild = state != OpenState.CREATED && !summaryOnDisk;
            bitmap.durable = (flags & BitmapFileDescriptor.FLAG_DURABLE) != 0;
            bitmap.inconsistent = state == OpenState.INCONSISTENT;
            if (!readOnly)
            {
                bitmap.markOpened(options.bootId);
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            bitmap.unmapAll();
            throw ex;
        }
        if (rebuild)
        {
            bitmap.startRebuild();
        }
        return bitmap;
    }

    private void markOpened(final UUID bootId)
    {
        int flags = header.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
        flags |= BitmapFileDescriptor.FLAG_IN_USE;
        if (inconsistent)
        {
            flags |= BitmapFileDescriptor.FLAG_INCONSISTENT;
        }
        header.putInt(BitmapFileDescriptor.FLAGS_OFFSET, flags, ByteOrder.LITTLE_ENDIAN);
        header.putLong(BitmapFileDescriptor.GENERATION_OFFSET,
            header.getLong(BitmapFileDescriptor.GENERATION_OFFSET, ByteOrder.LITTLE_ENDIAN) + 1,
            ByteOrder.LITTLE_ENDIAN);
        header.putLong(BitmapFileDescriptor.OPEN_TIME_OFFSET, clock.getAsLong(), ByteOrder.LITTLE_ENDIAN);
        // From now on the data may change without the persisted summary following: disown it.
        BitmapFileDescriptor.clearSummaryFields(header);
        BitmapFileDescriptor.putBootId(header, bootId);
        BitmapFileDescriptor.sealCrc(header);
        // The in-use mark must reach storage before any bit does, or a power loss could leave set-but-unforced
        // bits in a file that claims a clean close.
        pageSink.forceHeader();
    }

    // ------------------------------------------------------------------------------------------------
    // Marking (any thread)
    // ------------------------------------------------------------------------------------------------

    @Override
    public boolean mark(final long offset, final long length)
    {
        if (!markable || offset < 0 || length <= 0 || offset >= diskSize || length > diskSize - offset)
        {
            checkWritable();
            throw outOfRange("mark", offset, length);
        }
        final long firstChunk = offset >>> granularityShift;
        final long lastChunk = (offset + length - 1) >>> granularityShift;
        final long word = firstChunk >>> 6;
        if (word == lastChunk >>> 6)
        {
            // The common case: a guest write within 64 chunks of one word.
            return setBitsVolatile(word, (-1L << firstChunk) & (-1L >>> (63 - (lastChunk & 63))));
        }
        return markChunks(firstChunk, lastChunk);
    }

    /**
     * Marks chunks {@code [firstChunk, lastChunk]} (both inclusive, already validated).
     *
     * @return whether any bit went from 0 to 1.
     */
    boolean markChunks(final long firstChunk, final long lastChunk)
    {
        final long firstWord = firstChunk >>> 6;
        final long lastWord = lastChunk >>> 6;
        final long lastMask = -1L >>> (63 - (lastChunk & 63));
        if (firstWord == lastWord)
        {
            return setBitsVolatile(firstWord, (-1L << firstChunk) & lastMask);
        }
        boolean changed = setBitsVolatile(firstWord, -1L << firstChunk);
        for (long word = firstWord + 1; word < lastWord; word++)
        {
            changed |= setBitsVolatile(word, -1L);
        }
        changed |= setBitsVolatile(lastWord, lastMask);
        return changed;
    }

    /**
     * Sets {@code mask} in data word {@code word}: read first, CAS only when a target bit is clear; then
     * notes the page and makes sure the summary bits are set.
     */
    private boolean setBitsVolatile(final long word, final long mask)
    {
        final UnsafeBuffer region = regions[(int)(word >>> regionWordShift)];
        final int index = (int)((word & regionWordMask) << 3);
        long old = region.getLongVolatile(index);
        boolean changed = false;
        while ((old & mask) != mask)
        {
            if (region.compareAndSetLong(index, old, old | mask))
            {
                changed = true;
                if (pages != null)
                {
                    setBitIfClearVolatile(pages, word >>> WORDS_PER_PAGE_SHIFT);
                }
                break;
            }
            old = region.getLongVolatile(index);
        }
        // Even when the bits were already set: another marker may not have reached the summary yet.
        final long level1Mask = 1L << word;
        if ((level1.getLongVolatile((int)((word >>> 6) << 3)) & level1Mask) == 0)
        {
            setBitIfClearVolatile(level1, word);
        }
        final long level1Word = word >>> 6;
        if ((level2.getLongVolatile((int)((level1Word >>> 6) << 3)) & (1L << level1Word)) == 0)
        {
            setBitIfClearVolatile(level2, level1Word);
        }
        return changed;
    }

    private static void setBitIfClearVolatile(final UnsafeBuffer level, final long bit)
    {
        final int index = (int)((bit >>> 6) << 3);
        final long mask = 1L << bit;
        long old = level.getLongVolatile(index);
        while ((old & mask) == 0)
        {
            if (level.compareAndSetLong(index, old, old | mask))
            {
                return;
            }
            old = level.getLongVolatile(index);
        }
    }

    private static void clearBitVolatile(final UnsafeBuffer level, final long bit)
    {
        final int index = (int)((bit >>> 6) << 3);
        final long mask = 1L << bit;
        long old = level.getLongVolatile(index);
        while ((old & mask) != 0)
        {
            if (level.compareAndSetLong(index, old, old & ~mask))
            {
                return;
            }
            old = level.getLongVolatile(index);
        }
    }

    private long dataWordVolatile(final long word)
    {
        return regions[(int)(word >>> regionWordShift)].getLongVolatile((int)((word & regionWordMask) << 3));
    }

    private long dataWordPlain(final long word)
    {
        return regions[(int)(word >>> regionWordShift)].getLong((int)((word & regionWordMask) << 3));
    }

    // ------------------------------------------------------------------------------------------------
    // Clearing and merging (controlling thread, concurrent with markers)
    // ------------------------------------------------------------------------------------------------

    /**
     * QEMU's reset of a byte range; whole words inside the range are visited only where the summary says
     * they may be non-zero, so the cost is in proportion to the dirty words in the range. Controlling
     * thread, concurrently with marks and merges, as {@link #clearAll()}.
     */
    @Override
    public void clear(final long offset, final long length)
    {
        checkWritable();
        if (offset < 0 || length < 0 || offset > diskSize || length > diskSize - offset)
        {
            throw outOfRange("clear", offset, length);
        }
        final long end = offset + length;
        final long firstChunk = (offset + granularity - 1) >>> granularityShift;
        final long endChunk = end == diskSize ? chunkCount : end >>> granularityShift;
        if (firstChunk < endChunk)
        {
            clearChunks(firstChunk, endChunk - 1);
        }
    }

    private void clearChunks(final long firstChunk, final long lastChunk)
    {
        final long firstWord = firstChunk >>> 6;
        final long lastWord = lastChunk >>> 6;
        final long lastMask = -1L >>> (63 - (lastChunk & 63));
        if (firstWord == lastWord)
        {
            clearBitsVolatile(firstWord, (-1L << firstChunk) & lastMask);
            return;
        }
        clearBitsVolatile(firstWord, -1L << firstChunk);
        // Whole words in between: only those the summary says may be non-zero.
        long word = nextNonZeroWordCandidate(firstWord + 1);
        while (word >= 0 && word < lastWord)
        {
            clearBitsVolatile(word, -1L);
            word = nextNonZeroWordCandidate(word + 1);
        }
        clearBitsVolatile(lastWord, lastMask);
    }

    private void clearBitsVolatile(final long word, final long mask)
    {
        final UnsafeBuffer region = regions[(int)(word >>> regionWordShift)];
        final int index = (int)((word & regionWordMask) << 3);
        long old = region.getLongVolatile(index);
        while ((old & mask) != 0)
        {
            if (region.compareAndSetLong(index, old, old & ~mask))
            {
                if ((old & ~mask) == 0)
                {
                    dropSummaryBits(word);
                }
                return;
            }
            old = region.getLongVolatile(index);
        }
    }

    /**
     * Clears the summary bits of a data word that became zero, re-setting them if a marker raced in. While
     * it runs the drop sequence is odd, so that a search overlapping the moment a summary bit is briefly
     * wrong retries (see {@link #nextSetChunk}).
     */
    private void dropSummaryBits(final long word)
    {
        final long sequence = summaryDropSequence.get();
        summaryDropSequence.set(sequence + 1);
        try
        {
            dropSummaryBitsInsideWindow(word);
        }
        finally
        {
            summaryDropSequence.set(sequence + 2);
        }
    }

    private void dropSummaryBitsInsideWindow(final long word)
    {
        clearBitVolatile(level1, word);
        if (dataWordVolatile(word) != 0)
        {
            setBitIfClearVolatile(level1, word);
            return;
        }
        final long level1Word = word >>> 6;
        final int level1Index = (int)(level1Word << 3);
        if (level1.getLongVolatile(level1Index) == 0)
        {
            clearBitVolatile(level2, level1Word);
            if (level1.getLongVolatile(level1Index) != 0)
            {
                setBitIfClearVolatile(level2, level1Word);
            }
        }
    }

    /**
     * Clears every bit, visiting only the words the summary says may be non-zero: time in proportion to the
     * dirty words, no copy, no allocation. Controlling thread; marks and merges may continue meanwhile (a
     * bit they set during the clear may or may not survive it; the engine swaps bitmaps at a cut where it
     * needs an exact one).
     */
    @Override
    public void clearAll()
    {
        checkWritable();
        long word = nextNonZeroWordCandidate(0);
        while (word >= 0)
        {
            clearBitsVolatile(word, -1L);
            word = nextNonZeroWordCandidate(word + 1);
        }
    }

    /**
     * ORs {@code source} into this bitmap. With the same granularity and a {@code MappedBitmap} source (or
     * its read-only view) it walks the source's summary and ORs each non-zero source word in with the
     * marker's compare-and-set path: time in proportion to the source's dirty words, no allocation, and safe
     * on any thread while other threads mark this bitmap or the source, read either, merge into this bitmap
     * or clear it (bits the source gains during the merge may or may not be copied). With another
     * granularity it walks the source's dirty extents and marks each chunk they touch, with the same safety.
     * Not while this bitmap is being resized or closed.
     *
     * @throws BitmapArgumentException if the disk sizes differ; this bitmap is then unchanged.
     */
    @Override
    public void merge(final BitmapView source)
    {
        checkWritable();
        Objects.requireNonNull(source, "source");
        if (source.diskSize() != diskSize)
        {
            throw new BitmapArgumentException(BitmapError.SIZE_MISMATCH,
                "bitmaps are of different sizes (destination '" + name + "' size is " + diskSize +
                ", source '" + source.name() + "' size is " + source.diskSize() + ") and can't be merged");
        }
        final MappedBitmap other = source instanceof ReadOnlyView ? ((ReadOnlyView)source).bitmap :
            source instanceof MappedBitmap ? (MappedBitmap)source : null;
        if (other == this)
        {
            return;
        }
        if (other != null && other.granularity == granularity)
        {
            long word = other.nextNonZeroWordCandidate(0);
            while (word >= 0)
            {
                final long bits = other.dataWordVolatile(word);
                if (bits != 0)
                {
                    setBitsVolatile(word, bits);
                }
                word = other.nextNonZeroWordCandidate(word + 1);
            }
            return;
        }
        // Another granularity: mark every chunk of ours that a dirty source extent touches.
        source.forEachDirtyExtent(0, diskSize, (offset, length) ->
        {
            markChunks(offset >>> granularityShift, (offset + length - 1) >>> granularityShift);
            return true;
        });
    }

    // ------------------------------------------------------------------------------------------------
    // Reading (any thread)
    // ------------------------------------------------------------------------------------------------

    @Override
    public String name()
    {
        return name;
    }

    @Override
    public long granularity()
    {
        return granularity;
    }

    @Override
    public long diskSize()
    {
        return diskSize;
    }

    @Override
    public long chunkCount()
    {
        return chunkCount;
    }

    /** @return QEMU's word count, {@code max(1, ceil(chunkCount / 64))}. */
    public long wordCount()
    {
        return wordCount;
    }

    @Override
    public boolean isDirty(final long offset)
    {
        if (offset < 0 || offset >= diskSize)
        {
            throw new BitmapArgumentException(BitmapError.OUT_OF_RANGE,
                "offset " + offset + " is outside the disk of bitmap '" + name + "' (size " + diskSize + ")");
        }
        final long chunk = offset >>> granularityShift;
        return (dataWordVolatile(chunk >>> 6) & (1L << chunk)) != 0;
    }

    @Override
    public long nextDirty(final long offset)
    {
        checkSearchOffset(offset);
        if (offset == diskSize)
        {
            return -1;
        }
        final long chunk = nextSetChunk(offset >>> granularityShift);
        return chunk < 0 ? -1 : Math.max(chunk << granularityShift, offset);
    }

    @Override
    public long nextClean(final long offset)
    {
        checkSearchOffset(offset);
        if (offset == diskSize)
        {
            return -1;
        }
        final long chunk = nextClearChunk(offset >>> granularityShift, chunkCount);
        return chunk >= chunkCount ? -1 : Math.max(chunk << granularityShift, offset);
    }

    @Override
    public void forEachDirtyExtent(final long offset, final long length, final ExtentConsumer consumer)
    {
        if (offset < 0 || length < 0 || offset > diskSize || length > diskSize - offset)
        {
            throw outOfRange("walk", offset, length);
        }
        if (length == 0)
        {
            return;
        }
        final long end = offset + length;
        final long endChunk = ((end - 1) >>> granularityShift) + 1;
        long chunk = offset >>> granularityShift;
        while (chunk < endChunk)
        {
            final long dirty = nextSetChunk(chunk);
            if (dirty < 0 || dirty >= endChunk)
            {
                return;
            }
            final long clean = nextClearChunk(dirty + 1, endChunk);
            final long start = Math.max(dirty << granularityShift, offset);
            final long stop = Math.min(clean << granularityShift, end);
            if (!consumer.accept(start, stop - start))
            {
                return;
            }
            chunk = clean + 1;
        }
    }

    /**
     * @param fromChunk first chunk to look at.
     * @return the first dirty chunk at or after {@code fromChunk}, or -1.
     */
    long nextSetChunk(final long fromChunk)
    {
        while (true)
        {
            final long sequence = summaryDropSequence.get();
            if ((sequence & 1) != 0)
            {
                Thread.onSpinWait();
                continue;
            }
            final long found = nextSetChunkOnce(fromChunk);
            if (summaryDropSequence.get() == sequence)
            {
                return found;
            }
        }
    }

    private long nextSetChunkOnce(final long fromChunk)
    {
        if (fromChunk >= chunkCount)
        {
            return -1;
        }
        long word = fromChunk >>> 6;
        long bits = dataWordVolatile(word) & (-1L << fromChunk);
        while (bits == 0)
        {
            word = nextNonZeroWordCandidate(word + 1);
            if (word < 0)
            {
                return -1;
            }
            bits = dataWordVolatile(word);
        }
        return (word << 6) + Long.numberOfTrailingZeros(bits);
    }

    /**
     * @return the first clean chunk in {@code [fromChunk, limitChunk)}, or {@code limitChunk} if none.
     */
    long nextClearChunk(final long fromChunk, final long limitChunk)
    {
        if (fromChunk >= limitChunk)
        {
            return limitChunk;
        }
        long word = fromChunk >>> 6;
        long bits = ~dataWordVolatile(word) & (-1L << fromChunk);
        while (bits == 0)
        {
            word++;
            if ((word << 6) >= limitChunk)
            {
                return limitChunk;
            }
            bits = ~dataWordVolatile(word);
        }
        return Math.min(limitChunk, (word << 6) + Long.numberOfTrailingZeros(bits));
    }

    /** @return the first data word at or after {@code fromWord} whose level-1 bit is set, or -1. */
    private long nextNonZeroWordCandidate(final long fromWord)
    {
        if (fromWord >= wordCount)
        {
            return -1;
        }
        if (!summaryComplete)
        {
            // A rebuild is running: until it ends, every word is a candidate.
            return fromWord;
        }
        long level1Word = fromWord >>> 6;
        long bits = level1.getLongVolatile((int)(level1Word << 3)) & (-1L << fromWord);
        while (bits == 0)
        {
            level1Word = nextLevel2Candidate(level1Word + 1);
            if (level1Word < 0)
            {
                return -1;
            }
            bits = level1.getLongVolatile((int)(level1Word << 3));
        }
        return (level1Word << 6) + Long.numberOfTrailingZeros(bits);
    }

    /** @return the first level-1 word at or after {@code fromLevel1Word} whose level-2 bit is set, or -1. */
    private long nextLevel2Candidate(final long fromLevel1Word)
    {
        if (fromLevel1Word >= level1Words)
        {
            return -1;
        }
        long level2Word = fromLevel1Word >>> 6;
        long bits = level2.getLongVolatile((int)(level2Word << 3)) & (-1L << fromLevel1Word);
        while (bits == 0)
        {
            level2Word++;
            if (level2Word >= level2Words)
            {
                return -1;
            }
            bits = level2.getLongVolatile((int)(level2Word << 3));
        }
        return (level2Word << 6) + Long.numberOfTrailingZeros(bits);
    }

    @Override
    public long dirtyChunkCount()
    {
        long count = 0;
        if (!summaryComplete)
        {
            for (long word = 0; word < wordCount; word++)
            {
                count += Long.bitCount(dataWordPlain(word));
            }
            return count;
        }
        for (long level2Word = 0; level2Word < level2Words; level2Word++)
        {
            long bits2 = level2.getLongVolatile((int)(level2Word << 3));
            while (bits2 != 0)
            {
                final long level1Word = (level2Word << 6) + Long.numberOfTrailingZeros(bits2);
                bits2 &= bits2 - 1;
                long bits1 = level1.getLongVolatile((int)(level1Word << 3));
                if (bits1 == -1L)
                {
                    // 64 candidate words in a row, all in one region (regions hold a multiple of 64 words).
                    final long firstWord = level1Word << 6;
                    final UnsafeBuffer region = regions[(int)(firstWord >>> regionWordShift)];
                    final int firstIndex = (int)((firstWord & regionWordMask) << 3);
                    for (int i = 0; i < 64 * Long.BYTES; i += Long.BYTES)
                    {
                        count += Long.bitCount(region.getLong(firstIndex + i));
                    }
                    continue;
                }
                while (bits1 != 0)
                {
                    final long word = (level1Word << 6) + Long.numberOfTrailingZeros(bits1);
                    bits1 &= bits1 - 1;
                    count += Long.bitCount(dataWordPlain(word));
                }
            }
        }
        return count;
    }

    @Override
    public long dirtyByteCount()
    {
        return dirtyChunkCount() << granularityShift;
    }

    /**
     * QEMU's digest of the level-0 words, streamed: a 32 KiB piece whose level-2 summary word is zero is
     * fed from a constant zero array without touching the mapping (so a sparse file stays sparse), any
     * other piece is copied from the mapping into a 32 KiB array. Safe on any thread while markers run; not
     * a snapshot.
     */
    @Override
    public byte[] sha256()
    {
        final MessageDigest digest;
        try
        {
            digest = MessageDigest.getInstance("SHA-256");
        }
        catch (final NoSuchAlgorithmException ex)
        {
            throw new IllegalStateException("every Java platform must provide SHA-256", ex);
        }
        final long bytes = wordCount * Long.BYTES;
        final byte[] piece = new byte[SHA_PIECE_BYTES];
        final boolean useSummary = summaryComplete;
        for (long position = 0; position < bytes; position += SHA_PIECE_BYTES)
        {
            final int take = (int)Math.min(SHA_PIECE_BYTES, bytes - position);
            // One level-2 word covers 64 * 64 data words: exactly one piece.
            final long sequence = summaryDropSequence.get();
            final boolean zero = useSummary && (sequence & 1) == 0 &&
                level2.getLongVolatile((int)((position / SHA_PIECE_BYTES) << 3)) == 0 &&
                summaryDropSequence.get() == sequence;
            if (zero)
            {
                digest.update(ZERO_PIECE, 0, take);
                continue;
            }
            int done = 0;
            while (done < take)
            {
                final long at = position + done;
                final UnsafeBuffer region = regions[(int)(at / regionBytes)];
                final int index = (int)(at % regionBytes);
                final int length = Math.min(take - done, regionBytes - index);
                region.getBytes(index, piece, done, length);
                done += length;
            }
            digest.update(piece, 0, take);
        }
        return digest.digest();
    }

    /**
     * @param word a data word index below {@link #wordCount()}.
     * @return the word as stored (chunk {@code 64 * word + i} at bit {@code i}), read with volatile semantics.
     */
    public long wordVolatile(final long word)
    {
        if (word < 0 || word >= wordCount)
        {
            throw new BitmapArgumentException(BitmapError.OUT_OF_RANGE,
                "word " + word + " is outside 0.." + (wordCount - 1) + " of bitmap '" + name + "'");
        }
        return dataWordVolatile(word);
    }

    // ------------------------------------------------------------------------------------------------
    // Durability, state and lifecycle (controlling thread)
    // ------------------------------------------------------------------------------------------------

    @Override
    public int force()
    {
        if (pages == null || readOnly || closed)
        {
            return 0;
        }
        int forced = 0;
        long runStart = -1;
        long runLength = 0;
        for (long pageWord = 0; pageWord < pageWords; pageWord++)
        {
            final int index = (int)(pageWord << 3);
            if (pages.getLongVolatile(index) == 0)
            {
                continue;
            }
            long bits = pages.getAndSetLong(index, 0);
            while (bits != 0)
            {
                final int start = Long.numberOfTrailingZeros(bits);
                final int run = Long.numberOfTrailingZeros(~(bits >>> start));
                final long firstPage = (pageWord << 6) + start;
                if (runStart >= 0 && runStart + runLength == firstPage)
                {
                    runLength += run;
                }
                else
                {
                    if (runStart >= 0)
                    {
                        forceDataPages(runStart, runLength);
                    }
                    runStart = firstPage;
                    runLength = run;
                }
                forced += run;
                bits = run == 64 ? 0 : bits & ~(((1L << run) - 1) << start);
            }
        }
        if (runStart >= 0)
        {
            forceDataPages(runStart, runLength);
        }
        return forced;
    }

    private void forceDataPages(final long firstPage, final long pageCount)
    {
        pageSink.forceData(
            BitmapFileDescriptor.HEADER_LENGTH + firstPage * BitmapFileDescriptor.PAGE_SIZE,
            pageCount * BitmapFileDescriptor.PAGE_SIZE);
    }

    /** @return how many data pages have gained bits since the last {@link #force()}. */
    public long pendingPageCount()
    {
        if (pages == null)
        {
            return 0;
        }
        long count = 0;
        for (long pageWord = 0; pageWord < pageWords; pageWord++)
        {
            count += Long.bitCount(pages.getLongVolatile((int)(pageWord << 3)));
        }
        return count;
    }

    @Override
    public boolean isPersistent()
    {
        return file != null;
    }

    @Override
    public boolean isInconsistent()
    {
        return inconsistent;
    }

    /** @return what the trust rule found on open. */
    public OpenState openState()
    {
        return openState;
    }

    /** @return whether the bitmap runs in durable mode (see {@link #setDurable(boolean)}). */
    public boolean isDurable()
    {
        return durable;
    }

    /**
     * Switches durable mode. In durable mode the caller forces pages that gained bits before the guest data
     * they cover is written, so after a power loss the file is trusted; turning it on forces every pending
     * page first. The flag is stored in the header and the header forced.
     *
     * @param durable the new mode.
     */
    public void setDurable(final boolean durable)
    {
        checkWritable();
        if (durable)
        {
            force();
        }
        this.durable = durable;
        if (header != null)
        {
            updateFlags(BitmapFileDescriptor.FLAG_DURABLE, durable);
            pageSink.forceHeader();
        }
    }

    private void updateFlags(final int flag, final boolean set)
    {
        final int flags = header.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
        header.putInt(BitmapFileDescriptor.FLAGS_OFFSET, set ? flags | flag : flags & ~flag, ByteOrder.LITTLE_ENDIAN);
        BitmapFileDescriptor.sealCrc(header);
    }

    /** @return whether the bitmap was opened with {@link #openReadOnly(Path)}. */
    public boolean isReadOnly()
    {
        return readOnly;
    }

    /** @return the backing file, or {@code null} for an anonymous bitmap. */
    public Path file()
    {
        return file;
    }

    /** @return the header's flags word ({@code BitmapFileDescriptor.FLAG_*}), 0 for an anonymous bitmap. */
    public int headerFlags()
    {
        return header == null ? 0 : header.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return how many times the file has been opened for writing (creation counts as the first). */
    public long generation()
    {
        return header == null ? 0 : header.getLong(BitmapFileDescriptor.GENERATION_OFFSET, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return creation time in epoch milliseconds, 0 for an anonymous bitmap. */
    public long creationTimeMillis()
    {
        return header == null ? 0 :
            header.getLong(BitmapFileDescriptor.CREATION_TIME_OFFSET, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return time of the last open for writing in epoch milliseconds, 0 if none. */
    public long openTimeMillis()
    {
        return header == null ? 0 : header.getLong(BitmapFileDescriptor.OPEN_TIME_OFFSET, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return time of the last clean close in epoch milliseconds, 0 if never closed cleanly. */
    public long lastCleanCloseMillis()
    {
        return header == null ? 0 :
            header.getLong(BitmapFileDescriptor.CLEAN_CLOSE_TIME_OFFSET, ByteOrder.LITTLE_ENDIAN);
    }

    /** @return the boot id recorded by the last open for writing, {@code null} for an anonymous bitmap. */
    public UUID bootIdAtOpen()
    {
        return header == null ? null : BitmapFileDescriptor.bootId(header);
    }

    /** @return the file's format version as {@code major.minor}, or the version this code writes. */
    public String formatVersion()
    {
        if (header == null)
        {
            return BitmapFileDescriptor.VERSION_MAJOR + "." + BitmapFileDescriptor.VERSION_MINOR;
        }
        return (header.getShort(BitmapFileDescriptor.VERSION_MAJOR_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF) + "." +
            (header.getShort(BitmapFileDescriptor.VERSION_MINOR_OFFSET, ByteOrder.LITTLE_ENDIAN) & 0xFFFF);
    }

    @Override
    public BitmapView readOnlyView()
    {
        BitmapView view = readOnlyView;
        if (view == null)
        {
            view = new ReadOnlyView(this);
            readOnlyView = view;
        }
        return view;
    }

    /**
     * Copies the bits into a new bitmap file with another name; the inconsistent flag travels with them.
     * Concurrent marks may or may not be copied.
     *
     * @param target where; must not exist.
     * @param newName the copy's name.
     * @return the copy, open; the caller closes it.
     * @throws IOException if the file cannot be created.
     */
    public MappedBitmap copyTo(final Path target, final String newName) throws IOException
    {
        final MappedBitmap copy = create(target, newName, diskSize, granularity);
        copyBitsInto(copy);
        if (inconsistent)
        {
            copy.inconsistent = true;
            copy.updateFlags(BitmapFileDescriptor.FLAG_INCONSISTENT, true);
        }
        copy.force();
        copy.pageSink.forceHeader();
        return copy;
    }

    /**
     * Copies the bits into a new anonymous bitmap. Concurrent marks may or may not be copied.
     *
     * @param newName the copy's name.
     * @return the copy.
     */
    public MappedBitmap copyAnonymous(final String newName)
    {
        final MappedBitmap copy = createAnonymous(newName, diskSize, granularity);
        copyBitsInto(copy);
        copy.inconsistent = inconsistent;
        return copy;
    }

    private void copyBitsInto(final MappedBitmap copy)
    {
        long word = nextNonZeroWordCandidate(0);
        while (word >= 0)
        {
            final long bits = dataWordVolatile(word);
            if (bits != 0)
            {
                copy.setBitsVolatile(word, bits);
            }
            word = nextNonZeroWordCandidate(word + 1);
        }
    }

    /**
     * Changes the tracked disk size with QEMU's semantics: chunks added by growing are clean, chunks past a
     * new, smaller end are dropped. No marker or reader may run meanwhile. Pending pages are forced first.
     *
     * @param newDiskSize the new size in bytes.
     * @throws BitmapArgumentException if the size is negative or too large.
     * @throws IOException if the file cannot be resized.
     */
    public void resize(final long newDiskSize) throws IOException
    {
        checkWritable();
        checkGeometry(newDiskSize, granularity);
        if (newDiskSize == diskSize)
        {
            return;
        }
        final long newChunks = BitmapFileDescriptor.chunkCount(newDiskSize, granularity);
        if (rebuilder != null)
        {
            // The rebuild reads the old geometry: let it finish (the summary then carries over below).
            joinUninterruptibly(rebuilder);
            rebuilder = null;
        }
        if (newChunks < chunkCount)
        {
            // Zero the dropped chunks first so that the words kept, and a later regrowth, start clean.
            clearChunks(newChunks, chunkCount - 1);
        }
        detachLevelsFromFile();
        final long oldChunks = chunkCount;
        final ByteBuffer[] oldBuffers = regionBuffers;
        final UnsafeBuffer[] oldRegions = regions;
        final ScratchFile oldDataScratch = dataScratch;
        final UnsafeBuffer oldLevel1 = level1;
        final UnsafeBuffer oldLevel2 = level2;
        final long oldLevel2Words = level2Words;
        final MappedByteBuffer oldLevel1Mapping = level1Mapping;
        final MappedByteBuffer oldLevel2Mapping = level2Mapping;
        final ScratchFile oldLevelScratch = levelScratch;
        final boolean oldSummaryComplete = summaryComplete;
        if (file == null)
        {
            setGeometry(newDiskSize);
            dataScratch = null;
            allocateAnonymousRegions();
            copyWords(oldRegions, oldLevel1, oldLevel2, oldLevel2Words, oldSummaryComplete, oldChunks);
            for (int r = 0; r < oldBuffers.length && oldDataScratch != null; r++)
            {
                IoUtil.unmap(oldBuffers[r]);
            }
            if (oldDataScratch != null)
            {
                oldDataScratch.close();
            }
        }
        else
        {
            force();
            final long oldDataEnd = BitmapFileDescriptor.dataEnd(oldChunks);
            final long newDataEnd = BitmapFileDescriptor.dataEnd(newChunks);
            final boolean shrinking = newDataEnd < oldDataEnd;
            if (shrinking)
            {
                // Header first: a crash between the two steps leaves a file longer than needed, which opens.
                BitmapFileDescriptor.writeGeometry(header, newDiskSize, granularity);
                BitmapFileDescriptor.sealCrc(header);
                pageSink.forceHeader();
            }
            unmapRegions();
            if (newDataEnd > oldDataEnd)
            {
                // Drop the old summary area first: its bytes must not turn into data words. The header still
                // names the old geometry (and no summary) until the file is long enough for the new one.
                channel.truncate(oldDataEnd);
                writeFully(channel, ByteBuffer.allocate(1), newDataEnd - 1);
            }
            // The summary area is rewritten by the clean close; stale words must not survive in it.
            channel.truncate(newDataEnd);
            channel.force(true);
            setGeometry(newDiskSize);
            mapRegions();
            if (!shrinking)
            {
                BitmapFileDescriptor.writeGeometry(header, newDiskSize, granularity);
                BitmapFileDescriptor.sealCrc(header);
                pageSink.forceHeader();
            }
        }
        // New levels, carrying over the old summary bits of the words kept (O(dirty), no data scan).
        level1Mapping = null;
        level2Mapping = null;
        levelScratch = null;
        allocateLevels();
        if (oldSummaryComplete)
        {
            copySummary(oldLevel1, oldLevel2, oldLevel2Words);
        }
        ScratchFile.unmap(oldLevel1Mapping);
        ScratchFile.unmap(oldLevel2Mapping);
        if (oldLevelScratch != null)
        {
            oldLevelScratch.close();
        }
        if (!oldSummaryComplete)
        {
            // Only a rebuild that could not finish leaves this; try again for the new geometry.
            startRebuild();
        }
    }

    /** Copies the level-1 bits of kept words from old levels into the new ones, setting level 2 to match. */
    private void copySummary(final UnsafeBuffer oldLevel1, final UnsafeBuffer oldLevel2, final long oldLevel2Words)
    {
        for (long level2Word = 0; level2Word < oldLevel2Words; level2Word++)
        {
            long bits2 = oldLevel2.getLong((int)(level2Word << 3));
            while (bits2 != 0)
            {
                final long level1Word = (level2Word << 6) + Long.numberOfTrailingZeros(bits2);
                bits2 &= bits2 - 1;
                if (level1Word >= level1Words)
                {
                    return;
                }
                long bits1 = oldLevel1.getLong((int)(level1Word << 3));
                final long firstWord = level1Word << 6;
                if (firstWord + 64 > wordCount)
                {
                    bits1 &= (1L << (wordCount - firstWord)) - 1;
                }
                if (bits1 != 0)
                {
                    level1.putLong((int)(level1Word << 3), bits1);
                    final int index2 = (int)((level1Word >>> 6) << 3);
                    level2.putLong(index2, level2.getLong(index2) | (1L << level1Word));
                }
            }
        }
    }

    private void setGeometry(final long newDiskSize)
    {
        diskSize = newDiskSize;
        chunkCount = BitmapFileDescriptor.chunkCount(newDiskSize, granularity);
        wordCount = BitmapFileDescriptor.wordCount(chunkCount);
    }

    /** Copies the non-zero words kept by a resize from old anonymous regions, guided by the old summary. */
    private void copyWords(
        final UnsafeBuffer[] from,
        final UnsafeBuffer oldLevel1,
        final UnsafeBuffer oldLevel2,
        final long oldLevel2Words,
        final boolean oldSummaryComplete,
        final long oldChunks)
    {
        final long keptWords = Math.min(BitmapFileDescriptor.wordCount(oldChunks), wordCount);
        long word = 0;
        while (word < keptWords)
        {
            if (oldSummaryComplete)
            {
                final long level1Word = word >>> 6;
                final boolean level2Set = (level1Word >>> 6) < oldLevel2Words &&
                    (oldLevel2.getLong((int)((level1Word >>> 6) << 3)) & (1L << level1Word)) != 0;
                final long bits1 = level2Set ? oldLevel1.getLong((int)(level1Word << 3)) : 0;
                if ((bits1 & (1L << word)) == 0)
                {
                    // Skip to the next word the old summary names (or the next level-1 word).
                    final long rest = bits1 & (-1L << word);
                    word = rest == 0 ? (level1Word + 1) << 6 : (level1Word << 6) + Long.numberOfTrailingZeros(rest);
                    continue;
                }
            }
            final long bits = from[(int)(word >>> regionWordShift)].getLong((int)((word & regionWordMask) << 3));
            if (bits != 0)
            {
                regions[(int)(word >>> regionWordShift)].putLong((int)((word & regionWordMask) << 3), bits);
            }
            word++;
        }
    }

    /**
     * @return whether levels 1 and 2 are complete; false while the background rebuild after an untrusted
     *         open runs (walks, counts, merges and clears are then correct but read every data word).
     */
    public boolean isSummaryComplete()
    {
        return summaryComplete;
    }

    /**
     * @return why the last background summary rebuild, or the last clean close's summary write, failed, or
     *         {@code null}; either failure leaves the bits intact and only costs speed (walks read every
     *         word until a later open rebuilds).
     */
    public Exception summaryFailure()
    {
        return summaryFailure;
    }

    /**
     * Waits until a background summary rebuild has ended; returns at once when none runs. Any thread; marks
     * may continue meanwhile.
     *
     * @return whether the summary is complete (false only if the rebuild failed or the bitmap was closed).
     */
    public boolean awaitSummary()
    {
        final Thread thread = rebuilder;
        if (thread != null && thread != Thread.currentThread())
        {
            joinUninterruptibly(thread);
        }
        return summaryComplete;
    }

    /**
     * Waits at most {@code timeout} for a background summary rebuild to end.
     *
     * @param timeout how long.
     * @param unit its unit.
     * @return whether the summary is complete.
     * @throws InterruptedException if interrupted while waiting.
     */
    public boolean awaitSummary(final long timeout, final TimeUnit unit) throws InterruptedException
    {
        final Thread thread = rebuilder;
        if (thread != null)
        {
            thread.join(Math.max(1, unit.toMillis(timeout)));
        }
        return summaryComplete;
    }

    /**
     * Checks the structure: bits past the last chunk and padding past the last word are zero, and every
     * summary bit agrees with the data. Waits for a running summary rebuild first. Meaningful only while no
     * marker or clearer runs; reads every data word.
     *
     * @return the problems found, empty if none.
     */
    public List<String> checkConsistency()
    {
        awaitSummary();
        final List<String> problems = new ArrayList<>();
        final long tailBits = chunkCount & 63;
        if (chunkCount == 0 && dataWordPlain(0) != 0)
        {
            problems.add("data word 0 is non-zero but the bitmap has no chunks");
        }
        else if (tailBits != 0)
        {
            final long last = dataWordPlain(wordCount - 1);
            if ((last & (-1L << tailBits)) != 0)
            {
                problems.add(String.format("data word %d has bits set past the last chunk %d: 0x%016x",
                    wordCount - 1, chunkCount - 1, last));
            }
        }
        final long wordsInArea = BitmapFileDescriptor.dataAreaLength(chunkCount) / Long.BYTES;
        for (long word = wordCount; word < wordsInArea && file != null; word++)
        {
            if (dataWordPlain(word) != 0)
            {
                problems.add("padding word " + word + " (file offset " +
                    (BitmapFileDescriptor.HEADER_LENGTH + word * Long.BYTES) + ") is not zero");
                break;
            }
        }
        for (long word = 0; word < wordCount && problems.size() < 20; word++)
        {
            final boolean dataNonZero = dataWordPlain(word) != 0;
            final boolean summary = (level1.getLong((int)((word >>> 6) << 3)) & (1L << word)) != 0;
            if (dataNonZero != summary)
            {
                problems.add("level-1 bit " + word + " is " + (summary ? 1 : 0) + " but data word " + word + " is " +
                    (dataNonZero ? "non-zero" : "zero"));
            }
        }
        for (long word = 0; word < level1Words && problems.size() < 20; word++)
        {
            final boolean nonZero = level1.getLong((int)(word << 3)) != 0;
            final boolean summary = (level2.getLong((int)((word >>> 6) << 3)) & (1L << word)) != 0;
            if (nonZero != summary)
            {
                problems.add("level-2 bit " + word + " is " + (summary ? 1 : 0) + " but level-1 word " + word + " is " +
                    (nonZero ? "non-zero" : "zero"));
            }
        }
        long flatCount = 0;
        for (long word = 0; word < wordCount; word++)
        {
            flatCount += Long.bitCount(dataWordPlain(word));
        }
        final long summaryCount = dirtyChunkCount();
        if (flatCount != summaryCount)
        {
            problems.add("dirty count through the summary is " + summaryCount + " but a flat scan counts " + flatCount);
        }
        return problems;
    }

    /**
     * Closes the bitmap. For a writable file: stops a running summary rebuild, forces every pending page,
     * writes levels 1 and 2 into the summary area and forces them (cost in proportion to the dirty part plus
     * a flat level 2), then clears the in-use mark, records the clean-close time and the summary fields and
     * forces the header; then unmaps and releases the lock. No marker may run meanwhile. Idempotent.
     */
    @Override
    public void close()
    {
        if (closed)
        {
            return;
        }
        try
        {
            stopRebuild();
            if (file != null && !readOnly)
            {
                force();
                // The summary goes to storage before the header that vouches for it; an unfinished rebuild or
                // a failed write leaves the summary fields zero, and the next open rebuilds.
                boolean summaryWritten = false;
                if (summaryComplete)
                {
                    try
                    {
                        writeSummary();
                        summaryWritten = true;
                    }
                    catch (final IOException | RuntimeException ex)
                    {
                        // Not an error for the bits: the file closes without a summary on record and the
                        // next open rebuilds it. The library writes no logs; the cause is kept for callers.
                        summaryFailure = ex;
                    }
                }
                final int flags = header.getInt(BitmapFileDescriptor.FLAGS_OFFSET, ByteOrder.LITTLE_ENDIAN);
                header.putInt(BitmapFileDescriptor.FLAGS_OFFSET, flags & ~BitmapFileDescriptor.FLAG_IN_USE,
                    ByteOrder.LITTLE_ENDIAN);
                header.putLong(BitmapFileDescriptor.CLEAN_CLOSE_TIME_OFFSET, clock.getAsLong(), ByteOrder.LITTLE_ENDIAN);
                if (summaryWritten)
                {
                    BitmapFileDescriptor.writeSummaryFields(header, chunkCount);
                }
                BitmapFileDescriptor.sealCrc(header);
                pageSink.forceHeader();
            }
        }
        finally
        {
            closed = true;
            markable = false;
            unmapAll();
            closeQuietly(lock, channel);
        }
    }

    /** @return whether {@link #close()} has run. */
    public boolean isClosed()
    {
        return closed;
    }

    @Override
    public String toString()
    {
        return "MappedBitmap{name='" + name + "', diskSize=" + diskSize + ", granularity=" + granularity +
            ", file=" + file + ", state=" + openState + "}";
    }

    // ------------------------------------------------------------------------------------------------
    // Storage
    // ------------------------------------------------------------------------------------------------

    private void allocateAnonymousRegions()
    {
        final long bytes = wordCount * Long.BYTES;
        final int regionCount = (int)((bytes + regionBytes - 1) / regionBytes);
        regionBuffers = new ByteBuffer[regionCount];
        regions = new UnsafeBuffer[regionCount];
        final long scratchBytes = BitmapFileDescriptor.align(bytes, BitmapFileDescriptor.PAGE_SIZE);
        if (scratchBytes > scratchThreshold)
        {
            dataScratch = ScratchFile.create(scratchBytes, scratchDir);
        }
        for (int r = 0; r < regionCount; r++)
        {
            final long start = (long)r * regionBytes;
            final int length = (int)Math.min(regionBytes, bytes - start);
            regionBuffers[r] = dataScratch != null ? dataScratch.map(start, length) :
                BufferUtil.allocateDirectAligned(length, 64);
            regions[r] = new UnsafeBuffer(regionBuffers[r]);
        }
    }

    /**
     * Allocates levels 1 and 2 for the current geometry, all zero, in direct memory when small and in a
     * lazily zeroed scratch file when large (level 1 is 1/64 of the data: 32 MiB for 2 GiB).
     */
    private void allocateLevels()
    {
        level1Words = BitmapFileDescriptor.level1Words(chunkCount);
        level2Words = BitmapFileDescriptor.level2Words(chunkCount);
        final long level1Bytes = BitmapFileDescriptor.align(level1Words * Long.BYTES, BitmapFileDescriptor.PAGE_SIZE);
        final long level2Bytes = BitmapFileDescriptor.align(level2Words * Long.BYTES, BitmapFileDescriptor.PAGE_SIZE);
        if (level1Bytes + level2Bytes > scratchThreshold)
        {
            levelScratch = ScratchFile.create(level1Bytes + level2Bytes, scratchDir);
            level1Mapping = levelScratch.map(0, level1Bytes);
            level2Mapping = levelScratch.map(level1Bytes, level2Bytes);
            level1 = new UnsafeBuffer(level1Mapping);
            level2 = new UnsafeBuffer(level2Mapping);
        }
        else
        {
            level1 = new UnsafeBuffer(BufferUtil.allocateDirectAligned((int)level1Bytes, 64));
            level2 = new UnsafeBuffer(BufferUtil.allocateDirectAligned((int)level2Bytes, 64));
        }
    }

    /**
     * Makes the stored summary the live levels without reading it: a private (copy-on-write) mapping of the
     * summary area, so opening costs two {@code mmap} calls; pages are read when first touched and copied
     * when first changed. The file's summary area itself is not written until {@link #writeSummary}.
     */
    private void mapSummaryPrivate() throws IOException
    {
        level1Words = BitmapFileDescriptor.level1Words(chunkCount);
        level2Words = BitmapFileDescriptor.level2Words(chunkCount);
        final long offset = BitmapFileDescriptor.summaryOffset(chunkCount);
        final long level2At = BitmapFileDescriptor.level2OffsetInSummary(chunkCount);
        final long level2Bytes = BitmapFileDescriptor.summaryAreaLength(chunkCount) - level2At;
        level1Mapping = channel.map(FileChannel.MapMode.PRIVATE, offset, level2At);
        level2Mapping = channel.map(FileChannel.MapMode.PRIVATE, offset + level2At, level2Bytes);
        level1 = new UnsafeBuffer(level1Mapping);
        level2 = new UnsafeBuffer(level2Mapping);
    }

    /**
     * Moves levels that are private mappings of the file into scratch memory (copying only what level 2
     * names), so that the file may be truncated under them; for resize.
     */
    private void detachLevelsFromFile()
    {
        if (levelScratch != null || level1Mapping == null)
        {
            return;
        }
        final UnsafeBuffer oldLevel1 = level1;
        final UnsafeBuffer oldLevel2 = level2;
        final MappedByteBuffer oldLevel1Mapping = level1Mapping;
        final MappedByteBuffer oldLevel2Mapping = level2Mapping;
        allocateLevels();
        copySummary(oldLevel1, oldLevel2, level2Words);
        ScratchFile.unmap(oldLevel1Mapping);
        ScratchFile.unmap(oldLevel2Mapping);
    }

    private void releaseLevels()
    {
        if (level1 != null)
        {
            // Empty buffers left behind make a late access fail with a bounds error, not a crash.
            level1.wrap(new byte[0]);
            level2.wrap(new byte[0]);
        }
        ScratchFile.unmap(level1Mapping);
        ScratchFile.unmap(level2Mapping);
        level1Mapping = null;
        level2Mapping = null;
        if (levelScratch != null)
        {
            levelScratch.close();
            levelScratch = null;
        }
    }

    /**
     * Loads levels 1 and 2 from the summary area a clean close left: level 2 flat (1/4096 of the data),
     * then only the level-1 words level 2 names, so the cost is in proportion to the dirty part.
     */
    private void loadSummary() throws IOException
    {
        final long offset = BitmapFileDescriptor.summaryOffset(chunkCount);
        final long length = BitmapFileDescriptor.summaryAreaLength(chunkCount);
        final long level2At = BitmapFileDescriptor.level2OffsetInSummary(chunkCount);
        final MappedByteBuffer mapping = channel.map(FileChannel.MapMode.READ_ONLY, offset, length);
        try
        {
            final UnsafeBuffer stored = new UnsafeBuffer(mapping);
            for (long level2Word = 0; level2Word < level2Words; level2Word++)
            {
                long bits2 = stored.getLong((int)(level2At + (level2Word << 3)));
                while (bits2 != 0)
                {
                    final long level1Word = (level2Word << 6) + Long.numberOfTrailingZeros(bits2);
                    bits2 &= bits2 - 1;
                    if (level1Word >= level1Words)
                    {
                        break;
                    }
                    final long bits1 = stored.getLong((int)(level1Word << 3));
                    if (bits1 != 0)
                    {
                        level1.putLong((int)(level1Word << 3), bits1);
                        final int index2 = (int)((level1Word >>> 6) << 3);
                        level2.putLong(index2, level2.getLong(index2) | (1L << level1Word));
                    }
                }
            }
        }
        finally
        {
            IoUtil.unmap(mapping);
        }
    }

    /**
     * Writes levels 1 and 2 into the summary area and forces it, for a clean close: every level-2 word, and
     * the level-1 words the new or the stored level 2 names, so that in the file a non-zero level-1 word
     * always has its level-2 bit (what a private mapping on the next open relies on). A word already equal
     * on disk is not written, so a sparse summary stays sparse.
     */
    private void writeSummary() throws IOException
    {
        final long offset = BitmapFileDescriptor.summaryOffset(chunkCount);
        final long length = BitmapFileDescriptor.summaryAreaLength(chunkCount);
        final long level2At = BitmapFileDescriptor.level2OffsetInSummary(chunkCount);
        if (channel.size() < offset + length)
        {
            // A 1.0 file, or one cut short by a resize: extend it sparsely past the data.
            writeFully(channel, ByteBuffer.allocate(1), offset + length - 1);
        }
        final MappedByteBuffer mapping = channel.map(FileChannel.MapMode.READ_WRITE, offset, length);
        summaryMapping = mapping;
        try
        {
            final UnsafeBuffer stored = new UnsafeBuffer(mapping);
            for (long level2Word = 0; level2Word < level2Words; level2Word++)
            {
                final long bits2 = level2.getLong((int)(level2Word << 3));
                final int index2 = (int)(level2At + (level2Word << 3));
                final long storedBits2 = stored.getLong(index2);
                if (storedBits2 != bits2)
                {
                    stored.putLong(index2, bits2);
                }
                // Also the words the file's level 2 named: they must not stay behind, non-zero but unnamed,
                // to be read back by a later private mapping.
                long pending = bits2 | storedBits2;
                while (pending != 0)
                {
                    final long level1Word = (level2Word << 6) + Long.numberOfTrailingZeros(pending);
                    pending &= pending - 1;
                    final int index1 = (int)(level1Word << 3);
                    final long bits1 = level1.getLong(index1);
                    if (stored.getLong(index1) != bits1)
                    {
                        stored.putLong(index1, bits1);
                    }
                }
            }
            // Through the page sink, so that a power-loss simulator knows the summary is durable.
            pageSink.forceData(offset, length);
        }
        finally
        {
            summaryMapping = null;
            IoUtil.unmap(mapping);
        }
    }

    /**
     * Starts the background rebuild of levels 1 and 2 from the data. Until it ends, {@link #summaryComplete}
     * is false and readers treat every summary bit as set (correct, just slower), while markers keep setting
     * their summary bits as always. The rebuild only has to find the bits set before it started (its start
     * happens-before every read it makes): a bit set later is put into the summary by its own marker. It
     * ORs its findings in with CAS, so it never erases a marker's summary bit.
     */
    private void startRebuild()
    {
        summaryComplete = false;
        stopRebuild = false;
        final Thread thread = new Thread(this::rebuildSummary, "tidemark-bitmap-summary-" + name);
        thread.setDaemon(true);
        rebuilder = thread;
        thread.start();
    }

    private void rebuildSummary()
    {
        // pread, not the mapping: reading a hole of a tmpfs file through a mapping allocates the page.
        final ByteBuffer chunk = ByteBuffer.allocateDirect(REBUILD_READ_BYTES);
        final UnsafeBuffer words = new UnsafeBuffer(chunk);
        final long dataBytes = wordCount * Long.BYTES;
        try
        {
            for (long position = 0; position < dataBytes; position += REBUILD_READ_BYTES)
            {
                if (stopRebuild)
                {
                    return;
                }
                final int take = (int)Math.min(REBUILD_READ_BYTES, dataBytes - position);
                chunk.clear().limit(take);
                int read = 0;
                while (read < take)
                {
                    final int n = channel.read(chunk, BitmapFileDescriptor.HEADER_LENGTH + position + read);
                    if (n < 0)
                    {
                        throw new IOException("bitmap file ended at " + (position + read) + " during the summary rebuild");
                    }
                    read += n;
                }
                final long firstWord = position / Long.BYTES;
                final int wordsRead = take / Long.BYTES;
                for (int group = 0; group < wordsRead; group += 64)
                {
                    long mask = 0;
                    final int end = Math.min(wordsRead, group + 64);
                    for (int i = group; i < end; i++)
                    {
                        if (words.getLong(i << 3) != 0)
                        {
                            mask |= 1L << i;
                        }
                    }
                    if (mask != 0)
                    {
                        final long level1Word = (firstWord + group) >>> 6;
                        orBitsVolatile(level1, level1Word, mask);
                        setBitIfClearVolatile(level2, level1Word);
                        dropStaleRebuiltBits(level1Word, mask);
                    }
                }
                if (rebuildProgress != null)
                {
                    rebuildProgress.accept(firstWord + wordsRead);
                }
            }
            summaryComplete = true;
        }
        catch (final IOException | RuntimeException ex)
        {
            // The summary stays "all set": every walk stays correct, only slower. Callers see the cause.
            summaryFailure = ex;
        }
    }

    /**
     * A clear may have zeroed a word between the rebuild's read and its OR: drop such bits again the way a
     * clearer does (clear, then re-read the data and restore if a marker slipped in), so that the rebuilt
     * summary is exact. Readers ignore the summary until the rebuild ends, so no seqlock is needed here.
     */
    private void dropStaleRebuiltBits(final long level1Word, final long mask)
    {
        long pending = mask;
        while (pending != 0)
        {
            final long word = (level1Word << 6) + Long.numberOfTrailingZeros(pending);
            pending &= pending - 1;
            if (dataWordVolatile(word) == 0)
            {
                clearBitVolatile(level1, word);
                if (dataWordVolatile(word) != 0)
                {
                    setBitIfClearVolatile(level1, word);
                }
            }
        }
        final int index1 = (int)(level1Word << 3);
        if (level1.getLongVolatile(index1) == 0)
        {
            clearBitVolatile(level2, level1Word);
            if (level1.getLongVolatile(index1) != 0)
            {
                setBitIfClearVolatile(level2, level1Word);
            }
        }
    }

    private static void orBitsVolatile(final UnsafeBuffer level, final long wordIndex, final long mask)
    {
        final int index = (int)(wordIndex << 3);
        long old = level.getLongVolatile(index);
        while ((old & mask) != mask)
        {
            if (level.compareAndSetLong(index, old, old | mask))
            {
                return;
            }
            old = level.getLongVolatile(index);
        }
    }

    /** Stops a running rebuild and waits for its thread; the summary stays as complete as it was. */
    private void stopRebuild()
    {
        final Thread thread = rebuilder;
        if (thread == null)
        {
            return;
        }
        stopRebuild = true;
        joinUninterruptibly(thread);
        rebuilder = null;
    }

    private static void joinUninterruptibly(final Thread thread)
    {
        boolean interrupted = false;
        while (true)
        {
            try
            {
                thread.join();
                break;
            }
            catch (final InterruptedException ex)
            {
                interrupted = true;
            }
        }
        if (interrupted)
        {
            Thread.currentThread().interrupt();
        }
    }

    private void mapRegions() throws IOException
    {
        final long bytes = BitmapFileDescriptor.dataAreaLength(chunkCount);
        final int regionCount = (int)((bytes + regionBytes - 1) / regionBytes);
        final ByteBuffer[] buffers = new ByteBuffer[regionCount];
        final UnsafeBuffer[] views = new UnsafeBuffer[regionCount];
        final FileChannel.MapMode mode = readOnly ? FileChannel.MapMode.READ_ONLY : FileChannel.MapMode.READ_WRITE;
        try
        {
            for (int r = 0; r < regionCount; r++)
            {
                final long length = Math.min(regionBytes, bytes - (long)r * regionBytes);
                buffers[r] = channel.map(mode, BitmapFileDescriptor.HEADER_LENGTH + (long)r * regionBytes, length);
                views[r] = new UnsafeBuffer(buffers[r]);
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            for (final ByteBuffer buffer : buffers)
            {
                if (buffer != null)
                {
                    IoUtil.unmap(buffer);
                }
            }
            throw ex;
        }
        regionBuffers = buffers;
        regions = views;
        pageWords = (bytes / BitmapFileDescriptor.PAGE_SIZE + 63) >>> 6;
        pages = new UnsafeBuffer(BufferUtil.allocateDirectAligned((int)(pageWords * Long.BYTES), 64));
    }

    private void unmapRegions()
    {
        if (regions == null)
        {
            return;
        }
        for (int r = 0; r < regions.length; r++)
        {
            regions[r].wrap(new byte[0]);
            if (file != null || dataScratch != null)
            {
                IoUtil.unmap(regionBuffers[r]);
            }
        }
        regions = null;
        regionBuffers = null;
        if (dataScratch != null)
        {
            dataScratch.close();
            dataScratch = null;
        }
    }

    private void unmapAll()
    {
        if (regions != null)
        {
            // Leave empty buffers behind so that a late access fails with a bounds error, not a crash.
            final UnsafeBuffer[] old = regions;
            unmapRegions();
            regions = old;
            regionBuffers = new ByteBuffer[0];
        }
        releaseLevels();
        if (headerMapping != null)
        {
            header.wrap(new byte[BitmapFileDescriptor.HEADER_LENGTH]);
            IoUtil.unmap(headerMapping);
        }
    }

    /** Forces data pages through {@link MappedByteBuffer#force(int, int)} on the region mappings. */
    private final class MappedPageSink implements PageSink
    {
        @Override
        public void forceData(final long fileOffset, final long length)
        {
            final MappedByteBuffer summary = summaryMapping;
            if (summary != null && fileOffset >= BitmapFileDescriptor.summaryOffset(chunkCount))
            {
                summary.force((int)(fileOffset - BitmapFileDescriptor.summaryOffset(chunkCount)), (int)length);
                return;
            }
            long offset = fileOffset - BitmapFileDescriptor.HEADER_LENGTH;
            long remaining = length;
            while (remaining > 0)
            {
                final int region = (int)(offset / regionBytes);
                final int index = (int)(offset % regionBytes);
                final MappedByteBuffer buffer = (MappedByteBuffer)regionBuffers[region];
                final int take = (int)Math.min(remaining, buffer.capacity() - index);
                buffer.force(index, take);
                offset += take;
                remaining -= take;
            }
        }

        @Override
        public void forceHeader()
        {
            headerMapping.force();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Checks and helpers
    // ------------------------------------------------------------------------------------------------

    private void checkWritable()
    {
        if (readOnly)
        {
            throw new IllegalStateException("bitmap '" + name + "' was opened read-only");
        }
        if (closed)
        {
            throw new IllegalStateException("bitmap '" + name + "' is closed");
        }
    }

    private void checkSearchOffset(final long offset)
    {
        if (offset < 0 || offset > diskSize)
        {
            throw new BitmapArgumentException(BitmapError.OUT_OF_RANGE,
                "offset " + offset + " is outside 0.." + diskSize + " of bitmap '" + name + "'");
        }
    }

    private BitmapArgumentException outOfRange(final String what, final long offset, final long length)
    {
        final String problem = offset < 0 || length < 0 ? "negative" : "beyond the disk";
        return new BitmapArgumentException(BitmapError.OUT_OF_RANGE,
            what + " range offset " + offset + " length " + length + " is " + problem + " of bitmap '" + name +
            "' (disk size " + diskSize + ")");
    }

    private static void checkGeometry(final long diskSize, final long granularity)
    {
        final String granularityProblem = BitmapFileDescriptor.granularityProblem(granularity);
        if (granularityProblem != null)
        {
            throw new BitmapArgumentException(BitmapError.BAD_GRANULARITY, granularityProblem);
        }
        final String sizeProblem = BitmapFileDescriptor.diskSizeProblem(diskSize, granularity);
        if (sizeProblem != null)
        {
            throw new BitmapArgumentException(BitmapError.BAD_SIZE, sizeProblem);
        }
    }

    /** Takes the file's exclusive lock, or fails with {@link BitmapError#LOCKED}; also used by {@link EpochMap}. */
    static FileLock lockExclusive(final Path file, final FileChannel channel) throws IOException
    {
        return lock(file, channel, false);
    }

    private static FileLock lockShared(final Path file, final FileChannel channel) throws IOException
    {
        return lock(file, channel, true);
    }

    private static FileLock lock(final Path file, final FileChannel channel, final boolean shared) throws IOException
    {
        FileLock lock = null;
        try
        {
            lock = channel.tryLock(0, Long.MAX_VALUE, shared);
        }
        catch (final OverlappingFileLockException ex)
        {
            throw new BitmapFileException(BitmapError.LOCKED, file, "the file is already open in this process");
        }
        if (lock == null)
        {
            throw new BitmapFileException(BitmapError.LOCKED, file, "another process holds the file's lock");
        }
        return lock;
    }

    /** Writes all of {@code buffer} at {@code position}; also used by {@link EpochMap}. */
    static void writeFully(final FileChannel channel, final ByteBuffer buffer, final long position)
        throws IOException
    {
        long at = position;
        while (buffer.hasRemaining())
        {
            at += channel.write(buffer, at);
        }
    }

    /** Releases the lock and closes the channel, ignoring failures; also used by {@link EpochMap}. */
    static void closeQuietly(final FileLock lock, final FileChannel channel)
    {
        try
        {
            if (lock != null && lock.isValid())
            {
                lock.release();
            }
        }
        catch (final IOException ignored)
        {
            // The channel's close below releases the lock anyway.
        }
        try
        {
            if (channel != null)
            {
                channel.close();
            }
        }
        catch (final IOException ignored)
        {
            // Nothing left to protect: the mappings are gone and every header change was forced.
        }
    }

    /**
     * Test and tool knobs: region size, page-sink decoration, boot id, clock, scratch placement and a rebuild
     * hook; confined to the caller.
     */
    static final class Options
    {
        int regionBytes = DEFAULT_REGION_BYTES;
        UnaryOperator<PageSink> sinkDecorator = UnaryOperator.identity();
        UUID bootId = BootId.current();
        LongSupplier clock = System::currentTimeMillis;
        Path scratchDir;
        long scratchThreshold = DEFAULT_SCRATCH_THRESHOLD;
        LongConsumer rebuildProgress;

        Options scratchDir(final Path scratchDir)
        {
            this.scratchDir = scratchDir;
            return this;
        }

        /** Levels and anonymous data larger than this many bytes go to a scratch file; 0 sends all there. */
        Options scratchThreshold(final long scratchThreshold)
        {
            this.scratchThreshold = scratchThreshold;
            return this;
        }

        /** Called on the rebuild thread after each 1 MiB of data read, with the words read so far. */
        Options rebuildProgress(final LongConsumer rebuildProgress)
        {
            this.rebuildProgress = rebuildProgress;
            return this;
        }

        Options regionBytes(final int regionBytes)
        {
            if (Integer.bitCount(regionBytes) != 1 || regionBytes < BitmapFileDescriptor.PAGE_SIZE)
            {
                throw new IllegalArgumentException("region size " + regionBytes + " must be a power of two >= 4096");
            }
            this.regionBytes = regionBytes;
            return this;
        }

        Options sinkDecorator(final UnaryOperator<PageSink> sinkDecorator)
        {
            this.sinkDecorator = sinkDecorator;
            return this;
        }

        Options bootId(final UUID bootId)
        {
            this.bootId = bootId;
            return this;
        }

        Options clock(final LongSupplier clock)
        {
            this.clock = clock;
            return this;
        }
    }

    /** A view that exposes no mutator; as thread-safe as the bitmap's readers. */
    private static final class ReadOnlyView implements BitmapView
    {
        private final MappedBitmap bitmap;

        ReadOnlyView(final MappedBitmap bitmap)
        {
            this.bitmap = bitmap;
        }

        @Override
        public String name()
        {
            return bitmap.name();
        }

        @Override
        public long granularity()
        {
            return bitmap.granularity();
        }

        @Override
        public long diskSize()
        {
            return bitmap.diskSize();
        }

        @Override
        public long chunkCount()
        {
            return bitmap.chunkCount();
        }

        @Override
        public boolean isDirty(final long offset)
        {
            return bitmap.isDirty(offset);
        }

        @Override
        public long nextDirty(final long offset)
        {
            return bitmap.nextDirty(offset);
        }

        @Override
        public long nextClean(final long offset)
        {
            return bitmap.nextClean(offset);
        }

        @Override
        public void forEachDirtyExtent(final long offset, final long length, final ExtentConsumer consumer)
        {
            bitmap.forEachDirtyExtent(offset, length, consumer);
        }

        @Override
        public long dirtyChunkCount()
        {
            return bitmap.dirtyChunkCount();
        }

        @Override
        public long dirtyByteCount()
        {
            return bitmap.dirtyByteCount();
        }

        @Override
        public byte[] sha256()
        {
            return bitmap.sha256();
        }

        @Override
        public String toString()
        {
            return "read-only " + bitmap;
        }
    }
}
