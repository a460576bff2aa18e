package dev.tidemark.engine.ring;

import dev.tidemark.engine.WriteInterceptor;
import java.util.concurrent.CompletableFuture;

/**
 * A control request's place in one ring's write order, as its {@link CutHandler} sees it; valid only on the mark
 * thread and only while the handler runs.
 *
 * <p>The engine's {@code CutContext} (which adds the disk, its registry and its journal) is built around it.
 */
public interface RingCut
{
    /** @return the ring sequence of the request: writes with a smaller sequence are before the cut. */
    long cutSequence();

    /** @return the epoch this cut closes (see {@link WriteRing}). */
    long epoch();

    /**
     * Makes {@code interceptor} see every data-changing request with a sequence greater than the cut; undone if the
     * cut does not commit.
     *
     * @param interceptor the interceptor.
     */
    void addInterceptor(WriteInterceptor interceptor);

    /**
     * Stops {@code interceptor} from seeing requests with a sequence greater than the cut.
     *
     * @param interceptor the interceptor.
     */
    void removeInterceptor(WriteInterceptor interceptor);

    /**
     * @return completed once every request sequenced before the cut reached the store (fused: before the handler
     *         runs; staged: by the write thread, so never wait for it on the mark thread).
     */
    CompletableFuture<Void> writesBeforeCutDone();

    /**
     * Runs {@code task} once the cut committed, on the thread that submitted the request, when it finishes the
     * request's {@link CutOutcome} (so not on the mark thread: a task that wakes a thread would let that thread take
     * the ring's CPU); dropped when the cut does not commit. A task that throws fails the request (unless it failed
     * already). Writes after the cut may be marked before it runs.
     *
     * @param task the task; must not block.
     */
    void afterCommit(Runnable task);

    /**
     * Notes the failure the request completes with; the first one counts. A cut that commits and failed (a commit
     * step threw) still opens its epoch.
     *
     * @param why the failure.
     */
    void fail(Throwable why);
}
