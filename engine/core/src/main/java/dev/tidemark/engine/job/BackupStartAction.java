package dev.tidemark.engine.job;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.engine.registry.BitmapRegistry;
import dev.tidemark.engine.registry.Successor;
import dev.tidemark.io.BlockStore;

import java.util.Objects;

/**
 * Starts a backup job at a transaction's cut ({@code blockdev-backup}, alone or as a {@code transaction} action);
 * its methods run on the ring's mark thread as {@link ControlAction} requires, {@link #job()} from any thread.
 *
 * <p>{@link #prepare} checks the arguments in QEMU's order with QEMU's messages (protocol brief 2.4), reserves
 * the job id, freezes the bitmap (a successor records from this cut) and fills the job's copy map from the
 * frozen bits. {@link #commit} creates the job ({@code created}), registers its copy-before-write interceptor
 * from this cut on and journals its start; the job starts running right after the transaction commits.
 * {@link #abort} releases the id and reclaims the successor, so a failed transaction leaves nothing and emits no
 * job event.
 */
public final class BackupStartAction implements ControlAction
{
    /** Copy granularity when no bitmap asks for a coarser one (QEMU's backup cluster size). */
    public static final long DEFAULT_CHUNK = 64 << 10;

    private final JobManager manager;
    private final BackupOptions options;
    private final BlockStore target;
    private final JobTransaction txn;
    private String reservedId;
    private Successor successor;
    private ChunkClaims claims;
    private long totalBytes;
    private BitmapMode mode;
    private volatile BackupJob job;
    private BitmapRegistry stagedIn;
    private BitmapRegistry.Staged staged;

    /**
     * @param manager the job registry.
     * @param options the backup's arguments.
     * @param target where the copy goes; same size as the disk.
     * @param txn the transaction the job joins for {@code completion-mode: grouped}, or {@code null} for a
     *            transaction of its own.
     */
    public BackupStartAction(final JobManager manager, final BackupOptions options, final BlockStore target,
        final JobTransaction txn)
    {
        this.manager = Objects.requireNonNull(manager, "manager");
        this.options = Objects.requireNonNull(options, "options");
        this.target = Objects.requireNonNull(target, "target");
        this.txn = txn;
    }

    /**
     * Starts a backup alone in a transaction of its own and returns its job.
     *
     * @param disk the source disk.
     * @param manager the job registry.
     * @param options the arguments.
     * @param target the target store.
     * @return the started job.
     * @throws EngineException with QEMU's message when the arguments are refused.
     */
    public static BackupJob start(final TrackedDisk disk, final JobManager manager, final BackupOptions options,
        final BlockStore target)
    {
        final BackupStartAction action = new BackupStartAction(manager, options, target, null);
        disk.transaction(action);
        return action.job();
    }

    /** @return the job once the transaction committed, else {@code null}. */
    public BackupJob job()
    {
        return job;
    }

    @Override
    public String type()
    {
        return "blockdev-backup";
    }

