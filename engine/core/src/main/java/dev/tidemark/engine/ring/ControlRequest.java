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

    ControlRequest(final List<ControlAction> actions, final Runnable task, final JointCut joint,
        final int jointMember)
    {
        this.actions = actions;
        this.task = task;
        this.joint = joint;
        this.jointMember = jointMember;
    }
}
