package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.WriteLog;
import java.util.ArrayList;
import java.util.List;
import org.agrona.collections.LongArrayList;

/**
 * The bitmap actions of QMP's {@code transaction} (and of the single bitmap commands, which are one-action
 * transactions); factories are stateless, each action object is used by one transaction on the mark thread.
 *
 * <p>Checks and error texts are QEMU's: busy forbids remove, clear, enable, disable and merging into; an
 * inconsistent bitmap allows only remove. Rollback is QEMU's: an added bitmap is removed, a cleared or merged
 * one restored, an enabled or disabled one reverted, a removed one reinstated.
 */
public final class BitmapActions
{
    private BitmapActions()
    {
    }

    /**
     * @param name new bitmap's name.
     * @return {@code block-dirty-bitmap-add} with granularity 65536, not persistent, recording.
     */
    public static ControlAction add(final String name)
    {
        return add(name, BitmapRegistry.DEFAULT_GRANULARITY, false, false);
    }

    /**
     * @param name new bitmap's name (1..1023 bytes, unique on the disk).
     * @param granularity bytes per chunk, a power of two in [512, 2^31].
     * @param persistent whether it lives in a file beside the image and survives close.
     * @param disabled whether it starts not recording.
     * @return {@code block-dirty-bitmap-add}.
     */
    public static ControlAction add(final String name, final long granularity, final boolean persistent,
        final boolean disabled)
    {
        return new AddingAction()
        {
            private BitmapRegistry registry;
            private BitmapRegistry.Staged staged;

            @Override
            public void stage(final TrackedDisk disk)
            {
                registry = disk.bitmaps();
                staged = registry.stage(name, granularity, persistent);
            }

            @Override
            public void prepare(final CutContext ctx)
            {
                added = ctx.registry().addEntry(name, granularity, persistent, !disabled, staged);
            }

            @Override
            public void unstage()
            {
                if (registry != null)
                {
                    registry.unstage(staged);
                }
            }

            @Override
            public String type()
            {
                return "block-dirty-bitmap-add";
            }
        };
    }

    /**
     * A disabled bitmap whose bits {@code fill} sets (a bitmap materialised from a checkpoint). Staged: the bitmap is
     * made and filled before the cut, off the ring, with a write log open, and the cut adds only the writes logged
     * since; so {@code fill} must give every chunk it would give at the cut except those written after the log
     * opened (true of an epoch map: a chunk written later carries a later epoch). Without staging, or when another
     * cut came between, {@code fill} runs at the cut.
     *
     * @param name new bitmap's name (1..1023 bytes, unique on the disk).
     * @param granularity bytes per chunk.
     * @param persistent whether it lives in a file beside the image.
     * @param fill sets the bits: on the submitting thread when staged, else on the mark thread at the cut.
     * @param type the QMP action type, for messages.
     * @return the action; abort removes the bitmap.
     */
    public static ControlAction addFilled(final String name, final long granularity, final boolean persistent,
        final java.util.function.Consumer<DirtyBitmap> fill, final String type)
    {
        return new AddingAction()
        {
            private TrackedDisk disk;
            private WriteLog log;
            private BitmapRegistry.Staged staged;
            private long applied;

            @Override
            public void stage(final TrackedDisk on)
            {
                final BitmapRegistry registry = on.bitmaps();
                disk = on;
                log = on.openWriteLog();
                if (log == null)
                {
                    return;
                }
                // The walk starts after the log opened: whatever it misses was written since, and is in the log.
                staged = registry.stage(name, granularity, persistent);
                if (staged == null || !registry.fillBy(staged, fill))
                {
                    unstage();
                    return;
                }
                applied = catchUp(log, 0, BitmapRegistry.bits(staged));
            }

            @Override
            public void prepare(final CutContext ctx)
            {
                final BitmapRegistry registry = ctx.registry();
                final BitmapRegistry.Entry entry;
                final boolean filled;
                if (disk != null && staged != null && log != null && log.isExactAt(ctx))
                {
                    // No other cut since the log opened: the staged bits plus the logged writes are the bits now.
                    final DirtyBitmap fresh = BitmapRegistry.bits(staged);
                    markLogged(log, applied, log.size(), fresh);
                    entry = registry.addEntry(name, granularity, persistent, false, staged);
                    filled = entry.bitmap == fresh;
                }
                else
                {
                    entry = registry.addEntry(name, granularity, persistent, false, null);
                    filled = false;
                }
                try
                {
                    if (!filled)
                    {
                        fill.accept(entry.bitmap);
                    }
                    if (persistent && registry.isDurable())
                    {
                        // Its journal record commits with the transaction: the bits must be on storage first (when
                        // staged, only the pages of the writes applied here are left to force).
                        entry.bitmap.force();
                    }
                }
                catch (final RuntimeException | Error ex)
                {
                    registry.dropEntry(entry);
                    throw ex;
                }
                added = entry;
            }

            @Override
            public void unstage()
            {
                releaseStaged(disk, log, staged);
                disk = null;
            }

            @Override
            public String type()
            {
                return type;
            }
        };
    }

