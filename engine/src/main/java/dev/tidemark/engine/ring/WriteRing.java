package dev.tidemark.engine.ring;

import com.lmax.disruptor.EventHandler;
import com.lmax.disruptor.ExceptionHandler;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.WaitStrategy;
import com.lmax.disruptor.dsl.Disruptor;
import com.lmax.disruptor.dsl.ProducerType;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.WriteInterceptor;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapRegistry;
import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * The write ring of one disk: a multi-producer Disruptor whose handlers run mark, persist, copy-before-write
 * and write in that order; {@code publish*} methods are safe for concurrent use by any number of threads.
 *
 * <p>Threads: the mark thread ({@code <disk>-mark}) sets bits, runs control actions and, in durable mode, forces
 * the bitmap pages that gained bits at the end of every batch (group commit); the copy-before-write thread
 * ({@code <disk>-cbw}) calls the registered {@link WriteInterceptor}s; the write thread ({@code <disk>-write})
 * issues the store calls and completes requests.
 *
 * <p>Persist runs inside the mark handler at the end of each batch rather than as a fourth handler: a
 * {@code BatchEventProcessor} publishes its sequence only after the whole batch, so no event of the batch can
 * reach copy-before-write or the store before the force returned, and a separate handler would cost one more
 * hand-off per batch for nothing.
 */
public final class WriteRing implements AutoCloseable
{
    private final String diskName;
    private final BlockStore store;
    private final BitmapRegistry registry;
    private final Journal journal;
    private final TrackedDisk disk;
    private final Disruptor<RingEvent> disruptor;
    private final RingBuffer<RingEvent> ring;
    // Producers in the middle of publishing; striped so that producers do not contend on one word.
    private final LongAdder publishing = new LongAdder();
    private final AtomicLong groupCommits = new AtomicLong();
    private final AtomicLong forcedPages = new AtomicLong();
    private final AtomicLong batches = new AtomicLong();
    private volatile boolean closed;
    private volatile boolean durable;
    private volatile Thread markThread;

    /**
     * Creates and starts the ring.
     *
     * @param disk the disk (for {@link CutContext#disk()}).
     * @param store where data goes.
     * @param registry the disk's bitmaps.
     * @param journal the disk's journal.
     * @param size ring slots, a power of two.
     * @param waitStrategy how handlers wait.
     * @param durable whether durable mode starts on.
     */
    public WriteRing(final TrackedDisk disk, final BlockStore store, final BitmapRegistry registry,
        final Journal journal, final int size, final WaitStrategy waitStrategy, final boolean durable)
    {
        this.disk = disk;
        this.diskName = disk.name();
        this.store = store;
        this.registry = registry;
        this.journal = journal;
        this.durable = durable;
        final AtomicInteger threadIndex = new AtomicInteger();
        final String[] roles = {"mark", "cbw", "write"};
        disruptor = new Disruptor<>(RingEvent::new, size, runnable ->
        {
            final Thread thread = new Thread(runnable, "tidemark-" + diskName + "-"
                + roles[Math.min(threadIndex.getAndIncrement(), roles.length - 1)]);
            thread.setDaemon(true);
            return thread;
        }, ProducerType.MULTI, waitStrategy);
        disruptor.setDefaultExceptionHandler(new FailEventHandler());
        disruptor.handleEventsWith(new MarkHandler()).then(new CopyBeforeWriteHandler()).then(new WriteHandler());
        ring = disruptor.start();
    }

