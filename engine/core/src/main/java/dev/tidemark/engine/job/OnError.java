package dev.tidemark.engine.job;

import dev.tidemark.io.IoReason;
import java.io.IOException;
import java.util.Locale;

/**
 * QEMU's {@code BlockdevOnError} policies for a job's read ({@code on-source-error}) and write
 * ({@code on-target-error}) errors; immutable and safe to share between threads.
 */
public enum OnError
{
    /** Fail the job (the default). */
    REPORT,
    /** Report the error and retry the request later. */
    IGNORE,
    /** Pause the job on ENOSPC, report anything else. */
    ENOSPC,
    /** Pause the job; {@code job-resume} retries. */
    STOP,
    /** As {@link #ENOSPC} for jobs. */
    AUTO;

    /** What the job does about one failed request. */
    public enum Action
    {
        /** Fail the job. */
        REPORT,
        /** Retry at once. */
        IGNORE,
        /** Pause, retry on resume. */
        STOP;

        /** @return the QMP spelling. */
        public String qmpName()
        {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** @return the QMP spelling. */
    public String qmpName()
    {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * @param qmpName {@code report|ignore|enospc|stop|auto}.
     * @return the policy, or {@code null} when the name is unknown.
     */
    public static OnError fromQmpName(final String qmpName)
    {
        for (final OnError e : values())
        {
            if (e.qmpName().equals(qmpName))
            {
                return e;
            }
        }
        return null;
    }

    /**
     * @param error the failure.
     * @return the action this policy takes for it.
     */
    public Action actionFor(final IOException error)
    {
        switch (this)
        {
            case REPORT:
                return Action.REPORT;
            case IGNORE:
                return Action.IGNORE;
            case STOP:
                return Action.STOP;
            case ENOSPC:
            case AUTO:
                return isNoSpace(error) ? Action.STOP : Action.REPORT;
            default:
                throw new AssertionError(this);
        }
    }

    /**
     * @param error a failure.
     * @return whether it reports a full device ({@link IoReason#NO_SPACE}).
     */
    public static boolean isNoSpace(final IOException error)
    {
        return IoReason.of(error) == IoReason.NO_SPACE;
    }
}
