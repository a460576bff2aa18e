package dev.tidemark.engine.ring;

import com.lmax.disruptor.EventHandler;
import com.lmax.disruptor.ExceptionHandler;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.WaitStrategy;
import com.lmax.disruptor.dsl.Disruptor;
import com.lmax.disruptor.dsl.ProducerType;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.MarkHook;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.WriteInterceptor;
import dev.tidemark.engine.WriteLog;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapRegistry;
import dev.tidemark.engine.registry.MarkSide;
import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

/**
 * The write ring of one disk: a multi-producer Disruptor whose handlers run mark, persist, copy-before-write and
 * write in that order on one ring thread ({@link Pipeline#FUSED}) or three ({@link Pipeline#STAGED});
 * {@code publish*} methods are safe for concurrent use by any number of threads.
 *
 * <p>Fused: the ring thread ({@code <disk>-ring}) marks each request as it arrives and keeps the requests not yet
 * written pending in their slots; at the end of each Disruptor batch, before each control request and every
 * {@value #DRAIN_BOUND} requests it forces the bitmap pages they dirtied (durable mode: group commit), then calls
 * the interceptors, issues the store call and completes each pending request in ring order. A control request
 * runs at its sequence (the cut) after every earlier request completed, and completes its
 * {@link RingCut#writesBeforeCutDone()} before its handler runs. Each request crosses one hand-off (producer to
 * ring thread) instead of three.
 *
 * <p>Staged: the mark thread ({@code <disk>-mark}) sets bits, runs control actions and forces at the end of every
 * batch; the copy-before-write thread ({@code <disk>-cbw}) calls the interceptors; the write thread
 * ({@code <disk>-write}) issues the store calls, completes requests and each cut's writes-before-cut future. A slow
 * interceptor or store call then does not hold up marking and transactions.
 *
 * <p>In both, bits are set (and forced, in durable mode) before the data write is issued (I1), because persist
 * runs before any request of its batch leaves the mark step: a {@code BatchEventProcessor} publishes its sequence
 * only after the whole batch returned, so staged, nothing of a batch reaches copy-before-write before the force;
 * fused, the force runs before the drain's first store call on the same thread.
 *
 * <h2>Epochs</h2>
 * <p><b>What an epoch is.</b> The writes of a disk between two consecutive cuts form one epoch; epochs are numbered
 * from 0 when the ring starts, and each control request that commits (a transaction, a mark-thread task) ends the
 * current epoch and opens the next ({@link #epoch()}). An epoch fixes what its writes do besides reaching the
 * store: the bitmaps they are marked in and the interceptors (backup, fleecing copy-before-write) they pass first.
 * The mark thread holds that as one immutable {@code Epoch} value, replaced by a single reference assignment when
 * the cut ends.
 *
 * <p><b>How a write learns its epoch.</b> On the mark thread, when the mark step reaches the write's slot, it reads
 * the current {@code Epoch} once, stamps its number into the {@link RingEvent}, marks the write in that epoch's
 * recorders and stamps that epoch's interceptors on the event; the copy-before-write step later uses only what was
 * stamped, never the state of "now".
 *
 * <p><b>Why no write falls in two epochs or in none.</b> The mark thread handles the ring's slots one at a time in
 * sequence order, and a cut is itself a slot (a control request). Every data slot is marked exactly once, and
 * reads the {@code Epoch} exactly once; a cut replaces it only between two slots. So the writes sequenced before
 * the cut's slot are in the old epoch and all later ones in the new one. Fused, every write of the old epoch is in
 * the store before the cut's handler runs ({@link RingCut#writesBeforeCutDone()}); staged, the write thread
 * completes that future when it passes the cut.
 *
 * <p><b>What readers see while a cut runs.</b> A cut's actions run on the mark thread under the registry's
 * monitor, so queries see the registry before or after the transaction, never in between; sha256 and exports read
 * bitmaps outside the monitor and may see bits of writes of the epoch being marked (reads are not snapshots), but
 * never a bitmap that was cleared, replaced or retired under them (retired bitmaps wait for their readers). The
 * costly parts of a cut are built before its slot enters the ring ({@code ControlAction.stage}: new bitmaps and
 * successors, their files), so the mark thread only swaps references; {@link #statistics()} reports how long each
 * kind of control request held it.
 *
 * <p><b>Durable mode and the journal.</b> A cut's journal records form one group, committed (and forced, in
 * durable mode) on the mark thread before the new epoch opens, so a crash leaves the disk in the old epoch's
 * state or the new one's. Group commit forces the bitmap pages the writes of a batch dirtied before any of them
 * reaches the store; fused, a batch ends at every cut, so its writes all belong to one epoch; staged, a batch may
 * span a cut, and nothing of it moves downstream before its force. A cut over several disks is
 * one instant on all of them ({@code JointCut}): each ring stops at its slot until every member arrived.
 *
 * <p>A merge cannot copy its bitmaps at the cut, so it copies them before and asks the ring for a
 * {@link WriteLog} ({@link #openWriteLog()}): the mark step appends every write it marks while the log is open, so
 * at the cut only the writes since the copy caught up are applied. The copy is valid only if the log's epoch is
 * still the current one at the cut, that is, if no other cut committed in between.
 *
 * <p>A backup job's reclaim and the switch to durable mode do their bulk the same way, before the cut: the reclaim
 * merges the successor ahead with a log open, the switch forces what lazy mode left unforced.
 *
 * <p>What this is not yet: the cut is still a barrier in each ring, not the lock-free epoch increment with a grace
 * period that docs/architecture.md describes; writes wait for the cut's own mark-thread time (reference swaps, the
 * journal group and, in durable mode, its force), and a joint cut waits until every member ring arrived.
 *
 * <h2>What the ring knows</h2>
 * <p>Events and handlers, not disks: a control request carries a {@link CutHandler}, which the mark thread runs
 * at the cut with a {@link RingCut} (sequence, epoch, interceptors, writes-before-cut, after-commit). The engine's
 * {@code TrackedDisk} builds this ring and submits its transactions as handlers; the transaction (its actions,
 * their {@code CutContext} with the disk, the journal group, the meeting of a joint cut) runs in the engine's
 * package. So the ring does not depend on the disk that owns it, and the registry's mark-thread hooks
 * ({@link MarkSide}) reach only the ring, which claims them when it is built.
 */