    /**
     * An action that adds a bitmap in {@code prepare} (setting {@link #added}); used by one transaction on the mark
     * thread. Commit keeps it, abort journals its removal and drops it.
     */
    private abstract static class AddingAction implements ControlAction
    {
        /** The entry prepare added, until the transaction ends. */
        BitmapRegistry.Entry added;

        @Override
        public void commit(final CutContext ctx)
        {
            added = null;
        }

        @Override
        public void abort(final CutContext ctx)
        {
            ctx.registry().journalRemoved(added);
            ctx.registry().dropEntry(added);
        }
    }

    /** Closes a staged action's write log and releases its staged bitmap; nothing when it staged nothing. */
    private static void releaseStaged(final TrackedDisk disk, final WriteLog log, final BitmapRegistry.Staged staged)
    {
        if (disk != null)
        {
            disk.closeWriteLog(log);
            disk.bitmaps().unstage(staged);
        }
    }

    /**
     * Marks the writes logged in {@code [from, to)} in a bitmap an action built off the ring; on the thread that may
     * read the log that far ({@link WriteLog#forEach}).
     *
     * @param log the action's write log.
     * @param from first extent to apply.
     * @param to end extent.
     * @param bitmap the bitmap that catches up.
     * @return {@code to}: the log position applied up to.
     */
    public static long markLogged(final WriteLog log, final long from, final long to, final DirtyBitmap bitmap)
    {
        log.forEach(from, to, (offset, length) ->
        {
            bitmap.mark(offset, length);
            return true;
        });
        return to;
    }

    /**
     * Applies the writes logged since {@code from} to a bitmap built off the ring, a few rounds while many arrive, so
     * that the cut applies only the last ones.
     *
     * @return the log position applied up to.
     */
    private static long catchUp(final WriteLog log, final long from, final DirtyBitmap fresh)
    {
        long applied = from;
        for (int round = 0; round < 4; round++)
        {
            final long size = log.size();
            if (size - applied < 64)
            {
                break;
            }
            applied = markLogged(log, applied, size, fresh);
        }
        return applied;
    }

    /**
     * @param name the bitmap.
     * @return {@code block-dirty-bitmap-remove}; a persistent bitmap's file is deleted on commit.
     */
    public static ControlAction remove(final String name)
    {
        return new ControlAction()
        {
            private BitmapRegistry.Entry removed;
            private int position;

            @Override
            public void prepare(final CutContext ctx)
            {
                final BitmapRegistry registry = ctx.registry();
                final BitmapRegistry.Entry entry = registry.lookup(name);
                BitmapRegistry.checkBusy(entry);
                registry.journalRemoved(entry);
                position = registry.detach(entry);
                removed = entry;
            }

            @Override
            public void commit(final CutContext ctx)
            {
                ctx.registry().release(removed);
            }

            @Override
            public void abort(final CutContext ctx)
            {
                ctx.registry().reattach(removed, position);
                ctx.registry().journalRestoredAdd(removed);
            }

            @Override
            public String type()
            {
                return "block-dirty-bitmap-remove";
            }
        };
    }

