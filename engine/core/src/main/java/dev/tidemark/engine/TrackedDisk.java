package dev.tidemark.engine;

import dev.tidemark.engine.checkpoint.DiskCheckpoints;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.registry.BitmapRegistry;
import dev.tidemark.engine.ring.CutOutcome;
import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.engine.ring.WriteRing;
import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import dev.tidemark.io.RawFileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.locks.LockSupport;

/**
 * A disk whose writes are tracked by dirty bitmaps; safe for concurrent use by any number of threads, except that
 * the synchronous methods must not be called from the ring's own threads (they would wait for themselves).
 *
 * <p>Every write, write-zeroes, discard and flush enters the disk's multi-producer write ring and passes mark,
 * persist (durable mode), copy-before-write and write in that order; it completes only after its bits are set in
 * every bitmap that recorded at its place in the ring (and forced, in durable mode). Reads go to the store
 * directly and see every completed write. Transactions travel through the same ring, so their place in the
 * write order is their cut.
 *
 * <p>The disk builds its ring and hands it each transaction as a cut handler ({@link Transaction}, which gives the
 * actions a {@link CutContext} with this disk); the ring itself never sees the disk.
 */
public final class TrackedDisk implements AutoCloseable
{
    /** How long the disks of a joint transaction wait for each other at its cut before it aborts. */
    static final long JOINT_ARRIVAL_TIMEOUT_SECONDS = 60;
    private static final Object JOINT_PUBLICATION_ORDER = new Object();

    private final String name;
    private final BlockStore store;
    private final long size;
    private final int alignment;
    private final boolean closeStore;
    private final Journal journal;
    private final BitmapRegistry registry;
    private final DiskCheckpoints checkpoints;
    private final List<EngineEvents> listeners = new CopyOnWriteArrayList<>();
    private WriteRing ring;
    private boolean closed;

    private TrackedDisk(final DiskOptions options, final Journal journal, final BitmapRegistry registry,
        final DiskCheckpoints checkpoints)
    {
        this.checkpoints = checkpoints;
        this.name = options.name();
        this.store = options.store();
        this.size = store.size();
        this.alignment = options.alignment();
        this.closeStore = options.closeStore();
        this.journal = journal;
        this.registry = registry;
    }

