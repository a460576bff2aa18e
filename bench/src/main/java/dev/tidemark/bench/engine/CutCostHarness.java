package dev.tidemark.bench.engine;

import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.io.RawFileStore;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Measures what one cut holds a disk's ring thread for once the code is warm, which {@link ControlTimeHarness} (two
 * runs of each command) cannot show; runs on its main thread only. Usage: {@code java -cp benchmarks.jar
 * dev.tidemark.bench.engine.CutCostHarness [clear|toggle|empty|backup] [count] [diskBytes] [dir]}; defaults
 * {@code clear 2000 1073741824 /dev/shm}.
 *
 * <p>A sparse raw disk with two persistent 4 KiB bitmaps; each step writes one random 4 KiB block and then runs one
 * transaction: {@code clear} a staged block-dirty-bitmap-clear of the first bitmap, {@code toggle} a disable and an
 * enable of the second, {@code empty} a transaction without actions (the cut alone), {@code backup} an incremental
 * backup of the second to nowhere, started and waited for (its start and its finish are each one ring request). The first half of the steps
 * warms the code; the harness prints the ring's mean wall-clock and CPU time per request over the second half
 * ({@link RingStatistics#controlTimes()}).
 */
public final class CutCostHarness
{
    private static final int BLOCK = 4096;

    private CutCostHarness()
    {
    }

    /**
     * @param args {@code [clear|toggle|empty|backup] [count] [diskBytes] [dir]}.
     * @throws Exception on failure.
     */
    public static void main(final String[] args) throws Exception
    {
        final String kind = args.length > 0 ? args[0] : "clear";
        final int count = args.length > 1 ? Integer.parseInt(args[1]) : 2000;
        final long size = args.length > 2 ? Long.parseLong(args[2]) : 1L << 30;
        final Path dir = Files.createTempDirectory(Path.of(args.length > 3 ? args[3] : "/dev/shm"), "tm-cut-");
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("d.raw"), size),
            dir.resolve("bitmaps")).withName("a")))
        {
            disk.transaction(BitmapActions.add("b1", BLOCK, true, false), BitmapActions.add("b2", BLOCK, true, false));
            final SplittableRandom random = new SplittableRandom(42);
            final JobManager jobs = new JobManager();
            final ByteBuffer data = ByteBuffer.allocateDirect(BLOCK);
            Map<String, RingStatistics.ControlTime> warm = Map.of();
            for (int i = 0; i < count; i++)
            {
                if (i == count / 2)
                {
                    warm = disk.ringStatistics().controlTimes();
                }
                data.clear();
                disk.write(BLOCK * random.nextLong(size / BLOCK), data, false);
                switch (kind)
                {
                    case "clear" -> disk.transaction(BitmapActions.clear("b1"));
                    case "toggle" ->
                    {
                        disk.transaction(BitmapActions.disable("b2"));
                        disk.transaction(BitmapActions.enable("b2"));
                    }
                    case "empty" -> disk.transaction(List.of());
                    case "backup" -> backUp(disk, jobs, "inc" + i, size);
                    default -> throw new IllegalArgumentException("kind must be clear, toggle, empty or backup: "
                        + kind);
                }
            }
            for (final Map.Entry<String, RingStatistics.ControlTime> entry
                : disk.ringStatistics().controlTimes().entrySet())
            {
                final RingStatistics.ControlTime before = warm.get(entry.getKey());
                final long n = entry.getValue().count() - (before == null ? 0 : before.count());
                if (n == 0)
                {
                    continue;
                }
                final long wall = entry.getValue().totalNanos() - (before == null ? 0 : before.totalNanos());
                final long cpu = entry.getValue().totalCpuNanos() - (before == null ? 0 : before.totalCpuNanos());
                System.out.printf(Locale.ROOT, "%-30s %6d requests, ring wall %8.1f us, ring CPU %8.1f us (means)%n",
                    entry.getKey(), n, wall / 1e3 / n, cpu / 1e3 / n);
            }
        }
        finally
        {
            BenchProcesses.deleteTree(dir);
        }
    }

    /** An incremental backup of {@code b2} to nowhere, waited for: its start and its finish are two ring requests. */
    private static void backUp(final TrackedDisk disk, final JobManager jobs, final String id, final long size)
        throws InterruptedException
    {
        final BackupJob job = BackupStartAction.start(disk, jobs, BackupOptions.of("a", SyncMode.INCREMENTAL)
            .withJobId(id).withBitmap("b2", null), new NullStore(size));
        while (job.status() != JobStatus.NULL)
        {
            Thread.sleep(1);
        }
        if (job.error() != null)
        {
            throw new IllegalStateException("backup " + id + " failed: " + job.error());
        }
    }
}
