package dev.tidemark.bench.engine;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.engine.warmup.ControlWarmup;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * Measures how long each control command holds a disk's ring (mark) thread, in process; runs on its main thread
 * plus one writer thread. Usage: {@code java -cp benchmarks.jar dev.tidemark.bench.engine.ControlTimeHarness
 * [dir] [dirtyChunks] [rounds] [warmupRounds]}; defaults {@code /dev/shm 30000 2 0}.
 *
 * <p>A 64 TiB disk (its data goes nowhere: {@link NullStore}) has two persistent bitmaps of 4 KiB granularity
 * (2 GiB each, files in {@code dir}); before each command, {@code dirtyChunks} random 4 KiB writes dirty both, and
 * a writer keeps writing 4 KiB at random while the command runs. For each command the harness prints the time
 * the command held the ring thread ({@link RingStatistics#controlTimes()}: wall-clock and CPU time, the latter
 * hardly depending on machine load) and the worst in-process write latency around it (which does). Each round
 * runs every command once; the first round includes class loading and interpreted code, unless
 * {@code warmupRounds} of {@link ControlWarmup} (what {@code tidemark serve} runs at start) came first.
 */
public final class ControlTimeHarness
{
    private static final long DISK = 64L << 40;
    private static final long SMALL = 1L << 30;
    private static final int BLOCK = 4096;

    private ControlTimeHarness()
    {
    }

    /**
     * @param args {@code [dir] [dirtyChunks] [rounds] [warmupRounds]}.
     * @throws Exception on failure.
     */
    public static void main(final String[] args) throws Exception
    {
        final Path dir = Files.createTempDirectory(Path.of(args.length > 0 ? args[0] : "/dev/shm"), "tm-ctl-");
        final int dirty = args.length > 1 ? Integer.parseInt(args[1]) : 30_000;
        final int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 2;
        final int warmup = args.length > 3 ? Integer.parseInt(args[3]) : 0;
        if (warmup > 0)
        {
            final long start = System.nanoTime();
            ControlWarmup.run(dir, warmup);
            System.out.printf("warm-up: %d rounds in %.1f s%n", warmup, (System.nanoTime() - start) / 1e9);
        }
        final SplittableRandom random = new SplittableRandom(42);
        final JobManager manager = new JobManager();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new NullStore(DISK), dir.resolve("a")).withName("a"));
            TrackedDisk b = TrackedDisk.open(DiskOptions.of(new NullStore(SMALL), dir.resolve("b")).withName("b"));
            TrackedDisk c = TrackedDisk.open(DiskOptions.of(new NullStore(SMALL), dir.resolve("c")).withName("c")))
        {
            disk.transaction(BitmapActions.add("b1", BLOCK, true, false), BitmapActions.add("b2", BLOCK, true, false));
            final Writer writer = new Writer(disk, random.split());
            final Thread thread = new Thread(writer, "harness-writer");
            thread.start();
            final Map<String, Row> rows = new LinkedHashMap<>();
            try
            {
                for (int round = 1; round <= rounds; round++)
                {
                    final String r = " #" + round;
                    final String t = "t" + round;
                    final String x = "x" + round;
                    final String job = "inc" + round;
                    measure(rows, "block-dirty-bitmap-clear" + r, disk, writer, random, dirty,
                        () -> disk.transaction(BitmapActions.clear("b1")));
                    measure(rows, "block-dirty-bitmap-merge" + r, disk, writer, random, dirty,
                        () -> disk.transaction(BitmapActions.merge("b1", List.of("b2"))));
                    measure(rows, "x-debug-block-dirty-bitmap-sha256" + r, disk, writer, random, dirty,
                        () -> disk.bitmaps().sha256("b1"));
                    measure(rows, "block-dirty-bitmap-add (2 GiB)" + r, disk, writer, random, dirty,
                        () -> disk.transaction(BitmapActions.add(t, BLOCK, true, false)));
                    measure(rows, "block-dirty-bitmap-remove (2 GiB)" + r, disk, writer, random, dirty,
                        () -> disk.transaction(BitmapActions.remove(t)));
                    measure(rows, "incremental backup start to finish" + r, disk, writer, random, dirty, () ->
                    {
                        final BackupJob started = BackupStartAction.start(disk, manager,
                            BackupOptions.of("a", SyncMode.INCREMENTAL).withJobId(job).withBitmap("b1", null),
                            new NullStore(DISK));
                        while (started.status() != JobStatus.NULL)
                        {
                            sleep(1);
                        }
                        if (started.error() != null)
                        {
                            throw new IllegalStateException("backup failed: " + started.error());
                        }
                    });
                    measure(rows, "backup cancelled (reclaim of " + dirty + " chunks)" + r, disk, writer, random, dirty,
                        () ->
                    {
                        // Slowed so that it is still running when cancelled; the writes after its start go to the
                        // successor, which the bitmap takes back at the cancel.
                        final BackupJob started = BackupStartAction.start(disk, manager,
                            BackupOptions.of("a", SyncMode.BITMAP).withJobId(job + "c").withBitmap("b2", BitmapMode.ON_SUCCESS)
                                .withJob(new JobOptions(true, true, 1 << 20)), new NullStore(DISK));
                        dirty(disk, random, dirty);
                        started.cancel();
                        while (started.status() != JobStatus.NULL)
                        {
                            sleep(1);
                        }
                    });
                    measure(rows, "durable mode on (after lazy writes)" + r, disk, writer, random, dirty,
                        () -> disk.durable(true));
                    disk.durable(false);
                    measure(rows, "transaction over 3 disks (a bitmap on each)" + r, disk, writer, random, dirty, () ->
                    {
                        final Map<TrackedDisk, List<ControlAction>> actions = new LinkedHashMap<>();
                        actions.put(disk, List.of(BitmapActions.add(x, BLOCK, true, false)));
                        actions.put(b, List.of(BitmapActions.add(x, BLOCK, true, false)));
                        actions.put(c, List.of(BitmapActions.add(x, BLOCK, true, false)));
                        TrackedDisk.transaction(actions);
                    });
                    disk.transaction(BitmapActions.remove(x));
                }
            }
            finally
            {
                writer.stop.set(true);
                thread.join();
            }
            System.out.printf("%-46s %10s %10s %10s %12s %12s%n", "command (disk a: 64 TiB, two 4 KiB bitmaps)",
                "ring ms", "ring cpu", "requests", "command ms", "worst wr ms");
            for (final Map.Entry<String, Row> entry : rows.entrySet())
            {
                final Row row = entry.getValue();
                System.out.printf("%-46s %10.3f %10.3f %10d %12.1f %12.3f%n", entry.getKey(), row.ringNanos / 1e6,
                    row.ringCpuNanos / 1e6, row.requests, row.commandNanos / 1e6, row.worstWriteNanos / 1e6);
                for (final Map.Entry<String, RingStatistics.ControlTime> kind : row.kinds.entrySet())
                {
                    System.out.printf("    %-42s %10.3f %10.3f %10d%n", kind.getKey(), kind.getValue().totalNanos() / 1e6,
                        kind.getValue().totalCpuNanos() / 1e6, kind.getValue().count());
                }
            }
            System.out.printf("writes: %d, ring epoch: %d%n", writer.writes.get(), disk.ringStatistics().epoch());
        }
        finally
        {
            deleteTree(dir);
        }
    }

    /** One command's figures. */
    private static final class Row
    {
        long ringNanos;
        long ringCpuNanos;
        long requests;
        long commandNanos;
        long worstWriteNanos;
        Map<String, RingStatistics.ControlTime> kinds = Map.of();
    }

    private interface Command
    {
        void run() throws Exception;
    }

    private static void measure(final Map<String, Row> rows, final String name, final TrackedDisk disk,
        final Writer writer, final SplittableRandom random, final int dirty, final Command command) throws Exception
    {
        dirty(disk, random, dirty);
        sleep(300);
        final Map<String, RingStatistics.ControlTime> before = disk.ringStatistics().controlTimes();
        writer.worst.set(0);
        final long start = System.nanoTime();
        command.run();
        final long took = System.nanoTime() - start;
        sleep(300);
        final Row row = new Row();
        row.commandNanos = took;
        row.worstWriteNanos = writer.worst.get();
        final Map<String, RingStatistics.ControlTime> after = disk.ringStatistics().controlTimes();
        final Map<String, RingStatistics.ControlTime> kinds = new LinkedHashMap<>();
        for (final Map.Entry<String, RingStatistics.ControlTime> entry : after.entrySet())
        {
            final RingStatistics.ControlTime old = before.get(entry.getKey());
            final long count = entry.getValue().count() - (old == null ? 0 : old.count());
            if (count > 0)
            {
                // Per command: the time its own requests added (each kind runs once per command).
                final RingStatistics.ControlTime now = entry.getValue();
                final RingStatistics.ControlTime delta = new RingStatistics.ControlTime(count,
                    now.totalNanos() - (old == null ? 0 : old.totalNanos()), -1,
                    now.totalCpuNanos() - (old == null ? 0 : old.totalCpuNanos()), -1);
                kinds.put(entry.getKey(), delta);
                row.ringNanos += delta.totalNanos();
                row.ringCpuNanos += delta.totalCpuNanos();
                row.requests += count;
            }
        }
        row.kinds = kinds;
        rows.put(name, row);
    }

    /** Dirties {@code count} random 4 KiB chunks of the disk, 64 writes in flight. */
    private static void dirty(final TrackedDisk disk, final SplittableRandom random, final int count) throws Exception
    {
        final ByteBuffer data = ByteBuffer.allocateDirect(BLOCK);
        final List<CompletableFuture<Void>> pending = new ArrayList<>();
        for (int i = 0; i < count; i++)
        {
            pending.add(disk.writeAsync(BLOCK * random.nextLong(DISK / BLOCK), data.duplicate(), false));
            if (pending.size() == 64)
            {
                CompletableFuture.allOf(pending.toArray(new CompletableFuture<?>[0])).get();
                pending.clear();
            }
        }
        CompletableFuture.allOf(pending.toArray(new CompletableFuture<?>[0])).get();
    }

    /** Writes 4 KiB at random, one at a time, about every 100 µs, and keeps the worst latency. */
    private static final class Writer implements Runnable
    {
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicLong worst = new AtomicLong();
        final AtomicLong writes = new AtomicLong();
        private final TrackedDisk disk;
        private final SplittableRandom random;

        Writer(final TrackedDisk disk, final SplittableRandom random)
        {
            this.disk = disk;
            this.random = random;
        }

        @Override
        public void run()
        {
            final ByteBuffer data = ByteBuffer.allocateDirect(BLOCK);
            try
            {
                while (!stop.get())
                {
                    data.clear();
                    final long start = System.nanoTime();
                    disk.write(BLOCK * random.nextLong(DISK / BLOCK), data, false);
                    final long took = System.nanoTime() - start;
                    worst.accumulateAndGet(took, Math::max);
                    writes.incrementAndGet();
                    java.util.concurrent.locks.LockSupport.parkNanos(100_000);
                }
            }
            catch (final Exception ex)
            {
                throw new IllegalStateException(ex);
            }
        }
    }

    private static void sleep(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(ex);
        }
    }

    private static void deleteTree(final Path dir) throws java.io.IOException
    {
        try (Stream<Path> walk = Files.walk(dir))
        {
            for (final Path p : (Iterable<Path>)walk.sorted(Comparator.reverseOrder())::iterator)
            {
                Files.deleteIfExists(p);
            }
        }
    }
}
