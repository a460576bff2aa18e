package dev.tidemark.engine.job;

import java.util.EnumSet;
import java.util.Locale;
import java.util.Set;

/**
 * The commands a user may send a job; immutable and safe to share between threads.
 *
 * <p>{@link #acceptedIn()} is QEMU's verb table ({@code JobVerbTable} in {@code job.c}), as in protocol brief
 * section 2.5.
 */
public enum JobVerb
{
    /** {@code job-cancel}. */
    CANCEL,
    /** {@code job-pause}. */
    PAUSE,
    /** {@code job-resume}. */
    RESUME,
    /** {@code block-job-set-speed}. */
    SET_SPEED,
    /** {@code job-complete}. */
    COMPLETE,
    /** {@code job-finalize}. */
    FINALIZE,
    /** {@code job-dismiss}. */
    DISMISS,
    /** {@code block-job-change}. */
    CHANGE;

    /** @return the verb as QEMU prints it ({@code "set-speed"}, ...). */
    public String qmpName()
    {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /** @return the states in which the verb is accepted, a fresh set. */
    public Set<JobStatus> acceptedIn()
    {
        switch (this)
        {
            case CANCEL:
                return EnumSet.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY,
                    JobStatus.STANDBY, JobStatus.WAITING, JobStatus.PENDING);
            case PAUSE:
            case RESUME:
            case SET_SPEED:
            case CHANGE:
                return EnumSet.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY,
                    JobStatus.STANDBY);
            case COMPLETE:
                return EnumSet.of(JobStatus.READY, JobStatus.STANDBY);
            case FINALIZE:
                return EnumSet.of(JobStatus.PENDING);
            case DISMISS:
                return EnumSet.of(JobStatus.CONCLUDED);
            default:
                throw new AssertionError(this);
        }
    }

    /**
     * @param status a state.
     * @return whether the verb is accepted there.
     */
    public boolean isAcceptedIn(final JobStatus status)
    {
        return acceptedIn().contains(status);
    }
}
