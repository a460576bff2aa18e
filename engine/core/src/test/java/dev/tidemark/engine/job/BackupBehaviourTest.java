package dev.tidemark.engine.job;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.BackgroundPriority;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.ForwardingBlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.FaultyStore;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Backup validation, event order, grouped completion, sync none and speed, on a real disk. */
@Timeout(60)
class BackupBehaviourTest extends DiskTestSupport
{
    private static final int SIZE = 8 << 20;

    @BeforeEach
    void open() throws Exception
    {
        openDisk(SIZE);
        disk.transaction(BitmapActions.add("b0"));
    }

    private void expectRefused(final BackupOptions options, final long targetSize, final String message)
        throws Exception
    {
        try (RawFileStore t = target(targetSize))
        {
            final int before = events.all().size();
            assertThatThrownBy(() -> disk.transaction(new BackupStartAction(manager, options, t, null)))
                .as(message).isInstanceOf(EngineException.class).hasMessage(message);
            assertThat(events.all()).as("no job event for a refused backup").hasSize(before);
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            assertThat(manager.jobs()).isEmpty();
        }
    }

    @Test
    void everyInvalidCombinationGetsQemusMessage() throws Exception
    {
        final BackupOptions inc = BackupOptions.of("vda", SyncMode.INCREMENTAL);
        final BackupOptions bmp = BackupOptions.of("vda", SyncMode.BITMAP);
        expectRefused(inc, SIZE, "must provide a valid bitmap name for 'incremental' sync mode");
        expectRefused(bmp, SIZE, "must provide a valid bitmap name for 'bitmap' sync mode");
        expectRefused(inc.withBitmap("b0", BitmapMode.ALWAYS), SIZE,
            "Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
        expectRefused(bmp.withBitmap("nope", BitmapMode.ALWAYS), SIZE, "Bitmap 'nope' could not be found");
        expectRefused(bmp.withBitmap("b0", null), SIZE, "Bitmap sync mode must be given when providing a bitmap");
        expectRefused(BackupOptions.of("vda", SyncMode.NONE).withBitmap("b0", BitmapMode.ON_SUCCESS), SIZE,
            "sync mode 'none' does not produce meaningful bitmap outputs");
        expectRefused(BackupOptions.of("vda", SyncMode.FULL).withBitmap("b0", BitmapMode.NEVER), SIZE,
            "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode 'full'");
        expectRefused(BackupOptions.of("vda", SyncMode.TOP).withBitmap("b0", BitmapMode.NEVER), SIZE,
            "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode 'top'");
        expectRefused(BackupOptions.of("vda", SyncMode.FULL).withBitmap(null, BitmapMode.ALWAYS), SIZE,
            "Cannot specify bitmap sync mode without a bitmap");
        expectRefused(BackupOptions.of("vda", SyncMode.FULL), SIZE - 512,
            "Source and target image have different sizes");
        expectRefused(BackupOptions.of("vda", SyncMode.FULL).withJobId("9lives"), SIZE, "Invalid job ID '9lives'");
        // A busy bitmap (frozen by a running backup) and a job id in use.
        try (RawFileStore t = target(SIZE))
        {
            final BackupStartAction running = new BackupStartAction(manager,
                bmp.withJobId("slow").withBitmap("b0", BitmapMode.ON_SUCCESS).withJob(new JobOptions(true, true, 1)),
                t, null);
            disk.write(0, ByteBuffer.wrap(new byte[4096]), false);
            disk.transaction(running);
            expectRefusedWhileRunning(bmp.withJobId("other").withBitmap("b0", BitmapMode.ALWAYS),
                "Bitmap 'b0' is currently in use by another operation and cannot be used");
            expectRefusedWhileRunning(BackupOptions.of("vda", SyncMode.FULL).withJobId("slow"),
                "Job ID 'slow' already in use");
            running.job().cancel();
            awaitGone(running.job());
        }
        // A transaction whose second action fails leaves nothing: no job, no event, id free, bitmap free.
        try (RawFileStore t = target(SIZE))
        {
            final int before = events.all().size();
            final BackupStartAction first = new BackupStartAction(manager,
                inc.withJobId("tx").withBitmap("b0", null), t, null);
            assertThatThrownBy(() -> disk.transaction(List.of(first, BitmapActions.add("b0"))))
                .isInstanceOf(EngineException.class);
            assertThat(first.job()).isNull();
            assertThat(events.all()).hasSize(before);
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            manager.reserve("tx");
            manager.unreserve("tx");
        }
    }

    private void expectRefusedWhileRunning(final BackupOptions options, final String message) throws Exception
    {
        try (RawFileStore t = target(SIZE))
        {
            assertThatThrownBy(() -> disk.transaction(new BackupStartAction(manager, options, t, null)))
                .isInstanceOf(EngineException.class).hasMessage(message);
        }
    }

    @Test
    void theJobCopiesAtItsOwnPriorityUnlessToldToYield() throws Exception
    {
        final int serving = BackgroundPriority.currentThreadNice();
        assertThat(copyingNice("same")).as("by default, as the threads that serve the guest").containsOnly(serving);
        System.setProperty(Job.JOB_NICE_PROPERTY, "3");
        try
        {
            assertThat(copyingNice("nicer")).containsOnly(Math.min(19, serving + 3));
        }
        finally
        {
            System.clearProperty(Job.JOB_NICE_PROPERTY);
        }
        assertThat(BackgroundPriority.currentThreadNice()).as("the caller's own priority").isEqualTo(serving);
    }

    /** Runs a full backup and returns the nice value of every thread that wrote to its target. */
    private List<Integer> copyingNice(final String id) throws Exception
    {
        final List<Integer> copying = new CopyOnWriteArrayList<>();
        try (RawFileStore t = target(SIZE))
        {
            final BlockStore watched = new ForwardingBlockStore(t)
            {
                @Override
                public void write(final long offset, final ByteBuffer src) throws IOException
                {
                    copying.add(BackgroundPriority.currentThreadNice());
                    super.write(offset, src);
                }
            };
            awaitGone(BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.FULL).withJobId(id),
                watched));
            Workload.assertSameContent(base, Workload.read(t), "full backup " + id);
        }
        assertThat(copying).as("writes to the target").isNotEmpty();
        return copying;
    }

    @Test
    void jobsStartOnThreadsWaitingInThePoolNotOnNewOnes() throws Exception
    {
        // The cut hands each job to a thread waiting in the pool (the previous job's, or the one its staging left).
        final int before = Job.workerThreadsMade();
        for (int i = 0; i < 20; i++)
        {
            try (RawFileStore t = target(SIZE))
            {
                awaitGone(BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.FULL)
                    .withJobId("pooled" + i), t));
            }
        }
        // One thread per job before the pool; a few may still be made when one is slow to return to it.
        assertThat(Job.workerThreadsMade() - before).as("job threads made for 20 backups").isLessThan(10);
    }

    @Test
    void successFailureAndCancelEmitQemusSequences() throws Exception
    {
        try (RawFileStore ok = target(SIZE); RawFileStore bad = target(SIZE); RawFileStore slow = target(SIZE))
        {
            final BackupJob success = BackupStartAction.start(disk, manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("ok"), ok);
            awaitGone(success);
            // No BLOCK_JOB_PENDING with auto-finalize, as qemu-storage-daemon (DaemonConformanceTest).
            assertThat(events.briefFor("ok")).containsExactly("ok:created", "ok:running", "ok:waiting", "ok:pending",
                "ok:BLOCK_JOB_COMPLETED", "ok:concluded", "ok:null");
            Workload.assertSameContent(base, Workload.read(ok), "quiet full backup");

            final FaultyStore faulty = new FaultyStore(bad);
            faulty.failFrom(3, "Input/output error");
            final BackupJob failure = BackupStartAction.start(disk, manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("bad"), faulty);
            awaitGone(failure);
            assertThat(events.briefFor("bad")).containsExactly("bad:created", "bad:running", "bad:BLOCK_JOB_ERROR",
                "bad:aborting", "bad:BLOCK_JOB_COMPLETED", "bad:concluded", "bad:null");
            assertThat(events.last("bad", "BLOCK_JOB_ERROR").data()).containsEntry("operation", "write")
                .containsEntry("action", "report");
            final var completed = events.last("bad", "BLOCK_JOB_COMPLETED").data();
            assertThat(completed).containsEntry("error", "Input/output error");
            assertThat((Long)completed.get("offset")).isLessThan((Long)completed.get("len"));

            final BackupJob cancelled = BackupStartAction.start(disk, manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("slow").withJob(new JobOptions(true, true, 1 << 20)),
                slow);
            EventLog.await(() -> cancelled.currentProgress() > 0, 10_000, "progress");
            assertThat(manager.queryBlockJobs()).singleElement().satisfies(info -> assertThat(info)
                .containsEntry("device", "slow").containsEntry("speed", 1L << 20).containsEntry("len", (long)SIZE)
                .containsEntry("status", "running").containsEntry("type", "backup"));
            manager.cancel("slow");
            awaitGone(cancelled);
            assertThat(events.briefFor("slow")).containsExactly("slow:created", "slow:running", "slow:aborting",
                "slow:BLOCK_JOB_CANCELLED", "slow:concluded", "slow:null");
        }
    }

    @Test
    void stopPolicyPausesOnTargetErrorsAndResumeRetries() throws Exception
    {
        try (RawFileStore raw = target(SIZE))
        {
            final FaultyStore faulty = new FaultyStore(raw);
            faulty.failFrom(5, "No space left on device");
            final BackupJob job = BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.FULL)
                .withJobId("stop").withErrorPolicies(OnError.REPORT, OnError.ENOSPC), faulty);
            EventLog.await(() -> job.status() == JobStatus.PAUSED, 10_000, "paused on ENOSPC");
            assertThat(events.last("stop", "BLOCK_JOB_ERROR").data()).containsEntry("action", "stop")
                .containsEntry("operation", "write");
            assertThat(job.queryBlockJobsInfo()).containsEntry("io-status", "nospace").containsEntry("paused", true);
            faulty.heal();
            manager.resume("stop");
            awaitGone(job);
            assertThat(events.last("stop", "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
            Workload.assertSameContent(base, Workload.read(raw), "full backup retried after ENOSPC");
        }
    }

    @Test
    void jobStartsAndOutcomesAreJournaledAndGroupedNeedsBackups() throws Exception
    {
        try (RawFileStore ok = target(SIZE); RawFileStore bad = target(SIZE))
        {
            awaitGone(BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.INCREMENTAL)
                .withJobId("jok").withBitmap("b0", null), ok));
            final FaultyStore faulty = new FaultyStore(bad);
            faulty.failFrom(1, "Input/output error");
            awaitGone(BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.FULL).withJobId("jbad"),
                faulty));
        }
        assertThatThrownBy(() -> JobTransaction.checkGroupable(List.of(BitmapActions.add("x"))))
            .hasMessage("Action 'block-dirty-bitmap-add' does not support transaction property completion-mode = grouped");
        JobTransaction.checkGroupable(List.of(new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.FULL),
            new FaultyStore(target(SIZE)), null)));
        disk.close();
        disk = TrackedDisk.open(DiskOptions.of(RawFileStore.open(dir.resolve("disk.raw")), dir.resolve("bitmaps"))
            .withName("vda"));
        assertThat(disk.journal().replay().jobs()).containsEntry("jok", "completed")
            .containsEntry("jbad", "failed: Input/output error");
    }

    @Test
    void sourceReadErrorsFollowOnSourceError() throws Exception
    {
        final Path image = dir.resolve("src.raw");
        final RawFileStore raw = RawFileStore.create(image, SIZE);
        final byte[] content = Workload.fill(raw, seed + 1);
        final FaultyStore source = new FaultyStore(raw);
        try (TrackedDisk other = TrackedDisk.open(DiskOptions.of(source, dir.resolve("bm2")).withName("vdb"));
            RawFileStore reported = target(SIZE); RawFileStore ignored = target(SIZE))
        {
            other.addListener(events);
            source.failReads(1);
            final BackupJob failing = BackupStartAction.start(other, manager,
                BackupOptions.of("vdb", SyncMode.FULL).withJobId("rd"), reported);
            awaitGone(failing);
            assertThat(events.last("rd", "BLOCK_JOB_ERROR").data()).containsEntry("operation", "read")
                .containsEntry("action", "report");
            assertThat(events.last("rd", "BLOCK_JOB_COMPLETED").data()).containsEntry("error", "Input/output error");

            source.failReads(3);
            final BackupJob retrying = BackupStartAction.start(other, manager,
                BackupOptions.of("vdb", SyncMode.FULL).withJobId("ri").withErrorPolicies(OnError.IGNORE, OnError.REPORT),
                ignored);
            awaitGone(retrying);
            assertThat(events.last("ri", "BLOCK_JOB_ERROR").data()).containsEntry("action", "ignore");
            assertThat(events.last("ri", "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
            Workload.assertSameContent(content, Workload.read(ignored), "backup retried after read errors");
        }
    }

    @Test
    void manualFinalizeKeepsTheBitmapBusyUntilFinalized() throws Exception
    {
        disk.write(0, ByteBuffer.wrap(new byte[128 << 10]), false);
        try (RawFileStore t = target(SIZE))
        {
            final BackupJob job = BackupStartAction.start(disk, manager, BackupOptions.of("vda", SyncMode.INCREMENTAL)
                .withJobId("man").withBitmap("b0", null).withJob(new JobOptions(false, false, 0)), t);
            EventLog.await(() -> job.status() == JobStatus.PENDING, 10_000, "pending");
            assertThat(disk.bitmaps().query("b0").busy()).as("busy while pending").isTrue();
            disk.write(4L << 20, ByteBuffer.wrap(new byte[4096]), false);
            manager.finalizeJob("man");
            assertThat(job.status()).isEqualTo(JobStatus.CONCLUDED);
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            assertThat(disk.bitmaps().query("b0").count()).as("only the write made during the job").isEqualTo(65536);
            manager.dismiss("man");
            assertThat(manager.jobs()).isEmpty();
        }
    }

    @Test
    void setSpeedAtRunTimeLiftsTheLimit() throws Exception
    {
        try (RawFileStore t = target(SIZE))
        {
            final BackupJob job = BackupStartAction.start(disk, manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("s").withMaxRunBytes(64 << 10)
                    .withJob(new JobOptions(true, true, 256 << 10)), t);
            Thread.sleep(500);
            assertThat(job.currentProgress()).as("256 KiB/s for 0.5 s").isLessThan(2L << 20);
            manager.setSpeed("s", 0);
            awaitGone(job);
            Workload.assertSameContent(base, Workload.read(t), "throttled full backup");
        }
    }

    @Test
    void groupedCompletionCancelsThePeerOfAFailingJob() throws Exception
    {
        disk.transaction(BitmapActions.add("b1"));
        disk.write(1 << 20, ByteBuffer.wrap(new byte[256 << 10]), false);
        try (RawFileStore a = target(SIZE); RawFileStore b = target(SIZE))
        {
            final FaultyStore failing = new FaultyStore(b);
            failing.failFrom(2, "Input/output error");
            final JobTransaction txn = new JobTransaction();
            final BackupStartAction slow = new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.BITMAP)
                .withJobId("ga").withBitmap("b0", BitmapMode.ON_SUCCESS).withJob(new JobOptions(true, true, 64 << 10)),
                a, txn);
            final BackupStartAction bad = new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.FULL)
                .withJobId("gb").withBitmap("b1", BitmapMode.ON_SUCCESS), failing, txn);
            final List<ControlAction> actions = new ArrayList<>(List.of(slow, bad));
            final long countBefore = disk.bitmaps().query("b0").count();
            disk.transaction(actions);
            awaitGone(slow.job());
            awaitGone(bad.job());
            assertThat(events.last("gb", "BLOCK_JOB_COMPLETED").data()).containsEntry("error", "Input/output error");
            assertThat(events.last("ga", "BLOCK_JOB_CANCELLED")).as("peer cancelled").isNotNull();
            assertThat(events.last("ga", "BLOCK_JOB_COMPLETED")).isNull();
            // on-success failed/cancelled: both bitmaps keep their bits and are free again.
            assertThat(disk.bitmaps().query("b0").count()).isEqualTo(countBefore);
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            assertThat(disk.bitmaps().query("b1").busy()).isFalse();
        }
    }

    @Test
    void syncNoneCopiesOldDataBeforeGuestWritesUntilCancelled() throws Exception
    {
        try (RawFileStore t = target(SIZE))
        {
            final BackupJob job = BackupStartAction.start(disk, manager,
                BackupOptions.of("vda", SyncMode.NONE).withJobId("fleece"), t);
            final byte[] junk = new byte[100_000];
            Arrays.fill(junk, (byte)0x5a);
            disk.write(3 << 20, ByteBuffer.wrap(junk), false);
            assertThat(job.status()).isEqualTo(JobStatus.RUNNING);
            final byte[] copy = Workload.read(t);
            final long chunk = 64 << 10;
            final int from = (int)((3 << 20) / chunk * chunk);
            final int to = (int)(((3 << 20) + junk.length + chunk - 1) / chunk * chunk);
            assertThat(Arrays.copyOfRange(copy, from, to)).isEqualTo(Arrays.copyOfRange(base, from, to));
            manager.cancel("fleece");
            awaitGone(job);
            assertThat(events.last("fleece", "BLOCK_JOB_CANCELLED")).isNotNull();
        }
    }
}