public final class WriteRing implements AutoCloseable
{
    /** Pending requests after which the fused handler drains even inside a batch, bounding their latency. */
    static final int DRAIN_BOUND = 256;
    /** Bits of {@link #longestDrain} that count the drain's requests. */
    private static final int DRAIN_COUNT_BITS = 20;
    private static final long DRAIN_COUNT_MASK = (1L << DRAIN_COUNT_BITS) - 1;
    /** About 2.4 hours: a longer drain is recorded as this long. */
    private static final long MAX_DRAIN_NANOS = (1L << (63 - DRAIN_COUNT_BITS)) - 1;
    private static final java.lang.management.ThreadMXBean THREADS =
        java.lang.management.ManagementFactory.getThreadMXBean();

    private final String diskName;
    private final BlockStore store;
    private final BitmapRegistry registry;
    /** The registry's hooks for its mark thread, claimed by this ring alone. */
    private final MarkSide markSide;
    private final Journal journal;
    private final Pipeline pipeline;
    private final Disruptor<RingEvent> disruptor;
    private final RingBuffer<RingEvent> ring;
    // Producers in the middle of publishing; striped so that producers do not contend on one word.
    private final LongAdder publishing = new LongAdder();
    private final AtomicLong groupCommits = new AtomicLong();
    private final AtomicLong forcedPages = new AtomicLong();
    private final AtomicLong batches = new AtomicLong();
    private final ControlTimes controlTimes = new ControlTimes();
    /**
     * The longest fused drain since the last {@link #takeHoldWindow()} (nanoseconds in the high 44 bits, requests in
     * the low 20, so that one atomic word keeps the pair together); raised by the mark thread only.
     */
    private final AtomicLong longestDrain = new AtomicLong();
    /** The mark thread's epoch number, published for {@link #statistics()}. */
    private volatile long epochPublished;
    /** The open write log, read by the mark thread at every data write; at most one at a time. */
    private final AtomicReference<WriteLog> writeLog = new AtomicReference<>();
    private volatile boolean closed;
    private volatile boolean durable;
    private volatile Thread markThread;
    /** Marked after the recorders (checkpoint epochs); read and written on the mark thread only. */
    private MarkHook markHook;

