package dev.tidemark.engine.ring;

/**
 * What a control request runs at its cut; {@link #run} is called on the ring's mark thread only, {@link #kind} on
 * the submitting thread, {@link #release} on either (see there).
 *
 * <p>The ring places the request in the write order, holds the registry's monitor while the handler runs, keeps the
 * interceptors it adds or removes (dropping them again when it does not commit), recomputes the recording bitmaps
 * and hands its after-commit tasks to the submitter ({@link CutOutcome}); what the request means (control actions,
 * their journal group, a meeting with other disks' rings) is the handler's. So the ring knows events and handlers,
 * not disks: the engine's transactions are handlers ({@code dev.tidemark.engine.Transaction}).
 */
public interface CutHandler
{
    /**
     * Runs at the cut, under the registry's monitor, with no write marked in between.
     *
     * @param cut the cut; valid only during this call.
     * @return whether the cut committed: a new epoch opens with the interceptors as the handler left them, and the
     *         {@link RingCut#afterCommit} tasks go to the submitter. {@code false}: nothing of it may be left; the
     *         ring restores the interceptors and the epoch stays. Either way the outcome is what
     *         {@link RingCut#fail} noted, or success.
     */
    boolean run(RingCut cut);

    /**
     * Releases what was built for the request ahead of its cut and not kept; called once after the cut ended
     * however it ended, on the mark thread, or on the submitting thread when the request could not enter the ring.
     * Must not fail (a failure is ignored).
     */
    void release();

    /** @return what the ring's control times file the request under ({@link RingStatistics#controlTimes()}). */
    String kind();
}