    /** @param on whether new bits are forced before the data of their batch (switches at a cut). */
    public void durable(final boolean on)
    {
        submitTask(() ->
        {
            registry.durable(on);
            durable = on;
            journal.syncOnCommit(on);
        }).join();
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

    /** @return how many batches the mark handler processed. */
    public long batches()
    {
        return batches.get();
    }

    /** @return the mark thread, once it started. */
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
     * Runs a transaction at one cut.
     *
     * @param actions the actions, in order.
     * @return completes with the cut sequence once the mark thread committed, or with the first action's error.
     */
    public CompletableFuture<Long> submitTransaction(final List<ControlAction> actions)
    {
        return publishControl(new ControlRequest(List.copyOf(actions), null));
    }

    /**
     * Runs {@code task} on the mark thread at a cut (no journal group).
     *
     * @param task the task; must not block.
     * @return completes with the cut sequence.
     */
    public CompletableFuture<Long> submitTask(final Runnable task)
    {
        return publishControl(new ControlRequest(List.of(), task));
    }

    private CompletableFuture<Long> publishControl(final ControlRequest request)
    {
        if (Thread.currentThread() == markThread)
        {
            throw new IllegalStateException("a transaction cannot be submitted from the mark thread");
        }
        publishing.increment();
        try
        {
            checkOpen();
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

    /** The mark handler: bits, control actions, group commit. */
    private final class MarkHandler implements EventHandler<RingEvent>
    {
        private final List<DirtyBitmap> gainedThisBatch = new ArrayList<>();
        private WriteInterceptor[] interceptors = RingEvent.NO_INTERCEPTORS;
        private long batchStart = -1;
        private Thread owner;

        @Override
        public void onStart()
        {
            owner = Thread.currentThread();
            markThread = owner;
            registry.bindMarkThread(owner);
        }

        private boolean sameThread()
        {
            return owner == Thread.currentThread();
        }

        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            assert sameThread() : "mark handler accessed by two threads";
            if (batchStart < 0)
            {
                batchStart = sequence;
            }
            if (event.kind.changesData())
            {
                final boolean track = durable;
                for (final DirtyBitmap bitmap : registry.recorders())
                {
                    if (bitmap.mark(event.offset, event.length) && track && !containsIdentity(bitmap))
                    {
                        gainedThisBatch.add(bitmap);
                    }
                }
                event.interceptors = interceptors;
            }
            else if (event.kind == RequestKind.CONTROL)
            {
                runControl(event.control, sequence);
            }
            if (endOfBatch)
            {
                batches.incrementAndGet();
                if (!gainedThisBatch.isEmpty())
                {
                    groupCommit(sequence);
                }
                batchStart = -1;
            }
        }

        private boolean containsIdentity(final DirtyBitmap bitmap)
        {
            for (final DirtyBitmap b : gainedThisBatch)
            {
                if (b == bitmap)
                {
                    return true;
                }
            }
            return false;
        }

        private void groupCommit(final long endSequence)
        {
            try
            {
                long pages = 0;
                for (final DirtyBitmap bitmap : gainedThisBatch)
                {
                    pages += bitmap.force();
                }
                forcedPages.addAndGet(pages);
                groupCommits.incrementAndGet();
            }
            catch (final RuntimeException ex)
            {
                // Bits that may not be durable must not let their data through: fail the whole batch.
                final IOException failure = new IOException("durable mode: forcing bitmap pages failed", ex);
                for (long s = batchStart; s <= endSequence; s++)
                {
                    final RingEvent event = ring.get(s);
                    if (event.kind.changesData() && event.error == null)
                    {
                        event.error = failure;
                    }
                }
            }
            finally
            {
                gainedThisBatch.clear();
            }
        }

        private void runControl(final ControlRequest request, final long sequence)
        {
            if (request.task != null)
            {
                try
                {
                    request.task.run();
                    request.result.complete(sequence);
                }
                catch (final RuntimeException ex)
                {
                    request.result.completeExceptionally(ex);
                }
                return;
            }
            final Cut cut = new Cut(sequence, request);
            final List<ControlAction> prepared = new ArrayList<>();
            synchronized (registry)
            {
                journal.beginGroup();
                try
                {
                    for (final ControlAction action : request.actions)
                    {
                        action.prepare(cut);
                        prepared.add(action);
                    }
                }
                catch (final RuntimeException | Error ex)
                {
                    // An Error too: the journal group and the registry must not stay half-prepared.
                    for (int i = prepared.size() - 1; i >= 0; i--)
                    {
                        try
                        {
                            prepared.get(i).abort(cut);
                        }
                        catch (final RuntimeException abortFailure)
                        {
                            ex.addSuppressed(abortFailure);
                        }
                    }
                    interceptors = cut.interceptorsBefore;
                    journal.abortGroup();
                    registry.computeRecordersAfterChange();
                    request.result.completeExceptionally(ex);
                    return;
                }
                journal.commitGroup(sequence);
                RuntimeException commitFailure = null;
                for (final ControlAction action : prepared)
                {
                    try
                    {
                        action.commit(cut);
                    }
                    catch (final RuntimeException ex)
                    {
                        if (commitFailure == null)
                        {
                            commitFailure = ex;
                        }
                        else
                        {
                            commitFailure.addSuppressed(ex);
                        }
                    }
                }
                registry.computeRecordersAfterChange();
                for (final Runnable task : cut.afterCommit)
                {
                    try
                    {
                        task.run();
                    }
                    catch (final RuntimeException ex)
                    {
                        if (commitFailure == null)
                        {
                            commitFailure = ex;
                        }
                    }
                }
                if (commitFailure != null)
                {
                    request.result.completeExceptionally(commitFailure);
                }
                else
                {
                    request.result.complete(sequence);
                }
            }
        }

        /** The cut handed to control actions; lives for one transaction on the mark thread. */
        private final class Cut implements CutContext
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
            public TrackedDisk disk()
            {
                return disk;
            }

            @Override
            public BitmapRegistry registry()
            {
                return registry;
            }

            @Override
            public Journal journal()
            {
                return journal;
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
        }
    }

    /** Calls the interceptors of jobs and fleecing views before data reaches the store. */
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
            // CutContext.writesBeforeCutDone(), which the write thread completes only once it gets there.
            progress.set(sequence - 1);
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
    }

    /** Issues store calls in ring order and completes requests. */
    private final class WriteHandler implements EventHandler<RingEvent>
    {
        @Override
        public void onEvent(final RingEvent event, final long sequence, final boolean endOfBatch)
        {
            if (event.kind == RequestKind.CONTROL)
            {
                event.control.writesBeforeCut.complete(null);
                event.clear();
                return;
            }
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
                catch (final IOException | RuntimeException ex)
                {
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
    }

    /**
     * A handler bug must not stall the ring nor let a failed request's data through: the event carries the error
     * on, so later handlers skip it and the write handler completes the request with it.
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