    /**
     * Creates and starts the ring; it claims the registry's mark side ({@link BitmapRegistry#claimMarkSide()}).
     *
     * @param diskName the disk's name (for thread names and messages).
     * @param store where data goes.
     * @param registry the disk's bitmaps, whose mark side no other ring claimed.
     * @param journal the disk's journal.
     * @param size ring slots, a power of two.
     * @param waitStrategy how handlers wait.
     * @param durable whether durable mode starts on.
     * @param pipeline one ring thread or three.
     */
    public WriteRing(final String diskName, final BlockStore store, final BitmapRegistry registry,
        final Journal journal, final int size, final WaitStrategy waitStrategy, final boolean durable,
        final Pipeline pipeline)
    {
        this.diskName = diskName;
        this.store = store;
        this.registry = registry;
        this.markSide = registry.claimMarkSide();
        this.journal = journal;
        this.durable = durable;
        this.pipeline = pipeline;
        final AtomicInteger threadIndex = new AtomicInteger();
        final String[] roles = pipeline == Pipeline.FUSED ? new String[] {"ring"} : new String[] {"mark", "cbw", "write"};
        disruptor = new Disruptor<>(RingEvent::new, size, runnable ->
        {
            final Thread thread = new Thread(runnable, "tidemark-" + diskName + "-"
                + roles[Math.min(threadIndex.getAndIncrement(), roles.length - 1)]);
            thread.setDaemon(true);
            return thread;
        }, ProducerType.MULTI, waitStrategy);
        disruptor.setDefaultExceptionHandler(new FailEventHandler());
        if (pipeline == Pipeline.FUSED)
        {
            disruptor.handleEventsWith(new FusedHandler());
        }
        else
        {
            disruptor.handleEventsWith(new MarkHandler()).then(new CopyBeforeWriteHandler()).then(new WriteHandler());
        }
        ring = disruptor.start();
    }

    /** @param on whether new bits are forced before the data of their batch (switches at a cut). */
    public void durable(final boolean on)
    {
        submitTask(() ->
        {
            registry.durable(on);
            if (markHook != null)
            {
                markHook.durable(on);
            }
            durable = on;
            journal.syncOnCommit(on);
        }).join();
    }

    /**
     * Installs (or, with {@code null}, removes) the hook the mark step calls after the recording bitmaps; mark thread
     * only, so it takes effect between two writes (at a cut, or in a {@link #submitTask} task).
     *
     * @param hook the hook, or {@code null}.
     */
    public void markHook(final MarkHook hook)
    {
        if (Thread.currentThread() != markThread)
        {
            throw new IllegalStateException("the mark hook of disk '" + diskName + "' is set on its mark thread only");
        }
        markHook = hook;
    }

    /** @return whether durable mode is on. */
    public boolean isDurable()
    {
        return durable;
    }

    /** @return how many group commits (one per batch that gained bits in durable mode) ran. */
    public long groupCommits()
    {
        return groupCommits.get();
    }

    /** @return how many bitmap pages group commits forced. */
    public long forcedPages()
    {
        return forcedPages.get();
    }

    /**
     * @return how many batches were group-committed and written: staged, the mark handler's Disruptor batches; fused,
     *         the drains (a batch is split at control requests and every {@value #DRAIN_BOUND} requests).
     */
    public long batches()
    {
        return batches.get();
    }

    /** @return a snapshot of the ring's counters, its epoch and the time control requests held the mark thread. */
    public RingStatistics statistics()
    {
        return new RingStatistics(groupCommits.get(), forcedPages.get(), batches.get(), epochPublished,
            controlTimes.snapshot());
    }

    /**
     * Ends the current hold window and starts the next; any thread. Monitoring that reads windows from two places
     * splits them between its readers. A drain is recorded once it has completed its requests, so its figure can
     * fall into the window after the one its requests completed in.
     *
     * @return the longest batch and control request that held the ring thread since the previous call (or start).
     */
    public RingStatistics.HoldWindow takeHoldWindow()
    {
        final long drain = longestDrain.getAndSet(0);
        return controlTimes.takeWindow(drain >>> DRAIN_COUNT_BITS, drain & DRAIN_COUNT_MASK);
    }