    /**
     * Opens a disk: replays its journal, reloads its persistent bitmaps (merging back the successors of jobs
     * that were in flight), and starts its write ring.
     *
     * @param options what to open and how.
     * @return the open disk.
     * @throws IOException if the bitmap directory, the journal or a bitmap file cannot be used.
     */
    public static TrackedDisk open(final DiskOptions options) throws IOException
    {
        Files.createDirectories(options.bitmapDirectory());
        final Journal journal = Journal.open(options.bitmapDirectory());
        final BitmapRegistry registry;
        try
        {
            registry = new BitmapRegistry(options.store().size(), options.bitmapDirectory(), journal,
                options.bitmapFiles());
        }
        catch (final IOException | RuntimeException ex)
        {
            journal.close();
            throw ex;
        }
        final DiskCheckpoints checkpoints;
        try
        {
            final boolean changed = checkFingerprint(options.store(), journal, registry);
            checkpoints = DiskCheckpoints.open(options.name(), options.bitmapDirectory(), options.store().size(),
                journal.replay(), options.durable());
            if (changed)
            {
                checkpoints.distrustAll();
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            registry.close();
            journal.close();
            throw ex;
        }
        final TrackedDisk disk = new TrackedDisk(options, journal, registry, checkpoints);
        disk.start(options);
        return disk;
    }

    /**
     * Opens a raw image file with its bitmap directory beside it ({@link DiskOptions#bitmapDirectoryFor}) and
     * the default options.
     *
     * @param image the raw image.
     * @return the open disk.
     * @throws IOException if the image or the bitmap directory cannot be used.
     */
    public static TrackedDisk openImage(final Path image) throws IOException
    {
        final RawFileStore store = RawFileStore.open(image);
        try
        {
            return open(DiskOptions.of(store, DiskOptions.bitmapDirectoryFor(image)));
        }
        catch (final IOException | RuntimeException ex)
        {
            store.close();
            throw ex;
        }
    }

    /** I5: an image changed while nobody tracked it makes every persistent bitmap inconsistent, saying why. */
    private static boolean checkFingerprint(final BlockStore store, final Journal journal,
        final BitmapRegistry registry) throws IOException
    {
        final String recorded = journal.replay().imageFingerprint();
        if (recorded == null || !(store instanceof RawFileStore raw))
        {
            return false;
        }
        final String difference = ImageFingerprint.difference(recorded, ImageFingerprint.of(raw.path()));
        if (difference != null)
        {
            registry.markImageChanged("image " + raw.path() + " changed while Tidemark was not running ("
                + difference + ")");
            return true;
        }
        return false;
    }

    private void start(final DiskOptions options)
    {
        registry.durable(options.durable());
        journal.syncOnCommit(options.durable());
        ring = new WriteRing(name, store, registry, journal, options.ringSize(), options.waitStrategy(),
            options.durable(), options.pipeline());
        if (checkpoints.hasMap())
        {
            // Before open returns, so before the first write: the epoch map misses nothing.
            ring.submitTask(() -> ring.markHook(checkpoints)).join();
        }
    }

    /** @return the disk's name. */
    public String name()
    {
        return name;
    }

    /** @return size in bytes. */
    public long size()
    {
        return size;
    }

    /** @return the store underneath; writing to it directly bypasses tracking. */
    public BlockStore store()
    {
        return store;
    }

    /** @return the disk's bitmaps. */
    public BitmapRegistry bitmaps()
    {
        return registry;
    }

    /** @return the disk's checkpoints and epoch map. */
    public DiskCheckpoints checkpoints()
    {
        return checkpoints;
    }

    /** @return the disk's metadata journal (jobs append their records here). */
    public Journal journal()
    {
        return journal;
    }

    /** @return what opening repaired or ignored (torn journal tail, merged-back successors, orphan files). */
    public List<String> openMessages()
    {
        final List<String> messages = new ArrayList<>(registry.openMessages());
        messages.addAll(checkpoints.openMessages());
        return messages;
    }

    // ------------------------------------------------------------------------------------------ I/O

    /**
     * Writes {@code data.remaining()} bytes at {@code offset} and waits for completion.
     *
     * @param offset first byte.
     * @param data the bytes; its position advances.
     * @param fua whether the data must be durable before this returns.
     * @throws IOException if the store or a copy-before-write failed.
     * @throws EngineException for a request outside the disk, misaligned, or on a closed disk.
     */
    public void write(final long offset, final ByteBuffer data, final boolean fua) throws IOException
    {
        await(writeAsync(offset, data, fua));
    }

    /**
     * @param offset first byte.
     * @param data the bytes; not touched by the caller until the future completes.
     * @param fua whether the data must be durable before completion.
     * @return completes when the data reached the store.
     * @throws EngineException for a request outside the disk, misaligned, or on a closed disk.
     */
    public CompletableFuture<Void> writeAsync(final long offset, final ByteBuffer data, final boolean fua)
    {
        final CompletableFuture<Void> future = new CompletableFuture<>();
        submit(RequestKind.WRITE, offset, data.remaining(), data, fua, false, futureCompletion(future));
        return future;
    }

    /**
     * Makes {@code [offset, offset + length)} read as zeroes and waits.
     *
     * @param offset first byte.
     * @param length bytes.
     * @param mayUnmap whether the range may be deallocated.
     * @param fua whether the result must be durable before this returns.
     * @throws IOException if the store failed.
     */
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap, final boolean fua)
        throws IOException
    {
        final CompletableFuture<Void> future = new CompletableFuture<>();
        submit(RequestKind.WRITE_ZEROES, offset, length, null, fua, mayUnmap, futureCompletion(future));
        await(future);
    }

    /**
     * Discards {@code [offset, offset + length)} (it then reads as zeroes) and waits; the range is marked dirty.
     *
     * @param offset first byte.
     * @param length bytes.
     * @param fua whether the result must be durable before this returns.
     * @throws IOException if the store failed.
     */
    public void discard(final long offset, final long length, final boolean fua) throws IOException
    {
        final CompletableFuture<Void> future = new CompletableFuture<>();
        submit(RequestKind.DISCARD, offset, length, null, fua, true, futureCompletion(future));
        await(future);
    }

