package dev.tidemark.engine.job;

import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.EngineException;
import dev.tidemark.io.BackgroundPriority;

import java.io.IOException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A long-running job with QEMU's state machine; the public verbs are safe to call from any thread, the protected
 * work methods only from the job's own worker thread.
 *
 * <p>Every state change goes through one funnel, {@link #transition}, which checks QEMU's transition table
 * ({@link JobStatus#successors()}) and emits {@code JOB_STATUS_CHANGE}. Every verb goes through {@link #applyVerb},
 * which checks the verb table ({@link JobVerb#acceptedIn()}). All state lives under the lock of the job's
 * {@link JobTransaction} (a transaction of one for jobs started alone), so the jobs of one transaction change
 * state, and emit their events, in one total order.
 *
 * <p>Lifecycle: {@code created -> running -> [paused <-> running] -> waiting -> pending -> concluded -> null} on
 * success; {@code ... -> aborting -> concluded -> null} on failure or cancel. A subclass implements {@link #run()}
 * and calls {@link #pausePoint()} between units of work, {@link #throttle(long)} before transferring data, and
 * {@link #handleError(boolean, IOException)} on I/O errors. The hooks {@link #onPrepare()}, {@link #onCommit()},
 * {@link #onAbort()} and {@link #onClean()} run under the transaction lock while the job concludes.
 */
public abstract class Job
{
    /** The system property by which a job's copying thread raises its nice value (default 0: not at all). */
    public static final String JOB_NICE_PROPERTY = "tidemark.job.nice";

    private static final String IDLE_WORKER_NAME = "tidemark-job-idle";
    /**
     * Job threads, kept for a minute after a job: a job starts at its transaction's cut, on the write ring, and
     * handing it to a waiting thread costs the ring a wake-up where creating one cost a {@code Thread.start} that
     * waits for the new thread (hundreds of microseconds). {@link #prestartWorker} makes one wait before a cut.
     */
    private static final AtomicInteger WORKER_THREADS_MADE = new AtomicInteger();
    private static final ThreadPoolExecutor WORKERS = new ThreadPoolExecutor(0, Integer.MAX_VALUE, 60,
        TimeUnit.SECONDS, new SynchronousQueue<>(), runnable ->
        {
            WORKER_THREADS_MADE.incrementAndGet();
            final Thread thread = new Thread(runnable, IDLE_WORKER_NAME);
            thread.setDaemon(true);
            return thread;
        });

    private final String id;
    private final String type;
    private final boolean autoFinalize;
    private final boolean autoDismiss;
    private final EngineEvents events;
    private final RateLimiter limiter;
    private final AtomicLong currentProgress = new AtomicLong();
    private volatile long totalProgress;
    /** Computes the total on first use, off the ring thread (see {@link #setTotalProgressLater}); then null. */
    private volatile java.util.function.LongSupplier totalSource;
    private final Object totalLock = new Object();

    private JobTransaction txn;
    private Runnable onGone;
    private volatile JobStatus status = JobStatus.UNDEFINED;
    private volatile boolean cancelled;
    private volatile boolean busy;
    private boolean userPaused;
    private boolean started;
    private boolean workerDone;
    private volatile String error;
    private volatile String ioStatus = "ok";

    /**
     * @param id the job id (validated and reserved by the {@link JobManager}).
     * @param type the QMP job type, for example {@code backup}.
     * @param options the common job options.
     * @param events where the job's events go.
     */
    protected Job(final String id, final String type, final JobOptions options, final EngineEvents events)
    {
        this.id = id;
        this.type = type;
        this.autoFinalize = options.autoFinalize();
        this.autoDismiss = options.autoDismiss();
        this.events = events;
        this.limiter = new RateLimiter(options.speed());
    }

    /** @return the job id. */
    public final String id()
    {
        return id;
    }

    /** @return the QMP job type. */
    public final String type()
    {
        return type;
    }

    /**
     * The status once any transition in progress has finished: a transition emits its event before it stores the
     * new status, so a client that saw {@code JOB_STATUS_CHANGE} may ask before {@link #status()} shows it.
     *
     * @return the settled status.
     */
    public final JobStatus settledStatus()
    {
        synchronized (lock())
        {
            return status;
        }
    }

    /** @return the current state (a snapshot). */
    public final JobStatus status()
    {
        return status;
    }

    /** @return whether finalize happens without {@code job-finalize}. */
    public final boolean autoFinalize()
    {
        return autoFinalize;
    }

    /** @return whether dismiss happens without {@code job-dismiss}. */
    public final boolean autoDismiss()
    {
        return autoDismiss;
    }

    /** @return bytes done so far. */
    public final long currentProgress()
    {
        return currentProgress.get();
    }

    /** @return bytes to do in total (may grow while the job runs). */
    public final long totalProgress()
    {
        final java.util.function.LongSupplier source = totalSource;
        if (source != null)
        {
            synchronized (totalLock)
            {
                if (totalSource != null)
                {
                    totalProgress = source.getAsLong();
                    totalSource = null;
                }
            }
        }
        return totalProgress;
    }

    /** @return the speed limit in bytes per second, 0 = unlimited. */
    public final long speed()
    {
        return limiter.rate();
    }

    /** @return the failure text once the job failed, else {@code null}. */
    public final String error()
    {
        return error;
    }

    /** @return whether the job was cancelled (by the user or by a failing peer). */
    public final boolean isCancelled()
    {
        return cancelled;
    }

    /** @return the block device (node) the job works on, for {@code query-block-jobs}. */
    public abstract String device();

    // ---------------------------------------------------------------------------------------------------------
    // Verbs

    /**
     * {@code job-pause}: the job pauses at its next pause point.
     *
     * @throws EngineException when the state refuses the verb or the job is already paused.
     */
    public final void pause()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.PAUSE);
            if (userPaused)
            {
                throw EngineException.generic("Job is already paused");
            }
            userPaused = true;
            lock().notifyAll();
        }
    }

    /**
     * {@code job-resume}.
     *
     * @throws EngineException when the state refuses the verb or the job was not paused.
     */
    public final void resume()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.RESUME);
            if (!userPaused)
            {
                throw EngineException.generic("Can't resume a job that was not paused");
            }
            userPaused = false;
            ioStatus = "ok";
            lock().notifyAll();
        }
    }

    /**
     * {@code job-cancel}: the job and every peer of its transaction end as cancelled.
     *
     * @throws EngineException when the state refuses the verb.
     */
    public final void cancel()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.CANCEL);
            cancelled = true;
            if (!started || workerDone)
            {
                txn.abort(this);
            }
            lock().notifyAll();
        }
    }

    /**
     * {@code job-complete}, for jobs that reach {@code ready}.
     *
     * @throws EngineException when the state refuses the verb.
     */
    public final void complete()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.COMPLETE);
            onComplete();
            lock().notifyAll();
        }
    }

    /**
     * {@code job-finalize}: finalizes the whole transaction (every peer must be pending).
     *
     * @throws EngineException when the state refuses the verb.
     */
    public final void finalizeJob()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.FINALIZE);
            txn.finalizeAll();
        }
    }

    /**
     * {@code job-dismiss}: removes a concluded job.
     *
     * @throws EngineException when the state refuses the verb.
     */
    public final void dismiss()
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.DISMISS);
            transition(JobStatus.NULL);
            onGone.run();
        }
    }

    /**
     * {@code block-job-change}: changes job-type options while the job runs.
     *
     * @param options the type-specific options.
     * @throws EngineException when the state refuses the verb or the job type has no such options.
     */
    public final void change(final Map<String, Object> options)
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.CHANGE);
            onChange(options);
        }
    }

    /**
     * {@code block-job-set-speed}.
     *
     * @param bytesPerSecond the new limit, {@code >= 0}; 0 = unlimited.
     * @throws EngineException when the state refuses the verb or the speed is negative.
     */
    public final void setSpeed(final long bytesPerSecond)
    {
        synchronized (lock())
        {
            applyVerb(JobVerb.SET_SPEED);
            if (bytesPerSecond < 0)
            {
                throw EngineException.generic("Parameter 'speed' expects a non-negative value");
            }
            limiter.setRate(bytesPerSecond);
            lock().notifyAll();
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Queries

    /** QEMU reports a cancelled job's result as ECANCELED's text once the worker stopped (job_update_rc). */
    private String queryError()
    {
        final String err = error;
        if (err != null)
        {
            return err;
        }
        final JobStatus s = status;
        return cancelled && (s == JobStatus.ABORTING || s == JobStatus.CONCLUDED) ? "Operation canceled" : null;
    }

    /** @return this job as an element of {@code query-jobs}. */
    public final Map<String, Object> queryJobsInfo()
    {
        final Map<String, Object> info = new LinkedHashMap<>();
        info.put("id", id);
        info.put("type", type);
        info.put("status", status.qmpName());
        info.put("current-progress", currentProgress());
        info.put("total-progress", totalProgress());
        final String err = queryError();
        if (err != null)
        {
            info.put("error", err);
        }
        return info;
    }

    /** @return this job as an element of {@code query-block-jobs}. */
    public final Map<String, Object> queryBlockJobsInfo()
    {
        final JobStatus s = status;
        final Map<String, Object> info = new LinkedHashMap<>();
        info.put("type", type);
        info.put("device", id);
        info.put("len", totalProgress());
        info.put("offset", currentProgress());
        info.put("busy", busy);
        info.put("paused", s == JobStatus.PAUSED || s == JobStatus.STANDBY);
        info.put("speed", speed());
        info.put("io-status", ioStatus);
        info.put("ready", s == JobStatus.READY || s == JobStatus.STANDBY);
        info.put("status", s.qmpName());
        info.put("auto-finalize", autoFinalize);
        info.put("auto-dismiss", autoDismiss);
        final String err = queryError();
        if (err != null)
        {
            info.put("error", err);
        }
        return info;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Worker side

    /**
     * The job's work, on its own thread. Returning normally is success unless the job was cancelled meanwhile;
     * throwing fails the job with the exception's message.
     *
     * @throws Exception the failure.
     */
    protected abstract void run() throws Exception;

    /** Called once every job of the transaction finished successfully; may fail the whole transaction. */
    protected void onPrepare() throws Exception
    {
        // Nothing to check by default.
    }

    /** Applies the job's success (for example a bitmap abdication); must not fail. */
    protected void onCommit()
    {
        // Nothing to apply by default.
    }

    /** Undoes what the job changed after a failure or cancel (for example a bitmap reclaim); must not fail. */
    protected void onAbort()
    {
        // Nothing to undo by default.
    }

    /** Releases what the job holds, after commit or abort; must not fail. */
    protected void onClean()
    {
        // Nothing held by default.
    }

    /**
     * Applies {@code block-job-change} options; called under the transaction lock.
     *
     * @param options the type-specific options.
     * @throws EngineException when the type has no changeable options (the default).
     */
    protected void onChange(final Map<String, Object> options)
    {
        throw EngineException.generic("Job type '" + type + "' does not support changes");
    }

    /** Reacts to {@code job-complete} in {@code ready}; called under the transaction lock. */
    protected void onComplete()
    {
        // Jobs that never become ready have nothing to complete.
    }

    /**
     * Pauses here while the user (or an error policy) paused the job.
     *
     * @return {@code false} when the job was cancelled and must stop.
     * @throws InterruptedException when the worker is interrupted.
     */
    protected final boolean pausePoint() throws InterruptedException
    {
        synchronized (lock())
        {
            if (userPaused && !cancelled)
            {
                final boolean wasReady = status == JobStatus.READY;
                transition(wasReady ? JobStatus.STANDBY : JobStatus.PAUSED);
                busy = false;
                while (userPaused && !cancelled)
                {
                    lock().wait();
                }
                busy = true;
                transition(wasReady ? JobStatus.READY : JobStatus.RUNNING);
            }
            return !cancelled;
        }
    }

    /**
     * Waits as long as the speed limit asks before {@code bytes} are transferred; returns early on cancel.
     *
     * @param bytes bytes about to be transferred.
     * @throws InterruptedException when the worker is interrupted.
     */
    protected final void throttle(final long bytes) throws InterruptedException
    {
        long delay = limiter.reserve(bytes, System.nanoTime());
        if (delay == 0)
        {
            return;
        }
        final long deadline = System.nanoTime() + delay;
        synchronized (lock())
        {
            busy = false;
            final long rateAtStart = limiter.rate();
            while (!cancelled && delay > 0 && limiter.rate() == rateAtStart)
            {
                TimeUnit.NANOSECONDS.timedWait(lock(), delay);
                delay = deadline - System.nanoTime();
            }
            busy = true;
        }
    }

    /**
     * Blocks until the job is cancelled or {@code stop} holds (for jobs whose work is done by others, such as
     * copy-before-write only); honours pause meanwhile.
     *
     * @param stop checked every 100 ms.
     * @throws InterruptedException when the worker is interrupted.
     */
    protected final void awaitCancel(final java.util.function.BooleanSupplier stop) throws InterruptedException
    {
        while (pausePoint() && !stop.getAsBoolean())
        {
            synchronized (lock())
            {
                busy = false;
                if (!cancelled && !userPaused)
                {
                    lock().wait(100);
                }
                busy = true;
            }
        }
    }

    /** @param bytes bytes just completed. */
    protected final void addProgress(final long bytes)
    {
        currentProgress.addAndGet(bytes);
    }

    /** @param bytes the total amount of work in bytes. */
    protected final void setTotalProgress(final long bytes)
    {
        synchronized (totalLock)
        {
            totalSource = null;
            totalProgress = bytes;
        }
    }

    /**
     * Sets the total to what {@code source} computes, on the first thread that asks for it (the job's own thread
     * asks when it starts): counting a 64 TiB bitmap's dirty chunks must not happen at the cut, on the ring thread.
     *
     * @param source computes the total amount of work in bytes; called once.
     */
    protected final void setTotalProgressLater(final java.util.function.LongSupplier source)
    {
        totalSource = source;
    }

    /**
     * Applies the job's error policy to a failed request: emits {@code BLOCK_JOB_ERROR}, and for {@code stop}
     * pauses the job until {@code job-resume}.
     *
     * @param policy the policy for this side ({@code on-source-error} for reads, {@code on-target-error} for writes).
     * @param isRead whether a read failed.
     * @param failure the failure.
     * @return {@code true} to retry the request, {@code false} to fail the job (or stop because it was cancelled).
     * @throws InterruptedException when the worker is interrupted while stopped.
     */
    protected final boolean handleError(final OnError policy, final boolean isRead, final IOException failure)
        throws InterruptedException
    {
        final OnError.Action action = policy.actionFor(failure);
        final Map<String, Object> data = new LinkedHashMap<>();
        data.put("device", id);
        data.put("operation", isRead ? "read" : "write");
        data.put("action", action.qmpName());
        if (OnError.isNoSpace(failure))
        {
            data.put("nospace", true);
        }
        data.put("reason", String.valueOf(failure.getMessage()));
        emit("BLOCK_JOB_ERROR", data);
        switch (action)
        {
            case REPORT:
                return false;
            case IGNORE:
                return !cancelled;
            case STOP:
                synchronized (lock())
                {
                    ioStatus = OnError.isNoSpace(failure) ? "nospace" : "failed";
                    userPaused = true;
                }
                return pausePoint();
            default:
                throw new AssertionError(action);
        }
    }

    /** Moves a running job to {@code ready} and emits {@code BLOCK_JOB_READY}; for jobs that converge. */
    protected final void transitionToReady()
    {
        synchronized (lock())
        {
            transition(JobStatus.READY);
            emit("BLOCK_JOB_READY", completionData(false));
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Package-private machinery for JobManager and JobTransaction

    /** @return the transaction lock guarding this job's state. */
    final Object lock()
    {
        return txn;
    }

    final void attach(final JobTransaction transaction, final Runnable whenGone)
    {
        this.txn = transaction;
        this.onGone = whenGone;
    }

    final JobTransaction transaction()
    {
        return txn;
    }

    /** Enters {@code created}. Caller holds the lock. */
    final void create()
    {
        transition(JobStatus.CREATED);
    }

    /** Starts the worker unless the job was cancelled while created. Caller holds the lock. */
    final void start()
    {
        if (cancelled || status != JobStatus.CREATED)
        {
            return;
        }
        started = true;
        busy = true;
        transition(JobStatus.RUNNING);
        WORKERS.execute(this::workerMain);
    }

    /**
     * Makes sure a job thread is idle, so that the next job start (at a cut, on the write ring) hands over to it
     * instead of creating one; any thread but a ring's, before the cut.
     */
    public static void prestartWorker()
    {
        WORKERS.execute(() -> { });
    }

    /** @return how many job threads were made so far in this JVM (for tests of the reuse). */
    static int workerThreadsMade()
    {
        return WORKER_THREADS_MADE.get();
    }

    /** @return whether the worker has ended or never started. Caller holds the lock. */
    final boolean isIdle()
    {
        return !started || workerDone;
    }

    /**
     * The funnel for every state change: checks the table and emits {@code JOB_STATUS_CHANGE}. Caller holds the
     * lock.
     */
    final void transition(final JobStatus next)
    {
        final JobStatus current = status;
        if (!current.canMoveTo(next))
        {
            throw new IllegalStateException("job '" + id + "': illegal transition " + current.qmpName() + " -> "
                + next.qmpName());
        }
        final Map<String, Object> data = new LinkedHashMap<>();
        data.put("id", id);
        data.put("status", next.qmpName());
        // Emit first: whoever sees the new status (a poller) can rely on its event having been delivered.
        emit("JOB_STATUS_CHANGE", data);
        status = next;
    }

    final void applyVerb(final JobVerb verb)
    {
        final JobStatus current = status;
        if (!verb.isAcceptedIn(current))
        {
            throw EngineException.generic("Job '" + id + "' in state '" + current.qmpName()
                + "' cannot accept command verb '" + verb.qmpName() + "'");
        }
    }

    final void forceCancel()
    {
        cancelled = true;
    }

    final void markGone()
    {
        onGone.run();
    }

    final void emit(final String name, final Map<String, Object> data)
    {
        try
        {
            events.onEvent(name, Collections.unmodifiableMap(data));
        }
        catch (final RuntimeException listenerFailure)
        {
            // A broken listener must not wedge the job's state machine; report it where uncaught errors go.
            final Thread self = Thread.currentThread();
            self.getUncaughtExceptionHandler().uncaughtException(self, listenerFailure);
        }
    }

    final Map<String, Object> completionData(final boolean withError)
    {
        final Map<String, Object> data = new LinkedHashMap<>();
        data.put("type", type);
        data.put("device", id);
        data.put("len", totalProgress());
        data.put("offset", currentProgress());
        data.put("speed", speed());
        if (withError && error != null)
        {
            data.put("error", error);
        }
        return data;
    }

    /** Records the failure unless the job was cancelled first (a cancel wins, as in QEMU). */
    final void fail(final String message)
    {
        if (!cancelled && error == null)
        {
            error = message;
        }
    }

    /** @return whether the job ends with {@code BLOCK_JOB_COMPLETED} carrying an error (else cancelled). */
    final boolean failed()
    {
        return error != null;
    }

    private void workerMain()
    {
        // Off by default: on the reference machine a lower priority slowed backups without helping the guest's
        // writes (docs/benchmarks.md, "Backup copy at a lower priority").
        BackgroundPriority.lowerCurrentThread(Integer.getInteger(JOB_NICE_PROPERTY, 0));
        final Thread self = Thread.currentThread();
        self.setName("tidemark-job-" + id);
        Throwable failure = null;
        try
        {
            run();
        }
        catch (final Throwable t)
        {
            failure = t;
        }
        finally
        {
            self.setName(IDLE_WORKER_NAME);
        }
        synchronized (lock())
        {
            workerDone = true;
            busy = false;
            if (failure != null)
            {
                fail(describe(failure));
            }
            if (failure == null && !cancelled && !txn.isAborting())
            {
                transition(JobStatus.WAITING);
                txn.jobWaiting();
            }
            else
            {
                txn.abort(this);
            }
            lock().notifyAll();
        }
    }

    private static String describe(final Throwable failure)
    {
        final String message = failure.getMessage();
        return message == null ? failure.getClass().getSimpleName() : message;
    }

    /**
     * Waits until the worker thread has ended (test and shutdown helper).
     *
     * @param millis the longest wait.
     * @throws InterruptedException when interrupted.
     */
    public final void awaitWorker(final long millis) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
        synchronized (lock())
        {
            // The worker's thread goes back to the pool: its last step under this lock marks it done and notifies.
            long left;
            while (started && !workerDone && (left = deadline - System.nanoTime()) > 0)
            {
                TimeUnit.NANOSECONDS.timedWait(lock(), left);
            }
        }
    }
}