    /**
     * @return the ring's publication cursor, any thread: it moves with every request published (guest I/O or
     *         control), so two readings tell whether the disk was in use in between.
     */
    public long publishedSequence()
    {
        return ring.getCursor();
    }

    /** @return the disk's current epoch: how many cuts (committed transactions and tasks) the ring has run. */
    public long epoch()
    {
        return epochPublished;
    }

    /**
     * Opens the ring's write log so that a control action can build its new state off the ring thread from a copy
     * of the bitmaps, and at its cut add only the writes marked since the copy. Every data write marked after this
     * returns is in the log; every write marked before is already in the bitmaps, visible to the caller. Costs one
     * mark-thread task (a cut with no actions). Not on the mark thread.
     *
     * @return the log, or {@code null} when another one is open or the ring is closed.
     */
    public WriteLog openWriteLog()
    {
        final WriteLog log = new WriteLog();
        if (!writeLog.compareAndSet(null, log))
        {
            return null;
        }
        try
        {
            // Runs after every earlier write was marked; every later one sees the log. Its own cut opens the epoch.
            submitTask(() -> log.opened(epochPublished + 1)).join();
            return log;
        }
        catch (final RuntimeException ex)
        {
            closeWriteLog(log);
            return null;
        }
    }

    /**
     * Closes a write log (the mark thread stops adding to it at its next write); any thread, idempotent.
     *
     * @param log from {@link #openWriteLog()}, or {@code null}.
     */
    public void closeWriteLog(final WriteLog log)
    {
        if (log != null)
        {
            writeLog.compareAndSet(log, null);
        }
    }

    /** @return how the ring spreads its handlers over threads. */
    public Pipeline pipeline()
    {
        return pipeline;
    }

    /**
     * @return the thread that marks and runs control actions, once it started: {@code <disk>-ring} fused (which also
     *         writes and completes), {@code <disk>-mark} staged.
     */
    public Thread markThread()
    {
        return markThread;
    }

    /**
     * Publishes a data request or a flush; the caller has validated the range.
     *
     * @param kind WRITE, WRITE_ZEROES, DISCARD or FLUSH.
     * @param offset first byte.
     * @param length bytes.
     * @param payload the data of a WRITE, untouched by the caller until completion.
     * @param fua whether the request must be durable before it completes.
     * @param mayUnmap for WRITE_ZEROES: whether the range may be deallocated.
     * @param completion receives the outcome.
     * @return the request's sequence.
     */
    public long publish(final RequestKind kind, final long offset, final long length, final ByteBuffer payload,
        final boolean fua, final boolean mayUnmap, final IoCompletion completion)
    {
        publishing.increment();
        try
        {
            checkOpen();
            final long sequence = ring.next();
            try
            {
                final RingEvent event = ring.get(sequence);
                event.kind = kind;
                event.offset = offset;
                event.length = length;
                event.payload = payload;
                event.fua = fua;
                event.mayUnmap = mayUnmap;
                event.completion = completion;
                event.control = null;
                event.error = null;
            }
            finally
            {
                ring.publish(sequence);
            }
            return sequence;
        }
        finally
        {
            publishing.decrement();
        }
    }

    /**
     * Publishes a control request whose handler runs at its cut; a transaction of the engine is one. A handler that
     * waits at its cut for other rings (a part of a transaction over several disks) must be published on every ring
     * before any result is awaited, and two such transactions in the same order on every ring they share (the
     * caller serialises), or two rings could each wait at a different cut for the other.
     *
     * @param handler what runs at the cut; released by the ring (also when this throws).
     * @return completes, on the mark thread, with what the cut came to; the submitter must call
     *         {@link CutOutcome#finish} once on it, which runs the after-commit tasks on the submitter's thread and
     *         yields the cut sequence or the failure. Completes exceptionally only if the ring itself failed.
     */
    public CompletableFuture<CutOutcome> submitCut(final CutHandler handler)
    {
        return publishControl(new ControlRequest(handler, null));
    }