    /**
     * Makes every write completed before this call durable, and waits.
     *
     * @throws IOException if the store's flush failed.
     */
    public void flush() throws IOException
    {
        final CompletableFuture<Void> future = new CompletableFuture<>();
        submit(RequestKind.FLUSH, 0, 0, null, false, false, futureCompletion(future));
        await(future);
    }

    /**
     * The asynchronous entry the NBD server and benchmarks use: validates, publishes, returns at once.
     *
     * @param kind WRITE, WRITE_ZEROES, DISCARD or FLUSH.
     * @param offset first byte (ignored for FLUSH).
     * @param length bytes (ignored for FLUSH).
     * @param data the bytes of a WRITE, untouched by the caller until completion; else {@code null}.
     * @param fua whether the request must be durable before it completes.
     * @param mayUnmap for WRITE_ZEROES: whether the range may be deallocated.
     * @param completion receives the outcome on the ring thread that writes (see {@link Pipeline}); a zero-length
     *                   request completes at once on the calling thread with sequence -1.
     * @return the request's ring sequence, or -1 for a zero-length request.
     * @throws EngineException for a request outside the disk, misaligned, on a read-only or closed disk.
     */
    public long submit(final RequestKind kind, final long offset, final long length, final ByteBuffer data,
        final boolean fua, final boolean mayUnmap, final IoCompletion completion)
    {
        if (kind == RequestKind.CONTROL)
        {
            throw new IllegalArgumentException("control requests go through transaction()");
        }
        if (kind != RequestKind.FLUSH)
        {
            checkRange(kind, offset, length);
            if (store.isReadOnly())
            {
                throw new EngineException(EngineException.Reason.READ_ONLY, "Disk '" + name + "' is read-only");
            }
            if (kind == RequestKind.WRITE && (data == null || data.remaining() != length))
            {
                throw new IllegalArgumentException("a WRITE needs a buffer with exactly length bytes remaining");
            }
            if (length == 0)
            {
                completion.complete(-1, null);
                return -1;
            }
        }
        return ring.publish(kind, offset, length, data, fua, mayUnmap, completion);
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code offset}; sees every completed write.
     *
     * @param offset first byte.
     * @param dst where the bytes go; its position advances.
     * @throws IOException if the store failed.
     */
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        checkRange(null, offset, dst.remaining());
        if (dst.remaining() > 0)
        {
            store.read(offset, dst);
        }
    }

    private void checkRange(final RequestKind kind, final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new EngineException(EngineException.Reason.INVALID_REQUEST, "Disk '" + name + "': " + describe(kind)
                + " at offset " + offset + " length " + length + " is outside the disk (" + size + " bytes)");
        }
        if (alignment > 1 && ((offset | length) & (alignment - 1)) != 0)
        {
            throw new EngineException(EngineException.Reason.INVALID_REQUEST, "Disk '" + name + "': " + describe(kind)
                + " at offset " + offset + " length " + length + " is not aligned to " + alignment + " bytes");
        }
    }

    // Only on the error path: every request used to build this string (JFR showed it on the NBD write path).
    private static String describe(final RequestKind kind)
    {
        return kind == null ? "read" : kind.name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    }

    // ------------------------------------------------------------------------------------------ control

    /**
     * Applies {@code actions} all-or-nothing at one cut and waits for the mark thread.
     *
     * @param actions the actions, in order.
     * @return the cut sequence.
     * @throws EngineException the first failing action's error; nothing of the transaction is left then.
     */
    public long transaction(final List<ControlAction> actions)
    {
        final List<ControlAction> copy = List.copyOf(actions);
        stage(this, copy);
        // The after-commit tasks (job starts) run here, on the caller's thread, not on the ring's.
        return join(ring.submitCut(new Transaction(this, copy, null, 0))).finish();
    }

    /**
     * @param actions the actions, in order.
     * @return the cut sequence.
     * @throws EngineException the first failing action's error; nothing of the transaction is left then.
     */
    public long transaction(final ControlAction... actions)
    {
        return transaction(Arrays.asList(actions));
    }

    /**
     * Like {@link #transaction(List)}, without waiting; the after-commit tasks run on the thread that completes the
     * future, which may be the ring's (use {@link #transaction(List)} to keep job starts off the write path).
     *
     * @param actions the actions, in order.
     * @return completes with the cut sequence, or with the first failing action's error.
     */
    public CompletableFuture<Long> transactionAsync(final List<ControlAction> actions)
    {
        final List<ControlAction> copy = List.copyOf(actions);
        stage(this, copy);
        return ring.submitCut(new Transaction(this, copy, null, 0)).thenApply(CutOutcome::finish);
    }

    /** Lets each action build ahead of the cut, on this thread, what it can (best effort: see ControlAction). */
    private static void stage(final TrackedDisk disk, final List<ControlAction> actions)
    {
        for (final ControlAction action : actions)
        {
            try
            {
                action.stage(disk);
            }
            catch (final RuntimeException ex)
            {
                // Nothing staged: prepare does the work at the cut, and reports any error there.
            }
        }
    }

    /**
     * Applies a transaction over several disks all-or-nothing at one cut that is the same instant on every one of
     * them (I2), and waits: every write that completed on any of the disks before a write that falls before the cut
     * was submitted is before the cut too ({@link JointCut} says why). Each disk's actions run on its own ring
     * thread, in the order given, and every disk's journal records its part in one group; if any action of any disk
     * fails, nothing of the transaction is left on any disk. Disks without recent requests are reached first, busy
     * ones once those are at the cut, so that a busy disk's guest writes do not wait for idle rings to wake up.
     *
     * @param actionsByDisk each disk's actions, in order; the map's iteration order is the order of the disks.
     * @return each disk's cut sequence.
     * @throws EngineException the first failing action's error (or why a disk could not take part).
     */
    public static Map<TrackedDisk, Long> transaction(final Map<TrackedDisk, List<ControlAction>> actionsByDisk)
    {
        final Map<TrackedDisk, Long> cuts = new LinkedHashMap<>();
        if (actionsByDisk.isEmpty())
        {
            return cuts;
        }
        if (actionsByDisk.size() == 1)
        {
            final Map.Entry<TrackedDisk, List<ControlAction>> only = actionsByDisk.entrySet().iterator().next();
            cuts.put(only.getKey(), only.getKey().transaction(only.getValue()));
            return cuts;
        }
        final List<TrackedDisk> disks = new ArrayList<>(actionsByDisk.keySet());
        final List<List<ControlAction>> actions = new ArrayList<>(actionsByDisk.values());
        final int members = disks.size();
        final List<Path> journals = new ArrayList<>();
        final long[] cursors = new long[members];
        for (int i = 0; i < members; i++)
        {
            journals.add(disks.get(i).journal.file());
            cursors[i] = disks.get(i).ring.publishedSequence();
        }
        final long sampled = System.nanoTime();
        final JointCut joint = new JointCut(UUID.randomUUID().toString(), journals, JOINT_ARRIVAL_TIMEOUT_SECONDS,
            TimeUnit.SECONDS);
        // Every member's state is built before any ring meets the joint cut: a ring that arrived waits for the others.
        for (int i = 0; i < members; i++)
        {
            stage(disks.get(i), actions.get(i));
        }
        final boolean[] busy = busyMembers(disks, cursors, sampled);
        final int[] order = idleFirst(busy);
        int idle = 0;
        for (final boolean isBusy : busy)
        {
            idle += isBusy ? 0 : 1;
        }
        final List<CompletableFuture<CutOutcome>> parts = new ArrayList<>(Collections.nCopies(members, null));
        // One publication order for every joint transaction: two of them sharing rings in opposite orders would
        // each hold a ring the other waits for.
        synchronized (JOINT_PUBLICATION_ORDER)
        {
            for (int k = 0; k < members; k++)
            {
                // Busy disks join only once the idle ones are at the cut: waking an idle ring takes a scheduler's
                // delay (milliseconds on a loaded host), which guest writes queued on a busy ring would wait out.
                if (k == idle && idle > 0 && !joint.awaitArrivals(idle))
                {
                    abandon(actions, order, k, parts);
                    throw asRuntime(joint.failure());
                }
                final int i = order[k];
                try
                {
                    parts.set(i, disks.get(i).ring.submitCut(new Transaction(disks.get(i), actions.get(i), joint, i)));
                }
                catch (final RuntimeException ex)
                {
                    joint.cancel(ex);
                    // The failed part was released by its ring; the parts never submitted release here.
                    abandon(actions, order, k + 1, parts);
                    throw ex;
                }
            }
        }
        RuntimeException failure = null;
        for (int i = 0; i < members; i++)
        {
            try
            {
                // Each part's after-commit tasks run here, also when another part failed after its commit.
                cuts.put(disks.get(i), join(parts.get(i)).finish());
            }
            catch (final RuntimeException ex)
            {
                if (failure == null)
                {
                    failure = ex;
                }
            }
        }
        if (failure != null)
        {
            throw failure;
        }
        return cuts;
    }

    /** A disk counts as busy if requests were published to its ring within this long before its cut is published. */
    private static final long BUSY_WINDOW_NANOS = TimeUnit.MILLISECONDS.toNanos(2);

    /**
     * @return per member, whether requests were published to its ring since {@code cursors} were read, at least
     *         {@link #BUSY_WINDOW_NANOS} before this returns.
     */
    private static boolean[] busyMembers(final List<TrackedDisk> disks, final long[] cursors, final long sampled)
    {
        final long left = BUSY_WINDOW_NANOS - (System.nanoTime() - sampled);
        if (left > 0)
        {
            LockSupport.parkNanos(left);
        }
        final boolean[] busy = new boolean[cursors.length];
        for (int i = 0; i < cursors.length; i++)
        {
            busy[i] = disks.get(i).ring.publishedSequence() != cursors[i];
        }
        return busy;
    }

    /** @return the members' indexes, the idle ones first, each group in the transaction's order. */
    private static int[] idleFirst(final boolean[] busy)
    {
        final int[] order = new int[busy.length];
        int next = 0;
        for (final boolean group : new boolean[] {false, true})
        {
            for (int i = 0; i < busy.length; i++)
            {
                if (busy[i] == group)
                {
                    order[next++] = i;
                }
            }
        }
        return order;
    }

    /** Releases the staged state of the members from position {@code from} of {@code order} on, never published. */
    private static void abandon(final List<List<ControlAction>> actions, final int[] order, final int from,
        final List<CompletableFuture<CutOutcome>> parts)
    {
        for (int k = from; k < order.length; k++)
        {
            Transaction.unstage(actions.get(order[k]));
        }
        for (final CompletableFuture<CutOutcome> part : parts)
        {
            if (part != null)
            {
                joinQuietly(part);
            }
        }
    }

    private static RuntimeException asRuntime(final Throwable failure)
    {
        return failure instanceof RuntimeException runtime ? runtime : new IllegalStateException(failure);
    }

    private static void joinQuietly(final CompletableFuture<CutOutcome> part)
    {
        try
        {
            part.join();
        }
        catch (final CompletionException ex)
        {
            // The caller reports the failure that cancelled the transaction.
        }
    }

    /**
     * Switches durable mode at a cut (I5): when on, bits are forced before the data writes of their batch, and
     * journal commits are forced too. Turning it on first forces every bit recorded so far: most of it from the
     * calling thread before the cut (a lazy disk may hold GiBs of unforced bits), the cut only what was marked
     * since, so the ring waits for little.
     *
     * @param on the mode.
     */
    public void durable(final boolean on)
    {
        // Switches are serialised under the monitor, and close (which unmaps) waits for them: the force ahead must
        // run only while the ring is lazy, or it could take pages a durable group commit needs forced before a write.
        synchronized (this)
        {
            if (on && !closed && !ring.isDurable())
            {
                registry.forceAhead();
                checkpoints.forceAhead();
            }
            ring.durable(on);
        }
    }

    /** @return whether durable mode is on. */
    public boolean isDurable()
    {
        return ring.isDurable();
    }

    /**
     * Installs (or removes, with {@code null}) the hook the ring's mark step calls after the recording bitmaps (the
     * checkpoints' epoch map); mark thread only: from a control action at its cut, or a ring task.
     *
     * @param hook the hook, or {@code null}.
     */
    public void markHook(final MarkHook hook)
    {
        ring.markHook(hook);
    }

    /**
     * @return the write ring itself, for this package's tests; everyone else reads {@link #ringStatistics()} and
     *         goes through {@link #transaction} and {@link #submit}.
     */
    WriteRing ring()
    {
        return ring;
    }

    /**
     * Opens the disk's write log (see {@link WriteLog}); not on the ring thread. Costs one mark-thread task.
     *
     * @return the log, or {@code null} when another one is open or the disk is closed.
     */
    public WriteLog openWriteLog()
    {
        return ring.openWriteLog();
    }

    /**
     * Closes a write log; any thread, idempotent.
     *
     * @param log from {@link #openWriteLog()}, or {@code null}.
     */
    public void closeWriteLog(final WriteLog log)
    {
        ring.closeWriteLog(log);
    }

    /** @return the write ring's counters, epoch and the time control requests held its mark thread. */
    public RingStatistics ringStatistics()
    {
        return ring.statistics();
    }

    /** @return the longest holds of the ring thread since the previous call ({@link WriteRing#takeHoldWindow()}). */
    public RingStatistics.HoldWindow takeRingHoldWindow()
    {
        return ring.takeHoldWindow();
    }

    // ------------------------------------------------------------------------------------------ events

    /** @param listener receives every event of this disk and its jobs. */
    public void addListener(final EngineEvents listener)
    {
        listeners.add(listener);
    }

    /** @param listener a listener added before. */
    public void removeListener(final EngineEvents listener)
    {
        listeners.remove(listener);
    }

    /**
     * Delivers an event to every listener, in the calling thread; a failing listener does not stop the others.
     *
     * @param event QMP event name.
     * @param data its members.
     */
    public void emit(final String event, final Map<String, Object> data)
    {
        final Map<String, Object> frozen = Map.copyOf(data);
        for (final EngineEvents listener : listeners)
        {
            try
            {
                listener.onEvent(event, frozen);
            }
            catch (final RuntimeException ex)
            {
                // A listener's failure is its own; the engine goes on.
            }
        }
    }

    /**
     * Stops the ring after every published request finished, closes the bitmaps (a clean close), appends the
     * journal's clean-close record, and closes the store when the options say so.
     *
     * @throws IOException if the store's close failed.
     */
    @Override
    public synchronized void close() throws IOException
    {
        if (closed)
        {
            return;
        }
        closed = true;
        ring.close();
        try
        {
            registry.close();
            checkpoints.close();
            if (store instanceof RawFileStore raw)
            {
                // Every write reached the file: this fingerprint is what the next open must find. Without one (the
                // attributes could not be read) the next open has nothing to compare and checks nothing.
                try
                {
                    journal.append(JournalRecord.imageFingerprint(ImageFingerprint.of(raw.path())));
                }
                catch (final IOException ex)
                {
                    journal.append(JournalRecord.outOfBandChange("fingerprint of " + raw.path()
                        + " could not be taken at close: " + ex.getMessage()));
                }
            }
            journal.close();
        }
        finally
        {
            if (closeStore)
            {
                store.close();
            }
        }
    }

    private static IoCompletion futureCompletion(final CompletableFuture<Void> future)
    {
        return (sequence, error) ->
        {
            if (error == null)
            {
                future.complete(null);
            }
            else
            {
                future.completeExceptionally(error);
            }
        };
    }

    private static void await(final CompletableFuture<Void> future) throws IOException
    {
        try
        {
            future.get();
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            final InterruptedIOException interrupted = new InterruptedIOException("interrupted waiting for the ring");
            interrupted.initCause(ex);
            throw interrupted;
        }
        catch (final ExecutionException ex)
        {
            final Throwable cause = ex.getCause();
            if (cause instanceof IOException io)
            {
                throw new IOException(io.getMessage(), io);
            }
            if (cause instanceof RuntimeException runtime)
            {
                throw runtime;
            }
            throw new IOException(cause);
        }
    }

    private static <T> T join(final CompletableFuture<T> future)
    {
        try
        {
            return future.join();
        }
        catch (final CompletionException ex)
        {
            if (ex.getCause() instanceof RuntimeException runtime)
            {
                throw runtime;
            }
            throw ex;
        }
    }
}
