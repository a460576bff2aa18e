package dev.tidemark.engine.ring;

import java.util.List;
import java.util.concurrent.CompletionException;

/**
 * Made by the mark thread, then finished once by the thread that submitted the request: what one control request
 * came to (its cut sequence or failure, and the after-commit tasks of a cut that committed).
 *
 * <p>The after-commit tasks travel here instead of running on the mark thread because each of them (a job start,
 * its {@code running} event) wakes another thread, and a wake-up from the ring can let the scheduler run the woken
 * thread in the ring's place while guest writes wait behind it. The submitter is woken by the result anyway.
 */
public final class CutOutcome
{
    private final long sequence;
    private final List<Runnable> afterCommit;
    private final Throwable failure;

    CutOutcome(final long sequence, final List<Runnable> afterCommit, final Throwable failure)
    {
        this.sequence = sequence;
        this.afterCommit = afterCommit;
        this.failure = failure;
    }

    /**
     * Runs the after-commit tasks (those of a cut that committed, failed or not) on the calling thread, in the order
     * they were added, then reports the outcome.
     *
     * @return the cut sequence.
     * @throws RuntimeException the failure the request noted (a refused action, a failed commit step) or, failing
     *         that, the first task's; every task runs either way. An {@link Error} is rethrown as is; a checked
     *         failure comes wrapped in a {@link CompletionException}.
     */
    public long finish()
    {
        Throwable first = failure;
        for (final Runnable task : afterCommit)
        {
            try
            {
                task.run();
            }
            catch (final RuntimeException ex)
            {
                if (first == null)
                {
                    first = ex;
                }
            }
        }
        if (first == null)
        {
            return sequence;
        }
        if (first instanceof RuntimeException runtime)
        {
            throw runtime;
        }
        if (first instanceof Error error)
        {
            throw error;
        }
        throw new CompletionException(first);
    }
}
