package dev.tidemark.engine.job;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.FaultyStore;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * I4: target errors and cancellations at random points, in every bitmap-mode, under load; after each, the next
 * incremental still restores the disk exactly (full + chain == disk at the last cut).
 */
@Timeout(120)
class BitmapOutcomeTest extends DiskTestSupport
{
    private static final int SIZE = 16 << 20;

    private final SplittableRandom random = new SplittableRandom(seed);
    @BeforeEach
    void open() throws Exception
    {
        openDisk(SIZE);
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
            try (RawFileStore full = target(SIZE))
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
                    try (RawFileStore raw = target(SIZE))
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
                    try (RawFileStore inc = target(SIZE))
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
