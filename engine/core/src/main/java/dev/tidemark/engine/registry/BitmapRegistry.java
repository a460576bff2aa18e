package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.BitmapError;
import dev.tidemark.bitmap.BitmapFileDescriptor;
import dev.tidemark.bitmap.BitmapFileException;
import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.Monitors;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.journal.JournalRecord;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.function.Consumer;
import java.util.Map;

/**
 * A disk's named dirty bitmaps with QEMU's semantics; queries are safe from any thread, every change runs on the
 * ring's mark thread (checked), except {@link #setBusy} which any thread may call.
 *
 * <p>The mark thread is the single writer of "which bitmaps are recording": every change recomputes the array
 * of bitmaps the mark handler sets bits in, and only the mark thread reads it ({@link MarkSide#recorders()}), so a
 * write is marked in exactly the bitmaps that recorded at its place in the ring. Those hooks are not this class's
 * public API: the disk's write ring claims them once ({@link #claimMarkSide()}). The registry's monitor guards the
 * entries against concurrent queries; the marking hot path takes no lock.
 *
 * <p>Persistent bitmaps live in files {@code bitmap-<n>.tmbm} in the disk's bitmap directory; the journal says
 * which file is which bitmap. Changes go through {@link BitmapActions} inside transactions; successors
 * ({@link #createSuccessor}, {@link #abdicate}, {@link #reclaim}) are called by job actions at their cut.
 *
 * <p>A bitmap that leaves the registry (removed, replaced by its successor, a successor merged back) is retired
 * on the registry's own thread ({@code tidemark-bitmap-retire}, see {@link BitmapRetirer}): unmapping 2 GiB and
 * deleting its file must not happen on the ring thread at the cut. A reader that works on a bitmap outside the
 * monitor (sha256) pins it; a pinned bitmap is retired only after its last reader unpinned it, so no reader
 * touches unmapped memory.
 */
public final class BitmapRegistry
{
    /** QEMU's default for a format without clusters (raw). */
    public static final long DEFAULT_GRANULARITY = 65536;

    private static final String FILE_PREFIX = "bitmap-";
    private static final String FILE_SUFFIX = ".tmbm";
    private static final DirtyBitmap[] NONE = new DirtyBitmap[0];
    /** Staged bitmaps up to this many chunks (1 MiB of bits) are released at once, larger ones when retired. */
    private static final long SMALL_STAGED_CHUNKS = 8L << 20;

    private final long diskSize;
    private final Path directory;
    private final Journal journal;
    private final BitmapFiles files;
    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private final List<String> openMessages = new ArrayList<>();
    private long nextFileId = 1;
    private volatile Thread markThread;
    private boolean markSideClaimed;
    private volatile boolean durable;
    private DirtyBitmap[] recorders = NONE;
    // Bitmaps read outside the monitor, with their reader counts; guarded by the monitor.
    private final Map<DirtyBitmap, Integer> pinned = new IdentityHashMap<>();
    // How many bitmaps are pinned; written under the monitor, read by the retiring thread without it.
    private volatile int pinnedBitmaps;
    private final BitmapRetirer retirer = new BitmapRetirer(this::closeRetired, "tidemark-bitmap-retire");
    // Bumped by every change of an entry (names, flags, bits in place, files, successors); guarded by the monitor.
    private long changes;

    /**
     * Loads the persistent bitmaps the journal names, merges back the successors of jobs that were in flight,
     * and deletes bitmap files the journal does not name.
     *
     * @param diskSize bytes of the disk.
     * @param directory the bitmap directory.
     * @param journal the disk's open journal.
     * @param files how bitmaps are made.
     * @throws IOException if a bitmap file cannot be opened.
     */
    public BitmapRegistry(final long diskSize, final Path directory, final Journal journal, final BitmapFiles files)
        throws IOException
    {
        this.diskSize = diskSize;
        this.directory = directory;
        this.journal = journal;
        this.files = files;
        load();
    }