    /**
     * @param name the bitmap.
     * @return {@code block-dirty-bitmap-clear}.
     */
    public static ControlAction clear(final String name)
    {
        return new ControlAction()
        {
            private BitmapRegistry.Entry entry;
            private LongArrayList undo;
            private BitmapRegistry stagedIn;
            private BitmapRegistry.Staged staged;
            private BitmapRegistry.Replaced replaced;

            @Override
            public void stage(final TrackedDisk disk)
            {
                // An empty bitmap like this one, built here: at the cut the clear is a reference swap.
                final BitmapInfo info = disk.bitmaps().queryFlags(name);
                if (info.busy() || info.inconsistent())
                {
                    return;
                }
                stagedIn = disk.bitmaps();
                staged = stagedIn.stage(name, info.granularity(), info.persistent());
            }

            @Override
            public void prepare(final CutContext ctx)
            {
                final BitmapRegistry registry = ctx.registry();
                final BitmapRegistry.Entry found = registry.lookup(name);
                BitmapRegistry.checkBusy(found);
                BitmapRegistry.checkInconsistent(found);
                replaced = registry.swapIn(found, staged);
                if (replaced == null)
                {
                    // Nothing staged (or it did not fit): clear in place, the dirty extents as the undo log.
                    registry.journalBitsChanging(found);
                    undo = dirtyExtents(found.bitmap);
                    found.bitmap.clearAll();
                }
                entry = found;
            }

            @Override
            public void commit(final CutContext ctx)
            {
                if (replaced != null)
                {
                    ctx.registry().retireReplaced(entry, replaced);
                    replaced = null;
                }
                undo = null;
            }

            @Override
            public void abort(final CutContext ctx)
            {
                if (replaced != null)
                {
                    ctx.registry().unswap(entry, staged, replaced);
                    replaced = null;
                }
                else
                {
                    restore(entry.bitmap, undo);
                }
                undo = null;
            }

            @Override
            public void unstage()
            {
                if (stagedIn != null)
                {
                    stagedIn.unstage(staged);
                }
            }

            @Override
            public String type()
            {
                return "block-dirty-bitmap-clear";
            }
        };
    }

    /**
     * @param name the bitmap.
     * @return {@code block-dirty-bitmap-enable}.
     */
    public static ControlAction enable(final String name)
    {
        return recording(name, true);
    }

    /**
     * @param name the bitmap.
     * @return {@code block-dirty-bitmap-disable}.
     */
    public static ControlAction disable(final String name)
    {
        return recording(name, false);
    }

    private static ControlAction recording(final String name, final boolean enable)
    {
        return new ControlAction()
        {
            private BitmapRegistry.Entry entry;
            private boolean before;

            @Override
            public void prepare(final CutContext ctx)
            {
                final BitmapRegistry registry = ctx.registry();
                final BitmapRegistry.Entry found = registry.lookup(name);
                BitmapRegistry.checkBusy(found);
                BitmapRegistry.checkInconsistent(found);
                before = found.enabled;
                found.enabled = enable;
                registry.journalFlags(found);
                entry = found;
            }

            @Override
            public void commit(final CutContext ctx)
            {
                entry = null;
            }

            @Override
            public void abort(final CutContext ctx)
            {
                entry.enabled = before;
                ctx.registry().journalFlags(entry);
            }

            @Override
            public String type()
            {
                return enable ? "block-dirty-bitmap-enable" : "block-dirty-bitmap-disable";
            }
        };
    }

