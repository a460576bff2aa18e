package dev.tidemark.engine.job;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.testing.FaultyStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * I4: target errors and cancellations at random points, in every bitmap-mode, under load; after each, the next
 * incremental still restores the disk exactly (full + chain == disk at the last cut).
 */
@Timeout(120)
class BitmapOutcomeTest
{
    private static final int SIZE = 16 << 20;

    @TempDir
    Path dir;

    private final long seed = System.nanoTime();
    private final SplittableRandom random = new SplittableRandom(seed);
    private final EventLog events = new EventLog();
    private final JobManager manager = new JobManager();
    private TrackedDisk disk;
    private byte[] base;
    private int targets;

    @BeforeEach
    void open() throws Exception
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        base = Workload.fill(store, seed);
        disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda"));
        disk.addListener(events);
    }

    @AfterEach
    void close() throws Exception
    {
        disk.close();
    }

    private RawFileStore target() throws Exception
    {
        return RawFileStore.create(dir.resolve("t" + targets++ + ".raw"), SIZE);
    }

    private void awaitGone(final Job job)
    {
        EventLog.await(() -> job.status() == JobStatus.NULL
            && events.briefFor(job.id()).contains(job.id() + ":null"), 60_000,
            "job " + job.id() + " to finish (seed " + seed + ")");
    }

    @Test
    void failuresAndCancelsInEveryModeLoseNoBit() throws Exception
    {
        final Workload load = new Workload(disk, base, seed, 2, 64 << 10);
        try
        {
            load.start();
            EventLog.await(() -> load.logged() > 50, 20_000, "load to start");
            final byte[] restored;
            try (RawFileStore full = target())
            {
                final BackupStartAction start = new BackupStartAction(manager,
                    BackupOptions.of("vda", SyncMode.FULL).withJobId("full"), full, null);
                final long cut = disk.transaction(List.of(BitmapActions.add("b0", 65536, false, false), start));
                awaitGone(start.job());
                restored = Workload.read(full);
                Workload.assertSameContent(load.contentAt(cut), restored, "full (seed " + seed + ")");
            }
            int round = 0;
            for (final BitmapMode mode : BitmapMode.values())
            {
                for (final String outcome : new String[] {"error", "cancel", "success"})
                {
                    final String id = "r" + round++;
                    final int before = load.logged();
                    EventLog.await(() -> load.logged() > before + 30, 20_000, "more load");
                    try (RawFileStore raw = target())
                    {
                        final FaultyStore faulty = new FaultyStore(raw);
                        if ("error".equals(outcome))
                        {
                            faulty.failFrom(1 + random.nextInt(6), "Input/output error");
                        }
                        final BackupStartAction start = new BackupStartAction(manager,
                            BackupOptions.of("vda", SyncMode.BITMAP).withJobId(id).withBitmap("b0", mode)
                                .withMaxRunBytes(128 << 10).withJob(new JobOptions(true, true,
                                    "cancel".equals(outcome) ? 8L << 20 : 0)), faulty, null);
                        disk.transaction(start);
                        final BackupJob job = start.job();
                        if ("cancel".equals(outcome))
                        {
                            Thread.sleep(random.nextInt(40));
                            try
                            {
                                job.cancel();
                            }
                            catch (final dev.tidemark.engine.EngineException alreadyDone)
                            {
                                // The job may finish before the cancel arrives; the chain must hold either way.
                            }
                        }
                        awaitGone(job);
                        final boolean succeeded = events.last(id, "BLOCK_JOB_COMPLETED") != null
                            && !events.last(id, "BLOCK_JOB_COMPLETED").data().containsKey("error");
                        if ("error".equals(outcome))
                        {
                            assertThat(succeeded).as("round " + id + " " + mode + " must fail (seed " + seed + ")")
                                .isFalse();
                            assertThat(events.last(id, "BLOCK_JOB_ERROR")).isNotNull();
                        }
                        assertThat(disk.bitmaps().query("b0").busy()).as("b0 released after " + id).isFalse();
                        if (succeeded || mode == BitmapMode.ALWAYS)
                        {
                            // What the job copied is part of the chain; for a failure only in mode always.
                            BackupPointInTimeTest.applyCopied(job, raw, restored);
                        }
                    }
                    // The next incremental restores the disk exactly, whatever happened before.
                    try (RawFileStore inc = target())
                    {
                        final String nextId = id + "-next";
                        final BackupStartAction next = new BackupStartAction(manager,
                            BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId(nextId).withBitmap("b0", null),
                            inc, null);
                        final long cut = disk.transaction(next);
                        awaitGone(next.job());
                        assertThat(events.last(nextId, "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
                        BackupPointInTimeTest.applyCopied(next.job(), inc, restored);
                        Workload.assertSameContent(load.contentAt(cut), restored,
                            "chain after " + id + " (" + mode.qmpName() + ", " + outcome + ", seed " + seed + ")");
                    }
                }
            }
            load.stop();
        }
        finally
        {
            load.halt();
        }
    }
}