    private void load() throws IOException
    {
        final Journal.Replay replay = journal.replay();
        openMessages.addAll(replay.messages());
        final List<Long> referenced = new ArrayList<>();
        for (final Journal.BitmapState state : replay.bitmaps().values())
        {
            referenced.add(state.fileId());
            nextFileId = Math.max(nextFileId, state.fileId() + 1);
            if (state.successorFileId() != 0)
            {
                nextFileId = Math.max(nextFileId, state.successorFileId() + 1);
            }
        }
        for (final Journal.BitmapState state : replay.bitmaps().values())
        {
            final Path path = fileOf(state.fileId());
            DirtyBitmap bitmap;
            boolean inconsistent = (state.flags() & JournalRecord.FLAG_INCONSISTENT) != 0;
            DirtyBitmap opened = null;
            if (Files.exists(path))
            {
                try
                {
                    opened = files.open(path);
                }
                catch (final BitmapFileException ex)
                {
                    if (ex.error() == BitmapError.LOCKED)
                    {
                        throw ex;
                    }
                    // A garbled file: keep it for inspection, never trust it, lose nothing else.
                    final Path aside = path.resolveSibling(path.getFileName() + ".bad");
                    Files.move(path, aside, StandardCopyOption.REPLACE_EXISTING);
                    openMessages.add("bitmap '" + state.name() + "': its file cannot be used (" + ex.getMessage()
                        + "); moved to " + aside.getFileName() + ", recreated fully dirty and marked inconsistent");
                }
            }
            if (opened != null)
            {
                bitmap = opened;
                if (bitmap.diskSize() != diskSize || bitmap.granularity() != state.granularity())
                {
                    openMessages.add("bitmap '" + state.name() + "': file " + path + " tracks " + bitmap.diskSize()
                        + " bytes at granularity " + bitmap.granularity() + " but the disk has " + diskSize
                        + " bytes and the journal says granularity " + state.granularity() + "; marked inconsistent");
                    inconsistent = true;
                }
            }
            else
            {
                if (Files.notExists(path.resolveSibling(path.getFileName() + ".bad")))
                {
                    openMessages.add("bitmap '" + state.name() + "': its file " + path
                        + " is missing; recreated fully dirty and marked inconsistent");
                }
                bitmap = files.create(path, state.name(), diskSize, state.granularity());
                if (diskSize > 0)
                {
                    bitmap.mark(0, diskSize);
                }
                inconsistent = true;
            }
            inconsistent |= bitmap.isInconsistent();
            final Entry entry = new Entry(state.name(), bitmap, true, state.fileId());
            entry.enabled = (state.flags() & JournalRecord.FLAG_RECORDING) != 0;
            entry.inconsistent = inconsistent;
            if (state.successorFileId() != 0)
            {
                final Path successorPath = fileOf(state.successorFileId());
                if (Files.exists(successorPath))
                {
                    try (DirtyBitmap successor = files.open(successorPath))
                    {
                        bitmap.merge(successor);
                        if (successor.isInconsistent())
                        {
                            entry.inconsistent = true;
                        }
                    }
                    bitmap.force();
                    openMessages.add("bitmap '" + state.name() + "': a job was using it when the disk was last"
                        + " closed; its successor (file " + successorPath.getFileName() + ") was merged back");
                }
                else
                {
                    openMessages.add("bitmap '" + state.name() + "': the successor file " + successorPath
                        + " of an interrupted job is missing; marked inconsistent");
                    entry.inconsistent = true;
                }
                journal.append(JournalRecord.successorResolved(state.name(), false));
                Files.deleteIfExists(successorPath);
            }
            if (entry.inconsistent && ((state.flags() & JournalRecord.FLAG_INCONSISTENT) == 0
                || replay.inconsistentByTail().contains(state.name())))
            {
                journal.append(JournalRecord.bitmapFlags(state.name(), flagsOf(entry)));
            }
            entries.put(state.name(), entry);
        }
        try (DirectoryStream<Path> stream = Files.newDirectoryStream(directory, FILE_PREFIX + "*" + FILE_SUFFIX))
        {
            for (final Path path : stream)
            {
                final long id = idOf(path);
                if (id < 0 || !referenced.contains(id))
                {
                    openMessages.add("bitmap file " + path.getFileName()
                        + " belongs to no bitmap in the journal (left by a transaction that never committed, or by a"
                        + " deletion cut short); deleted");
                    Files.delete(path);
                }
                if (id >= nextFileId)
                {
                    nextFileId = id + 1;
                }
            }
        }
        computeRecorders();
    }

    /**
     * Marks every persistent bitmap inconsistent because the image changed while no Tidemark held it; journals the
     * reason and the new flags. Call before the ring starts (or on the mark thread).
     *
     * @param reason what changed, one sentence.
     */
    public synchronized void markImageChanged(final String reason)
    {
        changes++;
        checkMarkThread();
        journal.append(JournalRecord.outOfBandChange(reason));
        for (final Entry entry : entries.values())
        {
            if (entry.persistent && !entry.removed && !entry.inconsistent)
            {
                entry.inconsistent = true;
                journalFlags(entry);
                openMessages.add("bitmap '" + entry.name + "': " + reason + "; marked inconsistent");
            }
        }
        computeRecorders();
    }

    /** @return what loading repaired or ignored, one sentence each (journal and bitmap messages). */
    public List<String> openMessages()
    {
        return List.copyOf(openMessages);
    }

    /**
     * Hands the registry's mark-thread hooks to the write ring that marks for it; the ring calls it once when it is
     * built, so an embedder, who gets the registry from an open disk, finds it claimed (ArchitectureTest also keeps
     * every class outside {@code dev.tidemark.engine.ring} from calling it).
     *
     * @return the hooks.
     * @throws IllegalStateException when a ring claimed them already.
     */
    public synchronized MarkSide claimMarkSide()
    {
        if (markSideClaimed)
        {
            throw new IllegalStateException("the mark side of this bitmap registry belongs to a write ring already");
        }
        markSideClaimed = true;
        return new MarkSide(this);
    }

