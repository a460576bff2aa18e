package dev.tidemark.engine.checkpoint;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.registry.BitmapActions;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The checkpoint actions of a transaction (and of the single checkpoint commands, one-action transactions);
 * factories are stateless, each action object is used by one transaction on the disk's mark thread.
 *
 * <p>As the bitmap actions do, each applies its effect in {@code prepare} (later actions of the same transaction
 * see it) and keeps what it needs to undo it. No write is marked between prepare and commit, so a checkpoint's
 * epoch begins exactly at the cut: every write sequenced after the transaction is stamped with it or a later
 * epoch, every write before it with an earlier one. In a transaction over several disks ({@code JointCut}) each
 * disk's checkpoint begins at the one instant of the joint cut.
 */
public final class CheckpointActions
{
    /** The QMP command and transaction action type of checkpoint-add. */
    public static final String ADD = "__dev.tidemark_checkpoint-add";
    /** The QMP command of checkpoint-remove. */
    public static final String REMOVE = "__dev.tidemark_checkpoint-remove";
    /** The QMP command of bitmap-from-checkpoint. */
    public static final String BITMAP_FROM = "__dev.tidemark_bitmap-from-checkpoint";

    private CheckpointActions()
    {
    }

    /**
     * @param name the new checkpoint's name (1..1023 bytes of UTF-8, unique on the disk).
     * @param disks the disks of the transaction, recorded with the checkpoint; read when the action prepares, so a
     *              caller that parses a transaction may still add to it after creating the action.
     * @return {@code checkpoint-add}: the disk's current epoch advances at the cut.
     */
    public static ControlAction add(final String name, final List<String> disks)
    {
        return new ControlAction()
        {
            private DiskCheckpoints checkpoints;
            private long previous;

            @Override
            public void prepare(final CutContext ctx)
            {
                checkName(name);
                final DiskCheckpoints target = ctx.disk().checkpoints();
                if (target.contains(name))
                {
                    throw EngineException.generic("Checkpoint already exists: " + name);
                }
                try
                {
                    if (target.ensureMap(ctx.disk().isDurable()))
                    {
                        // From this cut on the ring stamps writes into the new map.
                        ctx.disk().markHook(target);
                    }
                }
                catch (final IOException | RuntimeException ex)
                {
                    throw new EngineException(EngineException.Reason.GENERIC, "Cannot create the epoch map of disk '"
                        + target.diskName() + "': " + ex.getMessage(), ex);
                }
                final long before = target.epoch();
                final long epoch = target.advance();
                if (epoch < 0)
                {
                    target.startCompaction();
                    final Checkpoint oldest = target.oldest();
                    throw EngineException.generic("Checkpoint epochs of disk '" + target.diskName()
                        + "' are exhausted until a compaction of its epoch map ends"
                        + (oldest == null ? "" : " or checkpoint '" + oldest.name() + "' is removed"));
                }
                previous = before;
                checkpoints = target;
                final List<String> members = List.copyOf(disks);
                final long created = System.currentTimeMillis();
                ctx.journal().append(JournalRecord.checkpointAdded(name, epoch, created, String.join("\n", members)));
                target.put(new Checkpoint(name, epoch, created, members));
            }

            @Override
            public void commit(final CutContext ctx)
            {
                if (checkpoints.epochMap().compactionDue())
                {
                    checkpoints.startCompaction();
                }
            }

            @Override
            public void abort(final CutContext ctx)
            {
                checkpoints.remove(name);
                checkpoints.restore(previous);
            }

            @Override
            public String type()
            {
                return ADD;
            }
        };
    }