    /**
     * @param target the bitmap that receives the bits; not cleared first.
     * @param sources bitmaps ORed into it, in order; may include the target.
     * @return {@code block-dirty-bitmap-merge}; the target is unchanged when any source is missing or unusable.
     */
    public static ControlAction merge(final String target, final List<String> sources)
    {
        final List<String> names = List.copyOf(sources);
        return new ControlAction()
        {
            private BitmapRegistry.Entry entry;
            private LongArrayList undo;
            private TrackedDisk disk;
            private WriteLog log;
            private BitmapRegistry.Staged staged;
            private BitmapRegistry.Replaced replaced;
            private long changes;
            private boolean recording;
            private long applied;

            @Override
            public void stage(final TrackedDisk on)
            {
                // Off the ring: a new bitmap = target | sources, copied now; at the cut it gets the writes marked
                // since (the write log) and takes the target's place by a reference swap.
                final BitmapRegistry registry = on.bitmaps();
                final BitmapInfo info = registry.queryFlags(target);
                if (info.busy() || info.inconsistent())
                {
                    return;
                }
                disk = on;
                log = on.openWriteLog();
                if (log == null)
                {
                    return;
                }
                // Read after the log opened: a change in between is a cut (the epoch check) or moves the counter.
                changes = registry.changes();
                recording = registry.queryFlags(target).recording();
                for (final String source : names)
                {
                    recording |= registry.queryFlags(source).recording();
                }
                staged = registry.stage(target, info.granularity(), info.persistent());
                final List<String> all = new ArrayList<>();
                all.add(target);
                all.addAll(names);
                if (staged == null || !registry.fill(staged, all))
                {
                    unstage();
                    return;
                }
                // Catch up with the writes logged while copying, so that the cut applies only the last ones.
                if (recording)
                {
                    applied = catchUp(log, applied, BitmapRegistry.bits(staged));
                }
            }

            @Override
            public void prepare(final CutContext ctx)
            {
                final BitmapRegistry registry = ctx.registry();
                final BitmapRegistry.Entry found = registry.lookup(target);
                BitmapRegistry.checkBusy(found);
                BitmapRegistry.checkInconsistent(found);
                final List<DirtyBitmap> bits = new ArrayList<>();
                boolean recordingNow = BitmapRegistry.isRecording(found);
                for (final String source : names)
                {
                    final BitmapRegistry.Entry from = registry.lookup(source);
                    // As qemu-storage-daemon 7.2: a busy source is refused. A job's frozen bitmap lacks the writes
                    // its successor holds since the job started, so merging it would lose them.
                    BitmapRegistry.checkBusy(from);
                    BitmapRegistry.checkInconsistent(from);
                    if (from.bitmap.diskSize() != found.bitmap.diskSize())
                    {
                        throw EngineException.generic("Bitmaps are of different sizes (destination size is "
                            + found.bitmap.diskSize() + ", source size is " + from.bitmap.diskSize()
                            + ") and can't be merged");
                    }
                    bits.add(from.bitmap);
                    recordingNow |= BitmapRegistry.isRecording(from);
                }
                entry = found;
                // The staged copy is exact only if no other cut committed since the log opened and nothing (an
                // earlier action of this transaction) changed the bitmaps since the copy: then every write since the
                // copy is in the log, and those the target or a source recorded belong in the result.
                if (disk != null && staged != null && log != null && log.isExactAt(ctx)
                    && registry.changes() == changes && recordingNow == recording)
                {
                    if (recording)
                    {
                        final DirtyBitmap fresh = BitmapRegistry.bits(staged);
                        markLogged(log, applied, log.size(), fresh);
                    }
                    replaced = registry.swapIn(found, staged);
                    if (replaced != null)
                    {
                        return;
                    }
                }
                registry.journalBitsChanging(found);
                // The target's dirty extents before the merge are the undo log (cost: what is dirty).
                undo = dirtyExtents(found.bitmap);
                try
                {
                    for (final DirtyBitmap source : bits)
                    {
                        found.bitmap.merge(source);
                    }
                }
                catch (final RuntimeException ex)
                {
                    // This action is not among the prepared ones yet: undo its partial merge here.
                    restore(found.bitmap, undo);
                    undo = null;
                    throw ex;
                }
            }

            @Override
            public void commit(final CutContext ctx)
            {
                if (replaced != null)
                {
                    ctx.registry().retireReplaced(entry, replaced);
                    replaced = null;
                }
                undo = null;
            }

            @Override
            public void abort(final CutContext ctx)
            {
                if (replaced != null)
                {
                    ctx.registry().unswap(entry, staged, replaced);
                    replaced = null;
                }
                else
                {
                    restore(entry.bitmap, undo);
                }
                undo = null;
            }

            @Override
            public void unstage()
            {
                releaseStaged(disk, log, staged);
                disk = null;
            }

            @Override
            public String type()
            {
                return "block-dirty-bitmap-merge";
            }
        };
    }

    /**
     * QMP's {@code abort} action: always fails, for testing transactions.
     *
     * @return an action whose prepare fails with {@code Transaction aborted using Abort action}.
     */
    public static ControlAction abort()
    {
        return new ControlAction()
        {
            @Override
            public void prepare(final CutContext ctx)
            {
                throw EngineException.generic("Transaction aborted using Abort action");
            }

            @Override
            public void commit(final CutContext ctx)
            {
                // never reached: prepare always fails
            }

            @Override
            public void abort(final CutContext ctx)
            {
                // nothing was prepared
            }

            @Override
            public String type()
            {
                return "abort";
            }
        };
    }

    /** @return the dirty extents of {@code bitmap} as offset, length pairs. */
    private static LongArrayList dirtyExtents(final BitmapView bitmap)
    {
        final LongArrayList extents = new LongArrayList();
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (offset, length) ->
        {
            extents.addLong(offset);
            extents.addLong(length);
            return true;
        });
        return extents;
    }

    /** Gives {@code bitmap} back exactly the extents of {@code undo}; runs at the cut, with no write marked since. */
    private static void restore(final DirtyBitmap bitmap, final LongArrayList undo)
    {
        bitmap.clearAll();
        for (int i = 0; i < undo.size(); i += 2)
        {
            bitmap.mark(undo.getLong(i), undo.getLong(i + 1));
        }
    }
}