    /** Binds the registry to the ring's mark thread ({@link MarkSide#bindMarkThread}). */
    void bindMarkThread(final Thread thread)
    {
        markThread = thread;
    }

    /**
     * Switches durable mode for every persistent bitmap and successor (forcing their pending pages when it turns
     * on) and for bitmaps made later; mark thread, or the opening thread before the ring starts.
     *
     * @param on the mode.
     */
    public synchronized void durable(final boolean on)
    {
        changes++;
        checkMarkThread();
        durable = on;
        for (final Entry entry : entries.values())
        {
            if (entry.persistent)
            {
                files.durable(entry.bitmap, on);
                if (entry.successor != null)
                {
                    files.durable(entry.successor.bitmap(), on);
                }
            }
        }
    }

    /**
     * Forces every persistent bitmap's unforced pages from the calling thread, beside the running ring, so that
     * turning durable mode on forces at its cut only what was marked after this (a lazy disk may have GiBs unforced).
     * Any thread; the monitor is held only to pin the bitmaps, so that none is retired under the force.
     */
    public void forceAhead()
    {
        final List<DirtyBitmap> persistent = new ArrayList<>();
        synchronized (this)
        {
            for (final Entry entry : entries.values())
            {
                if (entry.persistent && !entry.removed)
                {
                    persistent.add(entry.bitmap);
                    if (entry.successor != null)
                    {
                        persistent.add(entry.successor.bitmap());
                    }
                }
            }
            persistent.forEach(this::pin);
        }
        try
        {
            for (final DirtyBitmap bitmap : persistent)
            {
                bitmap.force();
            }
        }
        finally
        {
            unpin(persistent);
        }
    }

    /** @return whether durable mode is on. */
    public boolean isDurable()
    {
        return durable;
    }

    /** @return size of the tracked disk. */
    public long diskSize()
    {
        return diskSize;
    }

    /** @return the journal. */
    public Journal journal()
    {
        return journal;
    }

    // ------------------------------------------------------------------------------------------ queries

    /** @return every bitmap, in the order they were added. */
    public List<BitmapInfo> query()
    {
        // Counted outside the monitor (pinned): counting the dirty chunks of 2 GiB bitmaps takes milliseconds, and a
        // transaction (the ring) needs the monitor.
        final List<BitmapInfo> flags = new ArrayList<>();
        final List<DirtyBitmap> bits = new ArrayList<>();
        synchronized (this)
        {
            for (final Entry entry : entries.values())
            {
                if (!entry.removed)
                {
                    flags.add(flags(entry));
                    bits.add(entry.bitmap);
                    pin(entry.bitmap);
                }
            }
        }
        try
        {
            final List<BitmapInfo> out = new ArrayList<>();
            for (int i = 0; i < flags.size(); i++)
            {
                final BitmapInfo f = flags.get(i);
                out.add(new BitmapInfo(f.name(), f.recording(), f.busy(), f.persistent(), f.inconsistent(),
                    f.granularity(), bits.get(i).dirtyByteCount()));
            }
            return out;
        }
        finally
        {
            unpin(bits);
        }
    }

    /** Counts one more reader of {@code bitmap}, so it is not retired under it; the caller holds the monitor. */
    private void pin(final DirtyBitmap bitmap)
    {
        pinned.merge(bitmap, 1, Integer::sum);
        pinnedBitmaps = pinned.size();
    }

    private synchronized void unpin(final List<DirtyBitmap> bits)
    {
        for (final DirtyBitmap bitmap : bits)
        {
            pinned.computeIfPresent(bitmap, (b, n) -> n == 1 ? null : n - 1);
        }
        pinnedBitmaps = pinned.size();
        notifyAll();
    }

    /**
     * @param name a bitmap.
     * @return its record without the dirty count ({@link BitmapInfo#count()} is -1): what a check at a cut needs,
     *         at no cost in proportion to the bitmap.
     * @throws EngineException {@code Dirty bitmap 'B' not found}.
     */
    public synchronized BitmapInfo queryFlags(final String name)
    {
        return flags(lookup(name));
    }

    /**
     * @param name a bitmap.
     * @return its record.
     * @throws EngineException {@code Dirty bitmap 'B' not found}.
     */
    public BitmapInfo query(final String name)
    {
        final BitmapInfo f;
        final DirtyBitmap bits;
        synchronized (this)
        {
            final Entry entry = lookup(name);
            f = flags(entry);
            bits = entry.bitmap;
            pin(bits);
        }
        try
        {
            return new BitmapInfo(f.name(), f.recording(), f.busy(), f.persistent(), f.inconsistent(), f.granularity(),
                bits.dirtyByteCount());
        }
        finally
        {
            unpin(List.of(bits));
        }
    }

    /**
     * @param name a bitmap.
     * @return whether it exists.
     */
    public synchronized boolean exists(final String name)
    {
        final Entry entry = entries.get(name);
        return entry != null && !entry.removed;
    }

