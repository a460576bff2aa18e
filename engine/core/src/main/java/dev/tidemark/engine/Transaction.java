package dev.tidemark.engine;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.ring.CutHandler;
import dev.tidemark.engine.ring.RingCut;
import java.util.ArrayList;
import java.util.List;

/**
 * One disk's part of a transaction, run by its write ring at the cut; built on the submitting thread, then
 * {@link #run} on the disk's mark thread (the ring holds the registry's monitor around it).
 *
 * <p>All-or-nothing: {@link ControlAction#prepare} on each action in order inside one journal group; if one fails
 * (or, in a transaction over several disks, any member's), the prepared ones abort in reverse order and the group
 * is dropped; otherwise the group commits at the cut sequence and every action commits. The ring knows only that
 * this is a {@link CutHandler}: disks, actions and journal groups stay on this side.
 */
final class Transaction implements CutHandler
{
    private final TrackedDisk disk;
    private final List<ControlAction> actions;
    /** The other disks' parts of the same transaction meet here; {@code null} for a one-disk transaction. */
    private final JointCut joint;
    private final int jointMember;
    private final String kind;

    /**
     * @param disk the disk whose ring runs it.
     * @param actions its actions, in order.
     * @param joint the meeting point of a transaction over several disks, or {@code null}.
     * @param jointMember this disk's index in the joint transaction's order of disks (its first failure is reported).
     */
    Transaction(final TrackedDisk disk, final List<ControlAction> actions, final JointCut joint,
        final int jointMember)
    {
        this.disk = disk;
        this.actions = List.copyOf(actions);
        this.joint = joint;
        this.jointMember = jointMember;
        this.kind = kindOf(this.actions, joint);
    }

    /** @return its action types joined with '+' ("empty" for none), prefixed "joint:" for a part. */
    private static String kindOf(final List<ControlAction> actions, final JointCut joint)
    {
        final StringBuilder out = new StringBuilder(joint != null ? "joint:" : "");
        for (int i = 0; i < actions.size(); i++)
        {
            out.append(i == 0 ? "" : "+").append(actions.get(i).type());
        }
        return actions.isEmpty() ? out.append("empty").toString() : out.toString();
    }

    @Override
    public String kind()
    {
        return kind;
    }

    @Override
    public boolean run(final RingCut ringCut)
    {
        final CutContext cut = new DiskCut(disk, ringCut);
        final Journal journal = disk.journal();
        final List<ControlAction> prepared = new ArrayList<>();
        journal.beginGroup();
        Throwable failure = null;
        // A joint transaction's rings all stop here until the last one arrives: that instant is the cut.
        if (joint != null && !joint.arrive(disk.name()))
        {
            failure = joint.failure();
        }
        else
        {
            try
            {
                for (final ControlAction action : actions)
                {
                    action.prepare(cut);
                    prepared.add(action);
                }
            }
            catch (final RuntimeException | Error ex)
            {
                // An Error too: the journal group and the registry must not stay half-prepared.
                failure = ex;
            }
            if (joint != null && failure == null)
            {
                try
                {
                    // The members' journals name each other: a member whose commit a crash cut off asks.
                    journal.append(JournalRecord.jointCut(joint.id(), joint.journals()));
                    journal.forceGroupIfDurable();
                }
                catch (final RuntimeException ex)
                {
                    failure = ex;
                }
            }
            if (joint != null && !joint.vote(jointMember, failure))
            {
                failure = joint.failure();
            }
        }
        if (failure != null)
        {
            for (int i = prepared.size() - 1; i >= 0; i--)
            {
                try
                {
                    prepared.get(i).abort(cut);
                }
                catch (final RuntimeException abortFailure)
                {
                    if (failure != abortFailure)
                    {
                        failure.addSuppressed(abortFailure);
                    }
                }
            }
            journal.abortGroup();
            ringCut.fail(failure);
            return false;
        }
        journal.commitGroup(ringCut.cutSequence());
        RuntimeException commitFailure = null;
        for (final ControlAction action : prepared)
        {
            try
            {
                action.commit(cut);
            }
            catch (final RuntimeException ex)
            {
                if (commitFailure == null)
                {
                    commitFailure = ex;
                }
                else
                {
                    commitFailure.addSuppressed(ex);
                }
            }
        }
        if (commitFailure != null)
        {
            ringCut.fail(commitFailure);
        }
        return true;
    }

    @Override
    public void release()
    {
        unstage(actions);
    }

    /**
     * Lets every action release what it staged ahead of the cut; never fails.
     *
     * @param actions the actions of a transaction that ended or never entered a ring.
     */
    static void unstage(final List<ControlAction> actions)
    {
        for (final ControlAction action : actions)
        {
            try
            {
                action.unstage();
            }
            catch (final RuntimeException ex)
            {
                // A leak at worst (a staged file is deleted as an orphan at the next open); the ring goes on.
            }
        }
    }
}
