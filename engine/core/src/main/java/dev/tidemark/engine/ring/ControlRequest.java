package dev.tidemark.engine.ring;

import dev.tidemark.engine.ControlAction;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A transaction (or a mark-thread task) travelling through the ring; created by the submitting thread, then
 * used by the mark thread (which completes {@link #result}) and the thread that writes (which completes
 * {@link #writesBeforeCut}: the same ring thread when fused, before it runs the control; the write thread when
 * staged).
 */
final class ControlRequest
{
    final List<ControlAction> actions;
    final Runnable task;
    // The other disks' requests of the same transaction meet here; null for a one-disk transaction or a task.
    final JointCut joint;
    final int jointMember;
    final CompletableFuture<Long> result = new CompletableFuture<>();
    final CompletableFuture<Void> writesBeforeCut = new CompletableFuture<>();
    // The outcome, kept by the mark thread until its bookkeeping is done (see finish).
    private long cut;
    private Throwable failure;

    /** What {@link ControlTimes} files it under: its action types joined with '+', or "task". */
    final String kind;

    ControlRequest(final List<ControlAction> actions, final Runnable task, final JointCut joint,
        final int jointMember)
    {
        this.actions = actions;
        this.task = task;
        this.joint = joint;
        this.jointMember = jointMember;
        this.kind = kindOf(actions, task, joint);
    }

    private static String kindOf(final List<ControlAction> actions, final Runnable task, final JointCut joint)
    {
        if (task != null)
        {
            return "task";
        }
        final StringBuilder out = new StringBuilder(joint != null ? "joint:" : "");
        for (int i = 0; i < actions.size(); i++)
        {
            out.append(i == 0 ? "" : "+").append(actions.get(i).type());
        }
        return actions.isEmpty() ? out.append("empty").toString() : out.toString();
    }

    /** Notes success at {@code sequence}; mark thread. */
    void succeed(final long sequence)
    {
        cut = sequence;
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
        if (failure != null)
        {
            result.completeExceptionally(failure);
        }
        else
        {
            result.complete(cut);
        }
    }
}