    /**
     * @param name the checkpoint.
     * @return {@code checkpoint-remove}: the name is free at once; the write path is not touched.
     */
    public static ControlAction remove(final String name)
    {
        return new ControlAction()
        {
            private DiskCheckpoints checkpoints;
            private Checkpoint removed;
            private int position;

            @Override
            public void prepare(final CutContext ctx)
            {
                final DiskCheckpoints target = ctx.disk().checkpoints();
                final Checkpoint checkpoint = target.get(name);
                ctx.journal().append(JournalRecord.checkpointRemoved(name));
                position = target.remove(name);
                removed = checkpoint;
                checkpoints = target;
            }

            @Override
            public void commit(final CutContext ctx)
            {
                if (checkpoints.epochMap() != null && checkpoints.epochMap().compactionDue())
                {
                    checkpoints.startCompaction();
                }
            }

            @Override
            public void abort(final CutContext ctx)
            {
                checkpoints.reinsert(removed, position);
            }

            @Override
            public String type()
            {
                return REMOVE;
            }
        };
    }

    /**
     * Materialises a checkpoint: a new disabled bitmap holding the chunks changed since it, as of the cut. At the
     * map's granularity it is exact; a finer bitmap gets every one of its chunks inside a changed map chunk, a coarser
     * one every chunk that overlaps one (both conservative). The walk of the epoch map (proportional to the disk)
     * runs before the cut on the submitting thread, with a write log open; the cut adds the writes logged since. If
     * the checkpoint is not there yet when the transaction is staged (added by an earlier action of it) or changed
     * by the cut, the walk runs at the cut.
     *
     * @param checkpoint the checkpoint.
     * @param bitmap the new bitmap's name.
     * @param granularity its granularity, or 0 for the map's.
     * @param persistent whether it lives in a file beside the image.
     * @return {@code bitmap-from-checkpoint}.
     */
    public static ControlAction bitmapFrom(final String checkpoint, final String bitmap, final long granularity,
        final boolean persistent)
    {
        return new ControlAction()
        {
            private ControlAction add;
            /** The checkpoint's epoch the staged walk used. */
            private long stagedEpoch = -1;

            @Override
            public void stage(final TrackedDisk disk)
            {
                final DiskCheckpoints source = disk.checkpoints();
                final Checkpoint found;
                try
                {
                    found = source.get(checkpoint);
                }
                catch (final EngineException ex)
                {
                    // Reported at the cut, or made by an earlier action of the transaction.
                    return;
                }
                add = addFrom(source, found);
                stagedEpoch = found.epoch();
                add.stage(disk);
            }

            @Override
            public void prepare(final CutContext ctx)
            {
                final DiskCheckpoints source = ctx.disk().checkpoints();
                final Checkpoint found = source.get(checkpoint);
                if (add == null || found.epoch() != stagedEpoch)
                {
                    unstage();
                    add = addFrom(source, found);
                }
                add.prepare(ctx);
            }

            private ControlAction addFrom(final DiskCheckpoints source, final Checkpoint found)
            {
                final long bits = granularity == 0 ? source.granularity() : granularity;
                return BitmapActions.addFilled(bitmap, bits, persistent, (DirtyBitmap target) ->
                    source.epochMap().changedSince(found.epoch(), 0, target.diskSize(), (offset, length) ->
                    {
                        target.mark(offset, length);
                        return true;
                    }), BITMAP_FROM);
            }

            @Override
            public void commit(final CutContext ctx)
            {
                add.commit(ctx);
            }

            @Override
            public void abort(final CutContext ctx)
            {
                add.abort(ctx);
            }

            @Override
            public void unstage()
            {
                if (add != null)
                {
                    add.unstage();
                }
            }

            @Override
            public String type()
            {
                return BITMAP_FROM;
            }
        };
    }

    static void checkName(final String name)
    {
        if (name == null || name.isEmpty())
        {
            throw EngineException.generic("Checkpoint name cannot be empty");
        }
        if (name.getBytes(StandardCharsets.UTF_8).length > DiskCheckpoints.MAX_NAME_BYTES)
        {
            throw EngineException.generic("Checkpoint name too long: " + name);
        }
    }
}