    /**
     * @param name a bitmap.
     * @return SHA-256 of its bits as QEMU's {@code x-debug-block-dirty-bitmap-sha256} computes it, lowercase hex.
     * @throws EngineException {@code Dirty bitmap 'B' not found}.
     */
    public String sha256(final String name)
    {
        // Hashed outside the monitor: 2 GiB of bits take seconds, and a transaction (the ring) needs the monitor.
        // Marks may land meanwhile; the digest is of a state between the call and its return.
        final DirtyBitmap bitmap;
        synchronized (this)
        {
            bitmap = lookup(name).bitmap;
            pin(bitmap);
        }
        try
        {
            return HexFormat.of().formatHex(bitmap.sha256());
        }
        finally
        {
            unpin(List.of(bitmap));
        }
    }

    /**
     * Closes {@code bitmap} and deletes the file {@code fileId} names (0: none) on the retiring thread, once nobody
     * reads it; the caller has already removed it from every entry and from the recorders. Any thread, no lock.
     */
    private void retire(final DirtyBitmap bitmap, final long fileId)
    {
        retirer.retire(bitmap, fileId);
    }

    /** The retiring thread: closes one retired bitmap once its last reader unpinned it, then deletes its file. */
    private void closeRetired(final BitmapRetirer.Retired retired)
    {
        // Pins are taken under the monitor from live entries only, and this bitmap left them before it was handed
        // over, so with nothing pinned it stays unpinned: this background thread then skips the monitor the ring
        // takes for every control request (it could be preempted holding it).
        if (pinnedBitmaps != 0)
        {
            synchronized (this)
            {
                Monitors.awaitUninterruptibly(this, () -> !pinned.containsKey(retired.bitmap()));
            }
        }
        retired.bitmap().close();
        if (retired.fileId() != 0)
        {
            deleteQuietly(fileOf(retired.fileId()));
        }
    }

    /**
     * @param name a bitmap.
     * @return a read-only view of its bits (of the frozen parent while it is busy).
     * @throws EngineException {@code Dirty bitmap 'B' not found}.
     */
    public synchronized BitmapView view(final String name)
    {
        return lookup(name).bitmap.readOnlyView();
    }

    /**
     * Marks a bitmap busy for an export (or frees it); any thread.
     *
     * @param name a bitmap.
     * @param busy whether an export holds it.
     * @throws EngineException {@code Dirty bitmap 'B' not found}, or the busy error when it is already busy.
     */
    public synchronized void setBusy(final String name, final boolean busy)
    {
        final Entry entry = lookup(name);
        if (busy)
        {
            checkBusy(entry);
        }
        entry.exportBusy = busy;
    }

    // ------------------------------------------------------------------------------------------ successors

    /**
     * Freezes a bitmap for a job: it becomes busy and a successor records new writes from this cut on. Mark
     * thread only, inside a transaction (its journal record belongs to it).
     *
     * @param name the bitmap.
     * @return the successor.
     * @throws EngineException not found, busy or inconsistent (QEMU's texts); nothing changes then.
     */
    public synchronized Successor createSuccessor(final String name)
    {
        return createSuccessor(name, null);
    }

    /**
     * As {@link #createSuccessor(String)}, taking the successor's bits from {@code staged} when it fits (made by
     * {@link #stage} for this bitmap), so that nothing is created at the cut.
     *
     * @param name the bitmap.
     * @param staged an empty bitmap staged for it, or {@code null}.
     * @return the successor.
     * @throws EngineException not found, busy or inconsistent (QEMU's texts); nothing changes then.
     */
    public synchronized Successor createSuccessor(final String name, final Staged staged)
    {
        changes++;
        checkMarkThread();
        final Entry entry = lookup(name);
        checkBusy(entry);
        checkInconsistent(entry);
        final DirtyBitmap bits;
        final long fileId;
        try
        {
            if (fits(staged, entry.persistent, entry.bitmap.granularity()))
            {
                bits = staged.bitmap;
                fileId = staged.fileId;
                staged.used = true;
                if (entry.persistent)
                {
                    settle(staged);
                    journal.append(JournalRecord.successorCreated(name, fileId));
                }
            }
            else if (entry.persistent)
            {
                fileId = nextFileId++;
                bits = files.create(fileOf(fileId), name, diskSize, entry.bitmap.granularity());
                if (durable)
                {
                    files.durable(bits, true);
                }
                journal.append(JournalRecord.successorCreated(name, fileId));
            }
            else
            {
                fileId = 0;
                bits = files.anonymous(name, diskSize, entry.bitmap.granularity());
            }
        }
        catch (final IOException ex)
        {
            throw new EngineException(EngineException.Reason.GENERIC,
                "Cannot create a successor for bitmap '" + name + "': " + ex.getMessage(), ex);
        }
        final Successor successor = new Successor(name, entry.bitmap, bits, fileId);
        entry.successor = successor;
        computeRecorders();
        return successor;
    }