    @Override
    public void stage(final TrackedDisk disk)
    {
        // The job's thread waits in the pool before the cut, so the cut hands the job over instead of creating it.
        Job.prestartWorker();
        // The successor's empty bitmap (a 2 GiB file at 4 KiB over 64 TiB) is made here, not at the cut.
        final String bitmap = options.bitmap();
        if (bitmap == null)
        {
            return;
        }
        final BitmapInfo info = disk.bitmaps().queryFlags(bitmap);
        if (info.busy() || info.inconsistent())
        {
            return;
        }
        stagedIn = disk.bitmaps();
        staged = stagedIn.stage(bitmap, info.granularity(), info.persistent());
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
    public void prepare(final CutContext ctx)
    {
        final TrackedDisk disk = ctx.disk();
        final BitmapRegistry registry = ctx.registry();
        final SyncMode sync = options.sync();
        final String bitmap = options.bitmap();
        BitmapMode bitmapMode = options.bitmapMode();
        if ((sync == SyncMode.INCREMENTAL || sync == SyncMode.BITMAP) && bitmap == null)
        {
            throw EngineException.generic("must provide a valid bitmap name for '" + sync.qmpName() + "' sync mode");
        }
        if (sync == SyncMode.INCREMENTAL)
        {
            if (bitmapMode != null && bitmapMode != BitmapMode.ON_SUCCESS)
            {
                throw EngineException.generic("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
            }
            bitmapMode = BitmapMode.ON_SUCCESS;
        }
        if (bitmap != null)
        {
            if (!registry.exists(bitmap))
            {
                throw EngineException.generic("Bitmap '" + bitmap + "' could not be found");
            }
            if (bitmapMode == null)
            {
                throw EngineException.generic("Bitmap sync mode must be given when providing a bitmap");
            }
            final BitmapInfo info = registry.queryFlags(bitmap);
            if (info.busy())
            {
                throw EngineException.generic("Bitmap '" + bitmap
                    + "' is currently in use by another operation and cannot be used");
            }
            if (info.inconsistent())
            {
                throw EngineException.generic("Bitmap '" + bitmap + "' is inconsistent and cannot be used");
            }
            if (sync == SyncMode.NONE)
            {
                throw EngineException.generic("sync mode 'none' does not produce meaningful bitmap outputs");
            }
            if (bitmapMode == BitmapMode.NEVER && sync != SyncMode.BITMAP && sync != SyncMode.INCREMENTAL)
            {
                throw EngineException.generic("Bitmap sync mode 'never' has no meaningful effect when combined with"
                    + " sync mode '" + sync.qmpName() + "'");
            }
        }
        else if (bitmapMode != null)
        {
            throw EngineException.generic("Cannot specify bitmap sync mode without a bitmap");
        }
        if (target.size() != disk.size())
        {
            throw EngineException.generic("Source and target image have different sizes");
        }
        if (target.isReadOnly())
        {
            throw new EngineException(EngineException.Reason.READ_ONLY, "Block node is read-only");
        }
        final String id = options.effectiveJobId();
        manager.reserve(id);
        reservedId = id;
        long chunk = DEFAULT_CHUNK;
        if (bitmap != null)
        {
            try
            {
                successor = registry.createSuccessor(bitmap, staged);
            }
            catch (final RuntimeException ex)
            {
                manager.unreserve(id);
                reservedId = null;
                throw ex;
            }
            chunk = Math.max(chunk, successor.frozenParent().granularity());
        }
        mode = bitmapMode;
        claims = new ChunkClaims(disk.size(), chunk);
        if (sync == SyncMode.BITMAP || sync == SyncMode.INCREMENTAL)
        {
            // The frozen parent is consulted in place, nothing walked at the cut. Unless the job clears it as it
            // copies (bitmap-mode always), it does not change while the job runs, so the job counts it (the
            // total) later, off the ring thread.
            claims.needDirty(successor.frozenParent());
            totalBytes = mode == BitmapMode.ALWAYS ? claims.neededBytes() : -1;
        }
        else
        {
            claims.needAll();
            totalBytes = sync == SyncMode.NONE ? 0 : disk.size();
        }
    }

    @Override
    public void commit(final CutContext ctx)
    {
        final TrackedDisk disk = ctx.disk();
        final SyncMode sync = options.sync();
        if (successor != null && mode == BitmapMode.ALWAYS && (sync == SyncMode.FULL || sync == SyncMode.TOP))
        {
            // The job clears what it copies; what stays set on failure is what it did not copy (QEMU's rule).
            final DirtyBitmap parent = successor.frozenParent();
            parent.clearAll();
            parent.mark(0, disk.size());
        }
        final BackupJob created = new BackupJob(reservedId, options, disk, target, claims, successor, mode,
            ctx.writesBeforeCutDone(), totalBytes, disk::emit);
        ctx.addInterceptor(created.interceptor());
        manager.register(created, txn != null ? txn : new JobTransaction());
        ctx.journal().append(JournalRecord.jobStarted(reservedId, "backup sync=" + sync.qmpName()
            + (options.bitmap() != null ? " bitmap=" + options.bitmap() + " bitmap-mode=" + mode.qmpName() : "")));
        job = created;
        ctx.afterCommit(() -> manager.start(created));
    }

    @Override
    public void abort(final CutContext ctx)
    {
        if (successor != null)
        {
            ctx.registry().reclaim(successor);
            successor = null;
        }
        if (reservedId != null)
        {
            manager.unreserve(reservedId);
            reservedId = null;
        }
    }
}
