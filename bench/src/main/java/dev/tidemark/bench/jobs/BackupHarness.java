package dev.tidemark.bench.jobs;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.RawFileStore;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Measures backup copy rates and the fleecing write-rate ratio on a raw disk; runs on its main thread (plus the
 * writer threads it starts). Usage: {@code java -cp benchmarks.jar <flags> dev.tidemark.bench.jobs.BackupHarness
 * [dir] [sizeGiB] [seconds]}; defaults {@code /dev/shm 2 3}.
 *
 * <p>Prints: full backup GB/s; incremental backup GB/s of copied data at 1, 10 and 50 % of the 64 KiB chunks
 * dirtied by scattered 64 KiB writes; 4 KiB random synchronous writes per second from two threads without and
 * with a fleecing view (CBW limit = disk size), and their ratio.
 */
public final class BackupHarness
{
    private static final int CHUNK = 64 << 10;

    private BackupHarness()
    {
    }

    /**
     * @param args {@code [dir] [sizeGiB] [seconds]}.
     * @throws Exception on failure.
     */
    public static void main(final String[] args) throws Exception
    {
        final Path dir = Files.createTempDirectory(Path.of(args.length > 0 ? args[0] : "/dev/shm"), "tm-bench-");
        final long size = (args.length > 1 ? Long.parseLong(args[1]) : 2L) << 30;
        final int seconds = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        final SplittableRandom random = new SplittableRandom(42);
        final Path image = dir.resolve("disk.raw");
        try (RawFileStore store = RawFileStore.create(image, size))
        {
            final ByteBuffer block = ByteBuffer.allocateDirect(4 << 20);
            final byte[] bytes = new byte[block.capacity()];
            for (long at = 0; at < size; at += block.capacity())
            {
                random.nextBytes(bytes);
                block.clear();
                block.put(bytes).flip();
                store.write(at, block);
            }
        }
        final JobManager manager = new JobManager();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.open(image), dir.resolve("bm"))
            .withName("bench")))
        {
            final double full = backup(disk, manager, dir, BackupOptions.of("bench", SyncMode.FULL).withJobId("full"),
                size);
            System.out.printf("full backup: %.2f GB/s (%d MiB)%n", full, size >> 20);
            final long chunks = size / CHUNK;
            for (final int percent : new int[] {1, 10, 50})
            {
                disk.transaction(BitmapActions.add("b" + percent));
                final long dirty = chunks * percent / 100;
                final ByteBuffer data = ByteBuffer.allocateDirect(CHUNK);
                final long[] order = shuffled(chunks, random);
                for (long i = 0; i < dirty; i++)
                {
                    data.clear();
                    data.putLong(0, i);
                    disk.write(order[(int)i] * CHUNK, data, false);
                }
                final double rate = backup(disk, manager, dir, BackupOptions.of("bench", SyncMode.INCREMENTAL)
                    .withJobId("inc" + percent).withBitmap("b" + percent, null), dirty * CHUNK);
                System.out.printf("incremental %2d%% dirty: %.2f GB/s of copied data (%d MiB)%n", percent, rate,
                    dirty * CHUNK >> 20);
                disk.transaction(BitmapActions.remove("b" + percent));
            }
            final double plain = writeRate(disk, seconds, random.split());
            final double fleeced;
            try (FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir, size)))
            {
                fleeced = writeRate(disk, seconds, random.split());
                System.out.printf("fleecing CBW held: %d MiB%n", view.cbwBytesUsed() >> 20);
            }
            System.out.printf("4 KiB writes/s, 2 threads: none %.0f, fleecing view %.0f, ratio %.2f%n", plain,
                fleeced, fleeced / plain);
        }
        finally
        {
            try (var files = Files.list(dir))
            {
                for (final Path p : (Iterable<Path>)files::iterator)
                {
                    if (Files.isDirectory(p))
                    {
                        try (var inner = Files.list(p))
                        {
                            for (final Path q : (Iterable<Path>)inner::iterator)
                            {
                                Files.delete(q);
                            }
                        }
                    }
                    Files.delete(p);
                }
            }
            Files.delete(dir);
        }
    }

    private static long[] shuffled(final long n, final SplittableRandom random)
    {
        final long[] order = new long[Math.toIntExact(n)];
        for (int i = 0; i < order.length; i++)
        {
            order[i] = i;
        }
        for (int i = order.length - 1; i > 0; i--)
        {
            final int j = random.nextInt(i + 1);
            final long t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        return order;
    }

    private static double backup(final TrackedDisk disk, final JobManager manager, final Path dir,
        final BackupOptions options, final long copiedBytes) throws Exception
    {
        final Path targetPath = dir.resolve(options.effectiveJobId() + ".raw");
        try (RawFileStore target = BackupTargets.createRaw(targetPath, disk.size()))
        {
            final long start = System.nanoTime();
            final BackupJob job = BackupStartAction.start(disk, manager, options, target);
            while (job.status() != JobStatus.NULL)
            {
                Thread.sleep(1);
            }
            final long nanos = System.nanoTime() - start;
            if (job.error() != null)
            {
                throw new IllegalStateException("backup failed: " + job.error());
            }
            return copiedBytes / (double)nanos;
        }
        finally
        {
            Files.deleteIfExists(targetPath);
        }
    }

    private static double writeRate(final TrackedDisk disk, final int seconds, final SplittableRandom random)
        throws Exception
    {
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicLong writes = new AtomicLong();
        final List<Thread> threads = new ArrayList<>();
        final long blocks = disk.size() / 4096;
        for (int t = 0; t < 2; t++)
        {
            final SplittableRandom mine = random.split();
            final Thread thread = new Thread(() ->
            {
                final ByteBuffer data = ByteBuffer.allocateDirect(4096);
                try
                {
                    while (!stop.get())
                    {
                        data.clear();
                        disk.write(4096L * mine.nextLong(blocks), data, false);
                        writes.incrementAndGet();
                    }
                }
                catch (final Exception ex)
                {
                    throw new IllegalStateException(ex);
                }
            });
            threads.add(thread);
        }
        final long start = System.nanoTime();
        threads.forEach(Thread::start);
        Thread.sleep(seconds * 1000L);
        stop.set(true);
        for (final Thread t : threads)
        {
            t.join();
        }
        return writes.get() / ((System.nanoTime() - start) / 1e9);
    }
}
