package dev.tidemark.engine;

/**
 * One step of a transaction; every method runs on the ring's mark thread, at the transaction's cut, with no
 * guest write marked in between, except {@link #stage}, which runs on the submitting thread before the
 * transaction enters the ring.
 *
 * <p>A transaction calls {@link #prepare} on each action in order. If one throws, {@link #abort} runs on the
 * already-prepared actions in reverse order and the transaction fails with that error; otherwise {@link #commit}
 * runs on all of them in order. {@code commit} and {@code abort} must not fail. None of them may block on the
 * ring (for example on {@link CutContext#writesBeforeCutDone()}): the ring waits for them. The disk's
 * {@link Transaction} runs them; the ring sees only that transaction, as a cut handler.
 */
public interface ControlAction
{
    /**
     * Checks and applies the action so that it can still be undone.
     *
     * @param ctx the cut.
     * @throws EngineException with QEMU's error text when the action cannot be applied; nothing of it is left.
     */
    void prepare(CutContext ctx) throws EngineException;

    /**
     * Makes the prepared action final.
     *
     * @param ctx the cut.
     */
    void commit(CutContext ctx);

    /**
     * Undoes the prepared action.
     *
     * @param ctx the cut.
     */
    void abort(CutContext ctx);

    /**
     * Builds ahead of the cut, on the submitting thread, what the action can build without it (an empty bitmap, its
     * file), so that {@link #prepare} at the cut only swaps references: the ring thread waits for prepare, not for
     * this. It must change nothing a write, a reader or the journal sees. Best effort: when it built nothing,
     * prepare does the work itself. Default: nothing.
     *
     * @param disk the disk the action will run on.
     */
    default void stage(final TrackedDisk disk)
    {
        // nothing to build ahead
    }

    /**
     * Releases whatever {@link #stage} built and the transaction did not keep; called once after the transaction
     * ended however it ended (committed, aborted, never prepared), on the mark thread, or on the submitting thread
     * when the transaction could not enter the ring. Must not fail. Default: nothing.
     */
    default void unstage()
    {
        // nothing was staged
    }

    /** @return the QMP action type, for messages (for example {@code block-dirty-bitmap-add}). */
    default String type()
    {
        return getClass().getSimpleName();
    }
}