    /**
     * The job succeeded with {@code on-success}: the successor takes the bitmap's place, the frozen bits are
     * dropped, the bitmap is no longer busy. Mark thread only.
     *
     * @param successor from {@link #createSuccessor}.
     */
    public synchronized void abdicate(final Successor successor)
    {
        changes++;
        checkMarkThread();
        final Entry entry = ownerOf(successor);
        final DirtyBitmap old = entry.bitmap;
        final long oldFileId = entry.fileId;
        if (entry.persistent)
        {
            journal.append(JournalRecord.successorResolved(entry.name, true));
        }
        entry.bitmap = successor.bitmap();
        entry.fileId = successor.fileId();
        entry.successor = null;
        successor.markResolved();
        computeRecorders();
        retire(old, entry.persistent ? oldFileId : 0);
    }

    /**
     * The job failed or does not hand over its bits: the bitmap becomes bitmap | successor, the successor is
     * dropped, the bitmap is no longer busy. Mark thread only.
     *
     * @param successor from {@link #createSuccessor}.
     */
    public void reclaim(final Successor successor)
    {
        reclaim(successor, false);
    }

    /**
     * {@link #reclaim(Successor)}, for a caller that already merged the successor into the frozen bitmap ahead of
     * the cut (off the mark thread: a merge is a marker) and applied every write the successor recorded since; the
     * cut then only forces what that merge left unforced, journals and swaps. Mark thread only.
     *
     * @param successor from {@link #createSuccessor}.
     * @param merged whether the frozen bitmap already holds every bit of the successor.
     */
    public synchronized void reclaim(final Successor successor, final boolean merged)
    {
        changes++;
        checkMarkThread();
        final Entry entry = ownerOf(successor);
        if (!merged)
        {
            entry.bitmap.merge(successor.bitmap());
        }
        if (entry.persistent)
        {
            if (durable)
            {
                entry.bitmap.force();
            }
            journal.append(JournalRecord.successorResolved(entry.name, false));
        }
        entry.successor = null;
        successor.markResolved();
        computeRecorders();
        retire(successor.bitmap(), entry.persistent ? successor.fileId() : 0);
    }

    // ------------------------------------------------------------------------------------------ mark thread

    /** @return the bitmaps that record writes now ({@link MarkSide#recorders()}). */
    DirtyBitmap[] recorders()
    {
        assert Thread.currentThread() == markThread || markThread == null
            : "recorders read off the mark thread by " + Thread.currentThread().getName();
        return recorders;
    }

    /** Recomputes the recording set after a transaction committed or rolled back ({@link MarkSide}). */
    synchronized void computeRecordersAfterChange()
    {
        checkMarkThread();
        computeRecorders();
    }

    void checkMarkThread()
    {
        final Thread owner = markThread;
        if (owner != null && owner != Thread.currentThread())
        {
            throw new IllegalStateException("bitmap registry changed by " + Thread.currentThread().getName()
                + ", only the mark thread " + owner.getName() + " may change it");
        }
    }

    void computeRecorders()
    {
        final List<DirtyBitmap> out = new ArrayList<>();
        for (final Entry entry : entries.values())
        {
            if (entry.removed || !entry.enabled || entry.inconsistent)
            {
                continue;
            }
            out.add(entry.successor != null ? entry.successor.bitmap() : entry.bitmap);
        }
        recorders = out.toArray(NONE);
    }

    // ------------------------------------------------------------------------------------------ staging

    /**
     * Makes an empty bitmap for a transaction to put in place at its cut (a new bitmap, a cleared one, a successor),
     * on the calling thread, before the transaction enters the ring: creating and mapping a 2 GiB file must not
     * happen on the ring thread. Any thread except inside a transaction of this registry; holds the monitor only to
     * reserve a file number. Nothing is journaled: until a transaction takes it, the file is an orphan that the next
     * open deletes.
     *
     * @param name the name the bitmap will have.
     * @param granularity bytes per chunk.
     * @param persistent whether it is file-backed.
     * @return the staged bitmap, or {@code null} when it cannot be made now (the action then makes it at the cut,
     *         which reports the error).
     */
    public Staged stage(final String name, final long granularity, final boolean persistent)
    {
        if (name == null || name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length
            > BitmapFileDescriptor.MAX_NAME_BYTES || granularity < BitmapFileDescriptor.MIN_GRANULARITY
            || granularity > BitmapFileDescriptor.MAX_GRANULARITY || Long.bitCount(granularity) != 1)
        {
            return null;
        }
        final long fileId;
        synchronized (this)
        {
            fileId = persistent ? nextFileId++ : 0;
        }
        // The cut that swaps this in retires the bits it replaces: the retiring thread is not started there.
        retirer.start();
        try
        {
            final DirtyBitmap bits = persistent ? files.create(fileOf(fileId), name, diskSize, granularity)
                : files.anonymous(name, diskSize, granularity);
            final Staged staged = new Staged(bits, fileId, persistent);
            if (persistent && durable)
            {
                // Its header forced here, not at the cut.
                files.durable(bits, true);
                staged.durable = true;
            }
            return staged;
        }
        catch (final IOException | RuntimeException ex)
        {
            if (persistent)
            {
                deleteQuietly(fileOf(fileId));
            }
            return null;
        }
    }