    /**
     * Runs {@code task} on the mark thread at a cut (not under the registry's monitor).
     *
     * @param task the task; must not block.
     * @return completes with the cut sequence.
     */
    public CompletableFuture<Long> submitTask(final Runnable task)
    {
        // A task has no after-commit tasks: finishing it on the mark thread only unwraps the outcome.
        return publishControl(new ControlRequest(null, task)).thenApply(CutOutcome::finish);
    }

    private CompletableFuture<CutOutcome> publishControl(final ControlRequest request)
    {
        if (Thread.currentThread() == markThread)
        {
            request.release();
            throw new IllegalStateException("a transaction cannot be submitted from the mark thread");
        }
        publishing.increment();
        try
        {
            try
            {
                checkOpen();
            }
            catch (final RuntimeException ex)
            {
                request.release();
                throw ex;
            }
            final long sequence = ring.next();
            try
            {
                final RingEvent event = ring.get(sequence);
                event.kind = RequestKind.CONTROL;
                event.offset = 0;
                event.length = 0;
                event.payload = null;
                event.fua = false;
                event.completion = null;
                event.control = request;
                event.error = null;
            }
            finally
            {
                ring.publish(sequence);
            }
        }
        finally
        {
            publishing.decrement();
        }
        return request.result;
    }

    private void checkOpen()
    {
        if (closed)
        {
            throw EngineException.generic("Disk '" + diskName + "' is closed");
        }
    }

