package dev.tidemark.engine.job;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;

/**
 * The states of QEMU's job state machine; immutable and safe to share between threads.
 *
 * <p>{@link #successors()} is QEMU's transition table ({@code JobSTT} in {@code job.c}), as in protocol brief
 * section 2.5. {@link #UNDEFINED} exists only before a job is created; {@link #NULL} means the job is gone from
 * queries.
 */
public enum JobStatus
{
    /** Before creation. */
    UNDEFINED,
    /** Created, not yet started. */
    CREATED,
    /** Copying. */
    RUNNING,
    /** Paused by the user or by an error policy. */
    PAUSED,
    /** Converged and waiting for {@code complete} (never reached by backups). */
    READY,
    /** Paused while ready. */
    STANDBY,
    /** Work done; waiting for the other jobs of its transaction. */
    WAITING,
    /** Work done; waiting for finalize (graph and bitmap changes not yet applied). */
    PENDING,
    /** Failing or being cancelled. */
    ABORTING,
    /** Finished; waiting for dismiss. */
    CONCLUDED,
    /** Gone. */
    NULL;

    private static final JobStatus[] VALUES = values();

    /** @return the name QMP uses ({@code "created"}, {@code "null"}, ...). */
    public String qmpName()
    {
        return name().toLowerCase(Locale.ROOT);
    }

    /** @return the states this one may move to, a fresh set. */
    public Set<JobStatus> successors()
    {
        switch (this)
        {
            case UNDEFINED:
                return EnumSet.of(CREATED);
            case CREATED:
                return EnumSet.of(RUNNING, ABORTING, NULL);
            case RUNNING:
                return EnumSet.of(PAUSED, READY, WAITING, ABORTING);
            case PAUSED:
                return EnumSet.of(RUNNING);
            case READY:
                return EnumSet.of(STANDBY, WAITING, ABORTING);
            case STANDBY:
                return EnumSet.of(READY);
            case WAITING:
                return EnumSet.of(PENDING, ABORTING);
            case PENDING:
                return EnumSet.of(ABORTING, CONCLUDED);
            case ABORTING:
                return EnumSet.of(ABORTING, CONCLUDED);
            case CONCLUDED:
                return EnumSet.of(NULL);
            case NULL:
                return EnumSet.noneOf(JobStatus.class);
            default:
                throw new AssertionError(this);
        }
    }

    /**
     * @param next a state.
     * @return whether QEMU's table allows moving from this state to {@code next}.
     */
    public boolean canMoveTo(final JobStatus next)
    {
        return successors().contains(next);
    }

    /**
     * @param qmpName a QMP status name.
     * @return the state, or {@code null} when the name is unknown.
     */
    public static JobStatus fromQmpName(final String qmpName)
    {
        for (final JobStatus s : VALUES)
        {
            if (s.qmpName().equals(qmpName))
            {
                return s;
            }
        }
        return null;
    }
}
