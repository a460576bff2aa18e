package dev.tidemark.engine.job;

import java.util.ArrayList;
import java.util.List;

/**
 * The jobs that finish together (QEMU's {@code JobTxn}); safe for concurrent use, every method takes the
 * transaction's own monitor, which is also the lock of each member's state.
 *
 * <p>A job started alone gets a transaction of its own. A QMP {@code transaction} with
 * {@code completion-mode: grouped} puts all its backup jobs into one: they move to {@code pending} only when all
 * of them have finished their work, they are finalized together, and when one fails or is cancelled every other
 * member is cancelled (and ends with {@code BLOCK_JOB_CANCELLED}).
 */
public final class JobTransaction
{
    private final List<Job> jobs = new ArrayList<>();
    private boolean aborting;
    private boolean concluded;

    /** Creates an empty transaction; jobs join it when their start commits. */
    public JobTransaction()
    {
        // Members are added by JobManager.register.
    }

    /**
     * Checks that a QMP transaction may use {@code completion-mode: grouped}: every action must start a backup.
     *
     * @param actions the transaction's actions.
     * @throws dev.tidemark.engine.EngineException QEMU's
     *         {@code Action 'X' does not support transaction property completion-mode = grouped}.
     */
    public static void checkGroupable(final List<? extends dev.tidemark.engine.ControlAction> actions)
    {
        for (final dev.tidemark.engine.ControlAction action : actions)
        {
            if (!(action instanceof BackupStartAction))
            {
                throw dev.tidemark.engine.EngineException.generic("Action '" + action.type()
                    + "' does not support transaction property completion-mode = grouped");
            }
        }
    }

    /** @return the members, a snapshot. */
    public List<Job> jobs()
    {
        synchronized (this)
        {
            return List.copyOf(jobs);
        }
    }

    void add(final Job job)
    {
        synchronized (this)
        {
            if (aborting || concluded)
            {
                throw new IllegalStateException("transaction already ended");
            }
            jobs.add(job);
        }
    }

    /** @return whether a member failed or was cancelled. Caller holds the lock. */
    boolean isAborting()
    {
        return aborting;
    }

    /** A member finished its work successfully and is waiting. Caller holds the lock. */
    void jobWaiting()
    {
        for (final Job j : jobs)
        {
            if (j.status() != JobStatus.WAITING)
            {
                return;
            }
        }
        for (final Job j : jobs)
        {
            j.transition(JobStatus.PENDING);
            if (!j.autoFinalize())
            {
                // QEMU announces pending only to a user who must finalize (job_transition_to_pending).
                final java.util.Map<String, Object> data = new java.util.LinkedHashMap<>();
                data.put("type", j.type());
                data.put("id", j.id());
                j.emit("BLOCK_JOB_PENDING", data);
            }
        }
        for (final Job j : jobs)
        {
            if (!j.autoFinalize())
            {
                return;
            }
        }
        finalizeAll();
    }

    /** Finalizes every member; all are pending. Caller holds the lock. */
    void finalizeAll()
    {
        for (final Job j : jobs)
        {
            if (j.status() != JobStatus.PENDING)
            {
                throw new IllegalStateException("job '" + j.id() + "' is not pending but " + j.status().qmpName());
            }
        }
        for (final Job j : jobs)
        {
            try
            {
                j.onPrepare();
            }
            catch (final Exception e)
            {
                j.fail(e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
                abort(j);
                return;
            }
        }
        concluded = true;
        for (final Job j : jobs)
        {
            j.onCommit();
            j.onClean();
            j.emit("BLOCK_JOB_COMPLETED", j.completionData(false));
            j.transition(JobStatus.CONCLUDED);
            if (j.autoDismiss())
            {
                j.transition(JobStatus.NULL);
                j.markGone();
            }
        }
    }

    /**
     * A member failed or was cancelled: cancel the others, and once every member's worker has ended, abort them
     * all. Caller holds the lock; called again by each member whose worker ends meanwhile.
     */
    void abort(final Job trigger)
    {
        if (concluded)
        {
            return;
        }
        if (!aborting)
        {
            aborting = true;
            for (final Job j : jobs)
            {
                if (j != trigger)
                {
                    j.forceCancel();
                }
            }
            notifyAll();
        }
        for (final Job j : jobs)
        {
            final JobStatus s = j.status();
            if (j.isIdle() && s != JobStatus.ABORTING && s != JobStatus.CONCLUDED && s != JobStatus.NULL)
            {
                j.transition(JobStatus.ABORTING);
            }
        }
        for (final Job j : jobs)
        {
            if (!j.isIdle())
            {
                return;
            }
        }
        concluded = true;
        for (final Job j : jobs)
        {
            j.onAbort();
            j.onClean();
            if (j.failed())
            {
                j.emit("BLOCK_JOB_COMPLETED", j.completionData(true));
            }
            else
            {
                j.emit("BLOCK_JOB_CANCELLED", j.completionData(false));
            }
            j.transition(JobStatus.CONCLUDED);
            if (j.autoDismiss())
            {
                j.transition(JobStatus.NULL);
                j.markGone();
            }
        }
    }
}
