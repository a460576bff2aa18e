package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.BitmapError;
import dev.tidemark.bitmap.BitmapFileDescriptor;
import dev.tidemark.bitmap.BitmapFileException;
import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.EngineException;
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
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * A disk's named dirty bitmaps with QEMU's semantics; queries are safe from any thread, every change runs on the
 * ring's mark thread (checked), except {@link #setBusy} which any thread may call.
 *
 * <p>The mark thread is the single writer of "which bitmaps are recording": every change recomputes the array
 * of bitmaps the mark handler sets bits in ({@link #recorders()}), and only the mark thread reads it, so a write
 * is marked in exactly the bitmaps that recorded at its place in the ring. The registry's monitor guards the
 * entries against concurrent queries; the marking hot path takes no lock.
 *
 * <p>Persistent bitmaps live in files {@code bitmap-<n>.tmbm} in the disk's bitmap directory; the journal says
 * which file is which bitmap. Changes go through {@link BitmapActions} inside transactions; successors
 * ({@link #createSuccessor}, {@link #abdicate}, {@link #reclaim}) are called by job actions at their cut.
 *
 * <p>A bitmap that leaves the registry (removed, replaced by its successor, a successor merged back) is retired
 * on the registry's own thread ({@code tidemark-bitmap-retire}): unmapping 2 GiB and deleting its file must not
 * happen on the ring thread at the cut. A reader that works on a bitmap outside the monitor (sha256) pins it; a
 * pinned bitmap is retired only after its last reader unpinned it, so no reader touches unmapped memory.
 */
public final class BitmapRegistry
{
    /** QEMU's default for a format without clusters (raw). */
    public static final long DEFAULT_GRANULARITY = 65536;

    private static final String FILE_PREFIX = "bitmap-";
    private static final String FILE_SUFFIX = ".tmbm";
    private static final DirtyBitmap[] NONE = new DirtyBitmap[0];

    private final long diskSize;
    private final Path directory;
    private final Journal journal;
    private final BitmapFiles files;
    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private final List<String> openMessages = new ArrayList<>();
    private long nextFileId = 1;
    private volatile Thread markThread;
    private volatile boolean durable;
    private DirtyBitmap[] recorders = NONE;
    // Bitmaps read outside the monitor, with their reader counts; guarded by the monitor.
    private final Map<DirtyBitmap, Integer> pinned = new IdentityHashMap<>();
    private ExecutorService retirement;

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
     * Binds the registry to the ring's mark thread; called once by the ring.
     *
     * @param thread the mark thread.
     */
    public void bindMarkThread(final Thread thread)
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
    public synchronized List<BitmapInfo> query()
    {
        final List<BitmapInfo> out = new ArrayList<>();
        for (final Entry entry : entries.values())
        {
            if (!entry.removed)
            {
                out.add(info(entry));
            }
        }
        return out;
    }

    /**
     * @param name a bitmap.
     * @return its record.
     * @throws EngineException {@code Dirty bitmap 'B' not found}.
     */
    public synchronized BitmapInfo query(final String name)
    {
        return info(lookup(name));
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
            pinned.merge(bitmap, 1, Integer::sum);
        }
        try
        {
            return HexFormat.of().formatHex(bitmap.sha256());
        }
        finally
        {
            synchronized (this)
            {
                pinned.computeIfPresent(bitmap, (b, n) -> n == 1 ? null : n - 1);
                notifyAll();
            }
        }
    }

    /**
     * Closes {@code bitmap} and deletes {@code file} (if not null) on the retirement thread, once nobody reads it;
     * the caller has already removed it from every entry and from the recorders.
     */
    private synchronized void retire(final DirtyBitmap bitmap, final Path file)
    {
        if (retirement == null)
        {
            retirement = Executors.newSingleThreadExecutor(runnable ->
            {
                final Thread thread = new Thread(runnable, "tidemark-bitmap-retire");
                thread.setDaemon(true);
                return thread;
            });
        }
        retirement.execute(() ->
        {
            synchronized (this)
            {
                boolean interrupted = false;
                while (pinned.containsKey(bitmap))
                {
                    try
                    {
                        wait();
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
            bitmap.close();
            if (file != null)
            {
                deleteQuietly(file);
            }
        });
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
        checkMarkThread();
        final Entry entry = lookup(name);
        checkBusy(entry);
        checkInconsistent(entry);
        final DirtyBitmap bits;
        final long fileId;
        try
        {
            if (entry.persistent)
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
        retire(old, entry.persistent ? fileOf(oldFileId) : null);
    }

    /**
     * The job failed or does not hand over its bits: the bitmap becomes bitmap | successor, the successor is
     * dropped, the bitmap is no longer busy. Mark thread only.
     *
     * @param successor from {@link #createSuccessor}.
     */
    public synchronized void reclaim(final Successor successor)
    {
        checkMarkThread();
        final Entry entry = ownerOf(successor);
        entry.bitmap.merge(successor.bitmap());
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
        retire(successor.bitmap(), entry.persistent ? fileOf(successor.fileId()) : null);
    }

    // ------------------------------------------------------------------------------------------ mark thread

    /**
     * @return the bitmaps that record writes now; mark thread only (the array is replaced, never changed).
     */
    public DirtyBitmap[] recorders()
    {
        assert Thread.currentThread() == markThread || markThread == null
            : "recorders read off the mark thread by " + Thread.currentThread().getName();
        return recorders;
    }

    /** Recomputes the recording set after a transaction committed or rolled back; mark thread only. */
    public synchronized void computeRecordersAfterChange()
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

    Entry addEntry(final String name, final long granularity, final boolean persistent, final boolean enabled)
    {
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
            if (persistent)
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
        retire(entry.bitmap, entry.persistent ? fileOf(entry.fileId) : null);
    }

    /** Undoes an add: the bitmap was made in this transaction and nobody read it, so it closes here at once. */
    void dropEntry(final Entry entry)
    {
        entries.remove(entry.name);
        entry.bitmap.close();
        if (entry.persistent)
        {
            deleteQuietly(fileOf(entry.fileId));
        }
    }

    void journalFlags(final Entry entry)
    {
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapFlags(entry.name, flagsOf(entry)));
        }
    }

    void journalRemoved(final Entry entry)
    {
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapRemoved(entry.name));
        }
    }

    void journalRestoredAdd(final Entry entry)
    {
        if (entry.persistent)
        {
            journal.append(JournalRecord.bitmapAdded(entry.name, entry.fileId, entry.bitmap.granularity(),
                flagsOf(entry)));
        }
    }

    void journalBitsChanging(final Entry entry)
    {
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
        final ExecutorService retiring;
        synchronized (this)
        {
            retiring = retirement;
            retirement = null;
        }
        if (retiring != null)
        {
            retiring.shutdown();
            boolean interrupted = false;
            try
            {
                while (!retiring.awaitTermination(1, TimeUnit.MINUTES))
                {
                    // A reader still pins a retired bitmap (a sha256 of 2 GiB): its files must close cleanly first.
                }
            }
            catch (final InterruptedException ex)
            {
                interrupted = true;
            }
            if (interrupted)
            {
                Thread.currentThread().interrupt();
            }
        }
        closeEntries();
    }

    private synchronized void closeEntries()
    {
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

    private BitmapInfo info(final Entry entry)
    {
        // QEMU disables a bitmap it finds inconsistent: it records nothing.
        return new BitmapInfo(entry.name, entry.enabled && !entry.inconsistent, entry.isBusy(), entry.persistent, entry.inconsistent,
            entry.bitmap.granularity(), entry.bitmap.dirtyByteCount());
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