    /**
     * Refuses new requests, lets every published one finish, and stops the threads.
     *
     * <p>A producer announces itself ({@code publishing}) before it reads {@code closed}; close writes
     * {@code closed} before it reads the announcements. Both are sequentially consistent, so either the
     * producer sees the disk closed, or close sees the producer and waits for its publication, which the
     * Disruptor's shutdown then drains.
     */
    @Override
    public synchronized void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        while (publishing.sum() != 0)
        {
            Thread.onSpinWait();
        }
        disruptor.shutdown();
    }

    /**
     * Mark, group commit and control actions, shared by both pipelines; used only by the one ring thread that runs
     * the mark handler (the mark thread).
     */
    private final class Marker
    {
        private final List<DirtyBitmap> gained = new ArrayList<>();
        /** The hook whose stores await the group commit (kept: a cut later in the batch may change the hook). */
        private MarkHook hookGained;
        /** The interceptors being built by the running cut; {@link #current} holds the epoch's own. */
        private WriteInterceptor[] interceptors = RingEvent.NO_INTERCEPTORS;
        private Epoch current = new Epoch(0, new DirtyBitmap[0], RingEvent.NO_INTERCEPTORS);
        private Thread owner;

        void start()
        {
            owner = Thread.currentThread();
            markThread = owner;
            markSide.bindMarkThread(owner);
            current = new Epoch(0, markSide.recorders(), interceptors);
        }

        /**
         * Ends a control request: a committed cut opens the next epoch, an aborted one keeps the number; either way
         * the state writes use from here on is read once from the registry and the cut's interceptors.
         */
        private void closeCut(final boolean committed)
        {
            final long number = committed ? current.number() + 1 : current.number();
            current = new Epoch(number, markSide.recorders(), interceptors);
            epochPublished = number;
        }

        boolean sameThread()
        {
            return owner == Thread.currentThread();
        }

        /**
         * Places the request in the current epoch and, from that epoch's state alone, sets its bits in the epoch's
         * recorders and stamps it with the epoch's interceptors.
         */
        void mark(final RingEvent event)
        {
            try
            {
                final Epoch epoch = current;
                event.epoch = epoch.number();
                final WriteLog log = writeLog.get();
                if (log != null)
                {
                    log.add(event.offset, event.length);
                }
                final boolean track = durable;
                for (final DirtyBitmap bitmap : epoch.recorders())
                {
                    if (bitmap.mark(event.offset, event.length) && track && !containsIdentity(bitmap))
                    {
                        gained.add(bitmap);
                    }
                }
                final MarkHook hook = markHook;
                if (hook != null && hook.mark(event.offset, event.length) && track)
                {
                    hookGained = hook;
                }
                event.interceptors = epoch.interceptors();
            }
            catch (final Throwable ex)
            {
                // Caught here, not by FailEventHandler: an escaping exception makes the BatchEventProcessor
                // release the earlier events of the batch before their group commit.
                event.error = ex;
            }
        }

        private boolean containsIdentity(final DirtyBitmap bitmap)
        {
            for (final DirtyBitmap b : gained)
            {
                if (b == bitmap)
                {
                    return true;
                }
            }
            return false;
        }

        /**
         * Forces the pages that gained bits since the last group commit (durable mode; nothing gained in lazy mode).
         *
         * @return {@code null}, or the failure every data request marked since the last group commit must fail with.
         */
        IOException groupCommit()
        {
            if (gained.isEmpty() && hookGained == null)
            {
                return null;
            }
            try
            {
                long pages = 0;
                for (final DirtyBitmap bitmap : gained)
                {
                    pages += bitmap.force();
                }
                if (hookGained != null)
                {
                    pages += hookGained.force();
                }
                forcedPages.addAndGet(pages);
                groupCommits.incrementAndGet();
                return null;
            }
            catch (final RuntimeException | Error ex)
            {
                return new IOException("durable mode: forcing bitmap pages failed", ex);
            }
            finally
            {
                gained.clear();
                hookGained = null;
            }
        }

        /** Runs a cut handler or a task at {@code sequence}, its cut, and completes its result. */
        void runControl(final ControlRequest request, final long sequence)
        {
            final long cpuStart = cpuTime();
            final long start = System.nanoTime();
            boolean committed = false;
            try
            {
                committed = runControlOrThrow(request, sequence);
            }
            catch (final Throwable ex)
            {
                // As FailEventHandler would: the ring keeps going, the caller learns of the bug.
                request.fail(ex);
            }
            finally
            {
                closeCut(committed);
                request.release();
                final long wall = System.nanoTime() - start;
                controlTimes.record(request.kind, wall, cpuStart < 0 ? -1 : cpuTime() - cpuStart);
                // Last: whoever waits for the result sees the new epoch, the statistics and the staging released.
                request.finish();
            }
        }

        /** @return whether the request committed (a task that ran, a handler that committed). */
        private boolean runControlOrThrow(final ControlRequest request, final long sequence)
        {
            if (request.task != null)
            {
                try
                {
                    request.task.run();
                    request.succeed(sequence);
                    return true;
                }
                catch (final RuntimeException ex)
                {
                    request.fail(ex);
                    return false;
                }
            }
            final Cut cut = new Cut(sequence, request);
            synchronized (registry)
            {
                final boolean committed = request.handler.run(cut);
                if (!committed)
                {
                    interceptors = cut.interceptorsBefore;
                }
                markSide.recomputeRecorders();
                if (!committed)
                {
                    return false;
                }
                // Not run here: each wakes a thread, which could take the ring's CPU (see CutOutcome).
                request.afterCommit(cut.afterCommit);
                request.succeed(sequence);
                return true;
            }
        }

        /** The cut handed to a control request's handler; lives for one request on the mark thread. */
        private final class Cut implements RingCut
        {
            private final long sequence;
            private final ControlRequest request;
            private final WriteInterceptor[] interceptorsBefore;
            private final List<Runnable> afterCommit = new ArrayList<>();

            Cut(final long sequence, final ControlRequest request)
            {
                this.sequence = sequence;
                this.request = request;
                this.interceptorsBefore = interceptors;
            }

            @Override
            public long cutSequence()
            {
                return sequence;
            }

            @Override
            public long epoch()
            {
                return current.number();
            }

            @Override
            public void addInterceptor(final WriteInterceptor interceptor)
            {
                final WriteInterceptor[] next = Arrays.copyOf(interceptors, interceptors.length + 1);
                next[interceptors.length] = interceptor;
                interceptors = next;
            }

            @Override
            public void removeInterceptor(final WriteInterceptor interceptor)
            {
                final List<WriteInterceptor> next = new ArrayList<>(Arrays.asList(interceptors));
                next.remove(interceptor);
                interceptors = next.toArray(RingEvent.NO_INTERCEPTORS);
            }

            @Override
            public CompletableFuture<Void> writesBeforeCutDone()
            {
                return request.writesBeforeCut;
            }

            @Override
            public void afterCommit(final Runnable task)
            {
                afterCommit.add(task);
            }

            @Override
            public void fail(final Throwable why)
            {
                request.fail(why);
            }
        }
    }

    /** @return the calling thread's CPU time in nanoseconds, or -1 when the JVM does not measure it. */
    private static long cpuTime()
    {
        return THREADS.isCurrentThreadCpuTimeSupported() ? THREADS.getCurrentThreadCpuTime() : -1;
    }

    /**
     * What the writes of one epoch use, fixed when the epoch opens; the mark thread reads it for every write and
     * replaces it (one reference) at each cut.
     *
     * @param number the epoch.
     * @param recorders the bitmaps its writes are marked in.
     * @param interceptors the interceptors its writes pass before the store.
     */
    private record Epoch(long number, DirtyBitmap[] recorders, WriteInterceptor[] interceptors)
    {
    }

    /**
     * Calls the interceptors stamped on a data request; a failure is attached to the request, which is then not
     * written.
     */
    private static void intercept(final RingEvent event)
    {
        if (event.error != null || event.interceptors.length == 0 || !event.kind.changesData())
        {
            return;
        }
        for (final WriteInterceptor interceptor : event.interceptors)
        {
            try
            {
                interceptor.beforeWrite(event.offset, event.length);
            }
            catch (final IOException | RuntimeException ex)
            {
                event.error = ex instanceof IOException ? ex
                    : new IOException("copy-before-write failed at offset " + event.offset, ex);
                return;
            }
        }
    }

    /**
     * Issues a request's store call unless it failed earlier, frees its slot's references and completes it; only a
     * throwing completion callback can make this throw.
     */
    private void writeAndComplete(final RingEvent event, final long sequence)
    {
        Throwable error = event.error;
        if (error == null)
        {
            try
            {
                switch (event.kind)
                {
                    case WRITE -> store.write(event.offset, event.payload);
                    case WRITE_ZEROES -> store.writeZeroes(event.offset, event.length, event.mayUnmap);
                    case DISCARD -> store.discard(event.offset, event.length);
                    case FLUSH -> store.flush();
                    default -> throw new IllegalStateException("unexpected " + event.kind);
                }
                if (event.fua && event.kind != RequestKind.FLUSH)
                {
                    store.flush();
                }
            }
            catch (final Throwable ex)
            {
                // An Error from the store too: the request must complete, with it.
                error = ex;
            }
        }
        final IoCompletion completion = event.completion;
        event.clear();
        if (completion != null)
        {
            completion.complete(sequence, error);
        }
    }

    /**
     * The fused pipeline's only handler: marks each request as it arrives and, at the end of each batch, before a
     * control request and every {@value #DRAIN_BOUND} requests, group-commits, intercepts, writes and completes the
     * pending ones in ring order.
     *
     * <p>Pending slots stay valid without copying: this is the ring's only consumer, so producers may reuse a slot
     * only once its sequence is published, which the BatchEventProcessor does after the batch's last event returned
     * (or {@link #drain} earlier, for the requests it completed).
     */
    private final class FusedHandler implements EventHandler<RingEvent>
    {
        private final Marker marker = new Marker();
        private Sequence progress;
        private long firstPending = -1;

        @Override
        public void setSequenceCallback(final Sequence sequenceCallback)
        {
            progress = sequenceCallback;
        }

        @Override
        public void onStart()
        {
            marker.start();
        }

        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            assert marker.sameThread() : "fused handler accessed by two threads";
            if (event.kind == RequestKind.CONTROL)
            {
                // Every request before the cut is in the store before the cut's actions run, so an action or an
                // interceptor may wait for writesBeforeCut: no other thread would complete it.
                drain(sequence - 1);
                final ControlRequest control = event.control;
                event.clear();
                control.writesBeforeCut.complete(null);
                marker.runControl(control, sequence);
                return;
            }
            if (firstPending < 0)
            {
                firstPending = sequence;
            }
            if (event.kind.changesData())
            {
                marker.mark(event);
            }
            if (endOfBatch || sequence - firstPending + 1 >= DRAIN_BOUND)
            {
                drain(sequence);
            }
        }

        /** Group commit, then copy-before-write, store call and completion of every pending request up to last. */
        private void drain(final long last)
        {
            if (firstPending < 0)
            {
                return;
            }
            final long first = firstPending;
            firstPending = -1;
            final long start = System.nanoTime();
            batches.incrementAndGet();
            final IOException forceFailure = marker.groupCommit();
            for (long s = first; s <= last; s++)
            {
                final RingEvent event = ring.get(s);
                try
                {
                    if (forceFailure != null && event.kind.changesData() && event.error == null)
                    {
                        // Bits that may not be durable must not let their data through.
                        event.error = forceFailure;
                    }
                    intercept(event);
                }
                catch (final Throwable ex)
                {
                    event.error = ex;
                }
                try
                {
                    writeAndComplete(event, s);
                }
                catch (final Throwable ex)
                {
                    // Only the completion callback threw: its request is complete, the others must still be.
                }
            }
            // Lets producers reuse the slots now rather than at the end of a long batch.
            progress.set(last);
            final long took = System.nanoTime() - start;
            if (took > longestDrain.getPlain() >>> DRAIN_COUNT_BITS)
            {
                // A reset between the read and this write only moves one figure into the next window.
                longestDrain.setRelease(Math.min(took, MAX_DRAIN_NANOS) << DRAIN_COUNT_BITS
                    | Math.min(last - first + 1, DRAIN_COUNT_MASK));
            }
        }
    }

    /** The staged pipeline's mark handler: bits, control actions, group commit at the end of each batch. */
    private final class MarkHandler implements EventHandler<RingEvent>
    {
        private final Marker marker = new Marker();
        private long batchStart = -1;

        @Override
        public void onStart()
        {
            marker.start();
        }

        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            assert marker.sameThread() : "mark handler accessed by two threads";
            if (batchStart < 0)
            {
                batchStart = sequence;
            }
            if (event.kind.changesData())
            {
                marker.mark(event);
            }
            else if (event.kind == RequestKind.CONTROL)
            {
                marker.runControl(event.control, sequence);
            }
            if (endOfBatch)
            {
                batches.incrementAndGet();
                final IOException failure = marker.groupCommit();
                if (failure != null)
                {
                    // Nothing of the batch is visible downstream yet: fail every data request of it.
                    for (long s = batchStart; s <= sequence; s++)
                    {
                        final RingEvent e = ring.get(s);
                        if (e.kind.changesData() && e.error == null)
                        {
                            e.error = failure;
                        }
                    }
                }
                batchStart = -1;
            }
        }
    }

    /** The staged pipeline's copy-before-write handler: calls the interceptors stamped on each request. */
    private static final class CopyBeforeWriteHandler implements EventHandler<RingEvent>
    {
        private Sequence progress;

        @Override
        public void setSequenceCallback(final Sequence sequenceCallback)
        {
            progress = sequenceCallback;
        }

        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            if (event.error != null || event.interceptors.length == 0 || !event.kind.changesData())
            {
                return;
            }
            // Release everything before this request to the write thread first: an interceptor may wait for
            // RingCut.writesBeforeCutDone(), which the write thread completes only once it gets there.
            progress.set(sequence - 1);
            intercept(event);
        }
    }

    /** The staged pipeline's write handler: store calls in ring order, completions, the end of each cut's drain. */
    private final class WriteHandler implements EventHandler<RingEvent>
    {
        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            if (event.kind == RequestKind.CONTROL)
            {
                final ControlRequest control = event.control;
                event.clear();
                control.writesBeforeCut.complete(null);
                return;
            }
            writeAndComplete(event, sequence);
        }
    }

    /**
     * A handler bug must not stall the ring nor let a failed request's data through: the event carries the error
     * on, so later handlers skip it and the write handler completes the request with it. The mark step and the
     * fused handler catch their failures themselves (an escaping exception would release their slots early), so
     * this is the staged copy-before-write and write handlers' last resort.
     */
    private static final class FailEventHandler implements ExceptionHandler<RingEvent>
    {
        @Override
        public void handleEventException(final Throwable ex, final long sequence, final RingEvent event)
        {
            if (event.error == null)
            {
                event.error = ex;
            }
            final ControlRequest control = event.control;
            if (control != null)
            {
                control.result.completeExceptionally(ex);
            }
        }

        @Override
        public void handleOnStartException(final Throwable ex)
        {
            throw new IllegalStateException("write ring handler failed to start", ex);
        }

        @Override
        public void handleOnShutdownException(final Throwable ex)
        {
            // Nothing is left to fail at shutdown.
        }
    }
}