    /**
     * Releases a staged bitmap no entry took: closed and its file deleted, at once when small, else on the
     * retirement thread. Any thread; does nothing for {@code null} or a staged bitmap in use.
     *
     * @param staged from {@link #stage}.
     */
    public void unstage(final Staged staged)
    {
        if (staged == null)
        {
            return;
        }
        synchronized (this)
        {
            if (staged.used || staged.released)
            {
                return;
            }
            staged.released = true;
        }
        if (staged.bitmap.diskSize() / staged.bitmap.granularity() <= SMALL_STAGED_CHUNKS)
        {
            // Nobody else ever saw it, and closing a small one costs less than handing it over.
            staged.bitmap.close();
            if (staged.persistent)
            {
                deleteQuietly(fileOf(staged.fileId));
            }
            return;
        }
        retire(staged.bitmap, staged.persistent ? staged.fileId : 0);
    }

    /**
     * ORs the current bits of the named bitmaps into a staged bitmap, outside the monitor: each is pinned meanwhile,
     * so none is retired under the copy. Not on the mark thread: copying 2 GiB of bits takes seconds. Marks may land
     * in the sources meanwhile; the caller's write log covers them.
     *
     * @param staged from {@link #stage}, not in use.
     * @param names the bitmaps to copy.
     * @return whether every one was found and copied.
     */
    public boolean fill(final Staged staged, final List<String> names)
    {
        final List<DirtyBitmap> sources = new ArrayList<>();
        synchronized (this)
        {
            if (staged.used || staged.released)
            {
                return false;
            }
            for (final String name : names)
            {
                final Entry entry = entries.get(name);
                if (entry == null || entry.removed)
                {
                    break;
                }
                sources.add(entry.bitmap);
                pin(entry.bitmap);
            }
        }
        try
        {
            if (sources.size() != names.size())
            {
                return false;
            }
            staged.touched = true;
            for (final DirtyBitmap source : sources)
            {
                staged.bitmap.merge(source);
            }
            if (staged.durable)
            {
                // Forced here, off the ring: at the cut only the pages of the logged writes remain.
                staged.bitmap.force();
            }
            return true;
        }
        catch (final RuntimeException ex)
        {
            return false;
        }
        finally
        {
            unpin(sources);
        }
    }

    /**
     * Sets bits of a staged bitmap by a caller's walk (a checkpoint's epoch map), outside the monitor: not on the mark
     * thread, because the walk is proportional to the disk. Writes may land meanwhile; the caller's write log covers
     * them.
     *
     * @param staged from {@link #stage}, not in use.
     * @param walk sets the bits.
     * @return whether it filled (not when the staged bitmap was taken or released, or the walk failed).
     */
    public boolean fillBy(final Staged staged, final Consumer<DirtyBitmap> walk)
    {
        synchronized (this)
        {
            if (staged.used || staged.released)
            {
                return false;
            }
        }
        try
        {
            staged.touched = true;
            walk.accept(staged.bitmap);
            if (staged.durable)
            {
                staged.bitmap.force();
            }
            return true;
        }
        catch (final RuntimeException ex)
        {
            return false;
        }
    }

    /**
     * @return how many changes the entries have seen: a transaction action staged at a value finds it unchanged at
     *         its cut only if nothing (no other cut, no earlier action of its own transaction) touched the bitmaps.
     */
    public synchronized long changes()
    {
        return changes;
    }

    /** @return whether an entry's bits record writes now (what {@link #computeRecorders} puts in the array). */
    static boolean isRecording(final Entry entry)
    {
        return !entry.removed && entry.enabled && !entry.inconsistent;
    }

    /** @return the bits a staged bitmap holds; for the action that staged it, on the mark thread at its cut. */
    static DirtyBitmap bits(final Staged staged)
    {
        staged.touched = true;
        return staged.bitmap;
    }

    /**
     * Brings a persistent staged bitmap to the registry's durable mode at the cut: only what changed since it was
     * staged (the mode, or the pages of writes applied at the cut) costs anything here.
     */
    private void settle(final Staged staged)
    {
        if (durable != staged.durable)
        {
            files.durable(staged.bitmap, durable);
            staged.durable = durable;
        }
        else if (durable && staged.touched)
        {
            staged.bitmap.force();
        }
    }

    private static boolean fits(final Staged staged, final boolean persistent, final long granularity)
    {
        return staged != null && !staged.used && !staged.released && staged.persistent == persistent
            && staged.bitmap.granularity() == granularity;
    }

