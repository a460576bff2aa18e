package dev.tidemark.engine.ring;

import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A cut handler (or a mark-thread task) travelling through the ring; created by the submitting thread, then
 * used by the mark thread (which completes {@link #result}) and the thread that writes (which completes
 * {@link #writesBeforeCut}: the same ring thread when fused, before it runs the control; the write thread when
 * staged).
 */
final class ControlRequest
{
    /** What runs at the cut; {@code null} for a task. */
    final CutHandler handler;
    final Runnable task;
    final CompletableFuture<CutOutcome> result = new CompletableFuture<>();
    final CompletableFuture<Void> writesBeforeCut = new CompletableFuture<>();
    // The outcome, kept by the mark thread until its bookkeeping is done (see finish).
    private long cut;
    private Throwable failure;
    private List<Runnable> afterCommit = List.of();

    /** What {@link ControlTimes} files it under: the handler's kind, or "task". */
    final String kind;

    ControlRequest(final CutHandler handler, final Runnable task)
    {
        this.handler = handler;
        this.task = task;
        this.kind = task != null ? "task" : handler.kind();
    }

    /** Lets the handler release what it built ahead of the cut; never fails. */
    void release()
    {
        if (handler == null)
        {
            return;
        }
        try
        {
            handler.release();
        }
        catch (final RuntimeException ex)
        {
            // A leak at worst (a staged file is deleted as an orphan at the next open); the ring goes on.
        }
    }

    /** Notes success at {@code sequence}; mark thread. */
    void succeed(final long sequence)
    {
        cut = sequence;
    }

    /** Hands a committed cut's after-commit tasks to the submitter ({@link CutOutcome#finish}); mark thread. */
    void afterCommit(final List<Runnable> tasks)
    {
        afterCommit = List.copyOf(tasks);
    }

    /** Notes the failure the result completes with (the first one counts); mark thread. */
    void fail(final Throwable why)
    {
        if (failure == null)
        {
            failure = why;
        }
    }

    /** Completes {@link #result} with the noted outcome; mark thread, once its bookkeeping is done. */
    void finish()
    {
        result.complete(new CutOutcome(cut, afterCommit, failure));
    }
}
