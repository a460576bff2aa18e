package dev.tidemark.engine;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The meeting point of one transaction's control requests in the rings of several disks; safe for use by the ring
 * threads of every member and by the publishing thread (all state is guarded by this object's monitor).
 *
 * <p>Each member's ring thread reaches the transaction's control request in its own ring, after every earlier
 * request of that ring is in the store (fused) or marked (staged), and calls {@link #arrive}: it waits there, its
 * ring stopped, until every member arrived. The moment the last one arrives is the transaction's cut, one instant
 * for all of them: a write completed on one disk after the cut was sequenced after that disk's control request,
 * hence after every member arrived, hence after every other member's control request was published; so a write
 * submitted after it completed is after the cut on every disk. Each member then prepares its own actions on its
 * own ring thread (registry mutators belong to the mark thread) and {@link #vote}s; everyone commits if nobody
 * failed, and everyone aborts otherwise. Rings are held for the prepare and commit only, which run in memory.
 * The publishing thread may publish the idle members first and wait for them ({@link #awaitArrivals}) before it
 * publishes the busy ones, so that the busy rings do not wait here while the idle ones wake up; the cut is the
 * last arrival whatever the order of publication.
 *
 * <p>On disk, each member's journal group carries a {@code JOINT_CUT} record with the transaction's id and every
 * member's journal, forced (durable mode) before the member votes; a member commits only after every member voted.
 * So if a crash leaves one member's group without its commit record while another member committed, the first
 * member's replay finds the commit in the other's journal and commits too: every disk is before the cut or after it.
 *
 * <p>A member that does not arrive within {@code arrivalTimeout} (its ring is stuck behind a store call that does
 * not return) aborts the transaction for everyone: no ring waits forever for another.
 */
final class JointCut
{
    private final int members;
    private final String id;
    private final List<Path> journals;
    private final long arrivalTimeoutNanos;
    private int arrived;
    /** How many arrivals the publishing thread waits for ({@link #awaitArrivals}); 0 when it does not. */
    private int awaitedArrivals;
    private int voted;
    private boolean aborted;
    private Throwable failure;
    // Which member's prepare failed: the first member's failure wins, as QEMU reports the first failing action.
    private int failedMember = Integer.MAX_VALUE;

    /**
     * @param id the transaction's id, unique among the transactions these disks' journals remember.
     * @param journals every member disk's journal file, in the order of the members.
     * @param arrivalTimeout how long an arrived member waits for the others before the transaction aborts.
     * @param unit the unit of {@code arrivalTimeout}.
     */
    JointCut(final String id, final List<Path> journals, final long arrivalTimeout, final TimeUnit unit)
    {
        if (journals.isEmpty())
        {
            throw new IllegalArgumentException("a joint cut needs at least one member");
        }
        this.id = id;
        this.journals = List.copyOf(journals);
        this.members = journals.size();
        this.arrivalTimeoutNanos = unit.toNanos(arrivalTimeout);
    }

    /** @return the transaction's id, recorded in every member's journal group. */
    String id()
    {
        return id;
    }

    /** @return every member's journal file. */
    List<Path> journals()
    {
        return journals;
    }

    /**
     * Waits until every member arrived.
     *
     * @param diskName the arriving member, for the message if the others are late.
     * @return {@code true} at the cut; {@code false} if the transaction aborted (see {@link #failure()}).
     */
    synchronized boolean arrive(final String diskName)
    {
        arrived++;
        if (arrived == members)
        {
            notifyAll();
            return !aborted;
        }
        if (arrived == awaitedArrivals)
        {
            notifyAll();
        }
        return awaitArrived(members, () -> "disk '" + diskName + "' reached the cut but " + (members - arrived)
            + " of " + members + " disks did not");
    }

    /**
     * Reports the outcome of this member's prepare and waits for every member's.
     *
     * @param member this member's index in the transaction's order of disks.
     * @param prepareFailure this member's failure, or {@code null}.
     * @return {@code true} when every member prepared: all commit; {@code false}: all abort.
     */
    synchronized boolean vote(final int member, final Throwable prepareFailure)
    {
        if (prepareFailure != null && member < failedMember)
        {
            failure = prepareFailure;
            failedMember = member;
        }
        voted++;
        if (voted == members)
        {
            notifyAll();
        }
        // Every member arrived, so every member votes after running its own actions: no timeout needed.
        Monitors.awaitUninterruptibly(this, () -> voted >= members);
        return failure == null;
    }

    /**
     * Waits, on the publishing thread, until {@code count} members arrived: the members published so far, before
     * the rest are published; at most the arrival timeout, after which the transaction aborts.
     *
     * @param count how many members must have arrived.
     * @return {@code true} once they have; {@code false} if the transaction aborted (see {@link #failure()}).
     */
    synchronized boolean awaitArrivals(final int count)
    {
        awaitedArrivals = count;
        try
        {
            return awaitArrived(count,
                () -> (count - arrived) + " of the " + count + " idle disks did not reach the cut");
        }
        finally
        {
            awaitedArrivals = 0;
        }
    }

    /**
     * Waits until {@code count} members arrived or the transaction aborted, at most the arrival timeout, after which
     * it aborts the transaction for everyone. Caller holds the monitor.
     *
     * @param count how many arrivals to wait for.
     * @param late what the failure says after "transaction aborted: " when the timeout passes.
     * @return whether the transaction is still on.
     */
    private boolean awaitArrived(final int count, final Supplier<String> late)
    {
        final long deadline = System.nanoTime() + arrivalTimeoutNanos;
        boolean interrupted = false;
        while (arrived < count && !aborted)
        {
            final long left = deadline - System.nanoTime();
            if (left <= 0)
            {
                aborted = true;
                failure = new IllegalStateException("transaction aborted: " + late.get() + " within "
                    + TimeUnit.NANOSECONDS.toMillis(arrivalTimeoutNanos) + " ms");
                notifyAll();
                break;
            }
            try
            {
                TimeUnit.NANOSECONDS.timedWait(this, left);
            }
            catch (final InterruptedException ex)
            {
                // A ring thread is interrupted only when its disk closes: finish the cut first (and the publisher
                // its publication).
                interrupted = true;
            }
        }
        if (interrupted)
        {
            Thread.currentThread().interrupt();
        }
        return !aborted;
    }

    /**
     * Aborts the transaction before every member arrived, for example because publishing a member's part failed;
     * members that arrived stop waiting, members that arrive later abort at once.
     *
     * @param why the failure every member completes with.
     */
    synchronized void cancel(final Throwable why)
    {
        if (arrived < members && !aborted)
        {
            aborted = true;
            failure = why;
            notifyAll();
        }
    }

    /** @return the first failure of any member (an action's error, or the arrival timeout), or {@code null}. */
    synchronized Throwable failure()
    {
        return failure;
    }
}