    /**
     * Puts a staged empty bitmap in place of an entry's bits: a clear that costs a reference swap at the cut. For a
     * persistent bitmap the journal group records the file change as an empty successor that took the bitmap's
     * place, so a crash leaves the old file (group not committed) or the new one. Mark thread, in a transaction.
     *
     * @return the replaced bits, for {@link #unswap} or {@link #retireReplaced}; {@code null} when the staged bitmap
     *         does not fit, and nothing changed.
     */
    Replaced swapIn(final Entry entry, final Staged staged)
    {
        checkMarkThread();
        if (!fits(staged, entry.persistent, entry.bitmap.granularity()))
        {
            return null;
        }
        changes++;
        if (entry.persistent)
        {
            settle(staged);
            journal.append(JournalRecord.successorCreated(entry.name, staged.fileId));
            journal.append(JournalRecord.successorResolved(entry.name, true));
        }
        final Replaced replaced = new Replaced(entry.bitmap, entry.fileId);
        entry.bitmap = staged.bitmap;
        entry.fileId = staged.fileId;
        staged.used = true;
        return replaced;
    }

    /** Undoes {@link #swapIn} (its transaction aborted); the staged bitmap is free again for unstage. */
    void unswap(final Entry entry, final Staged staged, final Replaced replaced)
    {
        changes++;
        checkMarkThread();
        entry.bitmap = replaced.bitmap();
        entry.fileId = replaced.fileId();
        staged.used = false;
    }

    /** Retires the bits a committed {@link #swapIn} replaced, off the ring thread once no reader pins them. */
    void retireReplaced(final Entry entry, final Replaced replaced)
    {
        retire(replaced.bitmap(), entry.persistent ? replaced.fileId() : 0);
    }

    /** The bits and file an entry had before a swap. */
    record Replaced(DirtyBitmap bitmap, long fileId)
    {
    }

    /**
     * An empty bitmap made ahead of a cut by {@link #stage}; owned by the one action that staged it, its flags
     * guarded by the registry's monitor.
     */
    public static final class Staged
    {
        private final DirtyBitmap bitmap;
        private final long fileId;
        private final boolean persistent;
        private boolean used;
        private boolean released;
        private boolean durable;
        // Given out for bits to be set in (a merge); an empty one has no pages to force at the cut.
        private boolean touched;

        private Staged(final DirtyBitmap bitmap, final long fileId, final boolean persistent)
        {
            this.bitmap = bitmap;
            this.fileId = fileId;
            this.persistent = persistent;
        }
    }

    // ------------------------------------------------------------------------------------------ for actions

    Entry lookup(final String name)
    {
        final Entry entry = entries.get(name);
        if (entry == null || entry.removed)
        {
            throw EngineException.generic("Dirty bitmap '" + name + "' not found");
        }
        return entry;
    }

    static void checkBusy(final Entry entry)
    {
        if (entry.isBusy())
        {
            throw EngineException.generic("Bitmap '" + entry.name
                + "' is currently in use by another operation and cannot be used");
        }
    }

    static void checkInconsistent(final Entry entry)
    {
        if (entry.inconsistent)
        {
            throw EngineException.generic("Bitmap '" + entry.name + "' is inconsistent and cannot be used");
        }
    }

    static void checkName(final String name)
    {
        if (name == null || name.isEmpty())
        {
            throw EngineException.generic("Bitmap name cannot be empty");
        }
        if (name.getBytes(StandardCharsets.UTF_8).length > BitmapFileDescriptor.MAX_NAME_BYTES)
        {
            throw EngineException.generic("Bitmap name too long: " + name);
        }
    }

    static void checkGranularity(final long granularity)
    {
        if (granularity < BitmapFileDescriptor.MIN_GRANULARITY || granularity > BitmapFileDescriptor.MAX_GRANULARITY
            || Long.bitCount(granularity) != 1)
        {
            throw EngineException.generic("Granularity must be power of 2 and at least 512");
        }
    }

    Entry addEntry(final String name, final long granularity, final boolean persistent, final boolean enabled,
        final Staged staged)
    {
        changes++;
        checkName(name);
        if (entries.containsKey(name))
        {
            throw EngineException.generic("Bitmap already exists: " + name);
        }
        checkGranularity(granularity);
        final DirtyBitmap bitmap;
        final long fileId;
        try
        {
            if (fits(staged, persistent, granularity))
            {
                bitmap = staged.bitmap;
                fileId = staged.fileId;
                staged.used = true;
                if (persistent)
                {
                    settle(staged);
                }
            }
            else if (persistent)
            {
                fileId = nextFileId++;
                bitmap = files.create(fileOf(fileId), name, diskSize, granularity);
                if (durable)
                {
                    files.durable(bitmap, true);
                }
            }
            else
            {
                fileId = 0;
                bitmap = files.anonymous(name, diskSize, granularity);
            }
        }
        catch (final IOException ex)
        {
            throw new EngineException(EngineException.Reason.GENERIC,
                "Cannot create bitmap '" + name + "': " + ex.getMessage(), ex);
        }
        final Entry entry = new Entry(name, bitmap, persistent, fileId);
        entry.enabled = enabled;
        entries.put(name, entry);
        if (persistent)
        {
            journal.append(JournalRecord.bitmapAdded(name, fileId, granularity, flagsOf(entry)));
        }
        return entry;
    }

