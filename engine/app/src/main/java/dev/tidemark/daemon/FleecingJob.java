package dev.tidemark.daemon;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.job.Job;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobTransaction;

/**
 * The job a {@code blockdev-backup sync: none} shows while its fleecing view is in use; its state machine is
 * {@link Job}'s (any thread), its worker only waits for a cancel.
 *
 * <p>In QEMU a {@code sync: none} backup copies old data into the target before each guest write and never ends
 * on its own; {@code job-cancel} ends it. Here the copy-before-write work is done by the {@link
 * dev.tidemark.engine.fleece.FleecingView} bound to the target node, so the job has nothing to copy; it exists so
 * that the QMP life cycle (events, {@code query-jobs}, cancel) is QEMU's.
 */
final class FleecingJob extends Job
{
    private final String device;

    FleecingJob(final String id, final String device, final JobOptions options, final EngineEvents events)
    {
        super(id, "backup", options, events);
        this.device = device;
    }

    @Override
    public String device()
    {
        return device;
    }

    @Override
    protected void run() throws Exception
    {
        awaitCancel(() -> false);
    }

    /**
     * Starts a {@link FleecingJob} at a transaction's cut; methods run on the mark thread as {@link ControlAction}
     * requires.
     */
    static final class StartAction implements ControlAction
    {
        private final JobManager manager;
        private final String id;
        private final String device;
        private final JobOptions options;
        private final JobTransaction txn;
        private boolean reserved;

        StartAction(final JobManager manager, final String id, final String device, final JobOptions options,
            final JobTransaction txn)
        {
            this.manager = manager;
            this.id = id;
            this.device = device;
            this.options = options;
            this.txn = txn;
        }

        @Override
        public void prepare(final CutContext ctx)
        {
            manager.reserve(id);
            reserved = true;
        }

        @Override
        public void commit(final CutContext ctx)
        {
            final FleecingJob job = new FleecingJob(id, device, options, ctx.disk()::emit);
            manager.register(job, txn != null ? txn : new JobTransaction());
            reserved = false;
            ctx.afterCommit(() -> manager.start(job));
        }

        @Override
        public void abort(final CutContext ctx)
        {
            if (reserved)
            {
                manager.unreserve(id);
                reserved = false;
            }
        }

        @Override
        public String type()
        {
            return "blockdev-backup";
        }
    }
}