    /** Takes an entry out of the name space (a remove being prepared); returns its position for reattach. */
    int detach(final Entry entry)
    {
        changes++;
        int position = 0;
        for (final String name : entries.keySet())
        {
            if (name.equals(entry.name))
            {
                break;
            }
            position++;
        }
        entries.remove(entry.name);
        entry.removed = true;
        return position;
    }

    /** Puts a detached entry back where it was (a remove rolled back). */
    void reattach(final Entry entry, final int position)
    {
        changes++;
        final List<Entry> order = new ArrayList<>(entries.values());
        order.add(Math.min(position, order.size()), entry);
        entries.clear();
        for (final Entry e : order)
        {
            entries.put(e.name, e);
        }
        entry.removed = false;
    }

    /** Closes a detached entry's bitmap and deletes its file (a remove committed). */
    void release(final Entry entry)
    {
        retire(entry.bitmap, entry.persistent ? entry.fileId : 0);
    }

    /** Undoes an add: the bitmap was made in this transaction and nobody read it, so it closes here at once. */
    void dropEntry(final Entry entry)
    {
        changes++;
        entries.remove(entry.name);
        entry.bitmap.close();
        if (entry.persistent)
        {
            deleteQuietly(fileOf(entry.fileId));
        }
    }

    void journalFlags(final Entry entry)
    {
        changes++;
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapFlags(entry.name, flagsOf(entry)));
        }
    }

    void journalRemoved(final Entry entry)
    {
        changes++;
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapRemoved(entry.name));
        }
    }

    void journalRestoredAdd(final Entry entry)
    {
        changes++;
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapAdded(entry.name, entry.fileId, entry.bitmap.granularity(),
                flagsOf(entry)));
        }
    }

    void journalBitsChanging(final Entry entry)
    {
        changes++;
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitsChanging(entry.name));
        }
    }

    /**
     * Closes every bitmap (clean close of their files) and successor, after the retirement thread finished the
     * bitmaps it was given; the ring must be stopped.
     */
    public void close()
    {
        retirer.close();
        closeEntries();
    }

    private synchronized void closeEntries()
    {
        // A sha256 or a force ahead may still read a live bitmap.
        Monitors.awaitUninterruptibly(this, pinned::isEmpty);
        for (final Entry entry : entries.values())
        {
            if (entry.successor != null)
            {
                // Left to the journal: the next open merges the successor back, as after a crash.
                entry.successor.bitmap().close();
            }
            entry.bitmap.close();
        }
        recorders = NONE;
    }

    private Entry ownerOf(final Successor successor)
    {
        final Entry entry = entries.get(successor.bitmapName());
        if (entry == null || entry.successor != successor || successor.isResolved())
        {
            throw new IllegalStateException("successor of '" + successor.bitmapName() + "' is not in flight");
        }
        return entry;
    }

    private static BitmapInfo flags(final Entry entry)
    {
        // QEMU disables a bitmap it finds inconsistent: it records nothing.
        return new BitmapInfo(entry.name, entry.enabled && !entry.inconsistent, entry.isBusy(), entry.persistent,
            entry.inconsistent, entry.bitmap.granularity(), -1);
    }

    static int flagsOf(final Entry entry)
    {
        return (entry.enabled ? JournalRecord.FLAG_RECORDING : 0)
            | (entry.inconsistent ? JournalRecord.FLAG_INCONSISTENT : 0);
    }

    private Path fileOf(final long fileId)
    {
        return directory.resolve(FILE_PREFIX + fileId + FILE_SUFFIX);
    }

    private static long idOf(final Path path)
    {
        final String name = path.getFileName().toString();
        try
        {
            return Long.parseLong(name.substring(FILE_PREFIX.length(), name.length() - FILE_SUFFIX.length()));
        }
        catch (final NumberFormatException ex)
        {
            return -1;
        }
    }

    private static void deleteQuietly(final Path path)
    {
        try
        {
            Files.deleteIfExists(path);
        }
        catch (final IOException ex)
        {
            // The journal no longer names the file; the next open deletes it as an orphan.
        }
    }

    /** A bitmap's state; guarded by the registry's monitor, changed on the mark thread only. */
    static final class Entry
    {
        final String name;
        final boolean persistent;
        DirtyBitmap bitmap;
        long fileId;
        boolean enabled;
        boolean inconsistent;
        boolean exportBusy;
        boolean removed;
        Successor successor;

        Entry(final String name, final DirtyBitmap bitmap, final boolean persistent, final long fileId)
        {
            this.name = name;
            this.bitmap = bitmap;
            this.persistent = persistent;
            this.fileId = fileId;
        }

        boolean isBusy()
        {
            return exportBusy || successor != null;
        }
    }
}
