package dev.tidemark.engine.warmup;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.BackgroundPriority;
import dev.tidemark.io.RawFileStore;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Runs every kind of control command a few hundred times on two scratch disks of its own, so that the code a cut
 * runs on a write ring is loaded, linked and compiled before a user's first command; one thread (the caller's),
 * sharing nothing with the caller's disks, jobs or events.
 *
 * <p>Control commands are rare: in a daemon that has served for days, each one still runs class loading, first
 * bootstraps of lambdas and string concatenations, and interpreted code, and all of that on the ring thread while
 * guest writes queue behind it. Measured with {@code ControlTimeHarness} (docs/benchmarks.md, "Warm-up"): the
 * first incremental backup start of a 64 TiB disk held the ring for 13-16 ms of CPU, after this warm-up about
 * 0.5-1 ms. A few dozen rounds of every command on disks nobody sees take most of those
 * costs off the guest's path. The scratch disks are small sparse files under a temporary directory deleted
 * afterwards.
 */
public final class ControlWarmup
{
    /**
     * What {@code tidemark serve} runs by default: the first round takes class loading and linking off the ring
     * (most of the cost), a few dozen more let the JIT compile what a cut runs most (about 1 s of one core).
     */
    public static final int DEFAULT_ROUNDS = 50;

    private static final long DISK = 64L << 20;
    private static final long GRANULARITY = 64 << 10;
    private static final int BLOCK = 4096;
    private static final long JOB_WAIT_NANOS = TimeUnit.SECONDS.toNanos(30);

    private final TrackedDisk a;
    private final TrackedDisk b;
    private final Path directory;
    private final JobManager jobs = new JobManager();
    private final SplittableRandom random = new SplittableRandom(0x7de3a2L);
    private final ByteBuffer block = ByteBuffer.allocateDirect(BLOCK);
    private int serial;

    private ControlWarmup(final Path directory, final EngineEvents events) throws IOException
    {
        this.directory = directory;
        a = TrackedDisk.open(DiskOptions.of(RawFileStore.create(directory.resolve("a.raw"), DISK),
            directory.resolve("a.bitmaps")).withName("warmup-a").withCloseStore(true));
        TrackedDisk opened = null;
        try
        {
            opened = TrackedDisk.open(DiskOptions.of(RawFileStore.create(directory.resolve("b.raw"), DISK),
                directory.resolve("b.bitmaps")).withName("warmup-b").withCloseStore(true));
        }
        finally
        {
            if (opened == null)
            {
                a.close();
            }
        }
        b = opened;
        a.addListener(events);
        b.addListener(events);
    }

    /**
     * Runs the warm-up on the calling thread and deletes what it made; a daemon gives it a thread of its own at
     * background priority ({@link BackgroundPriority}).
     *
     * @param parent where to make the scratch directory.
     * @param rounds how many rounds of every command; 0 or less does nothing.
     * @return the rounds run.
     * @throws IOException when the scratch disks cannot be made.
     */
    public static int run(final Path parent, final int rounds) throws IOException
    {
        return run(parent, rounds, (name, data) -> { });
    }

    /**
     * As {@link #run(Path, int)}, and hands every event the scratch disks and jobs emit to {@code events}: a daemon
     * passes its server's own event code, which queues the events for no client. A job emits events on the write
     * ring at a cut, so that code must be loaded and compiled before a real job's first event: without it a daemon's
     * first backup loaded the JSON mapper on the ring (25-55 ms of guest writes waiting), and later the server's
     * event hand-off (0.6 ms of ring time at the first backup's start).
     *
     * @param parent where to make the scratch directory.
     * @param rounds how many rounds of every command; 0 or less does nothing.
     * @param events receives the warm-up's events, on the threads that emit them.
     * @return the rounds run.
     * @throws IOException when the scratch disks cannot be made.
     */
    public static int run(final Path parent, final int rounds, final EngineEvents events) throws IOException
    {
        if (rounds <= 0)
        {
            return 0;
        }
        final Path directory = Files.createTempDirectory(parent, "tidemark-warmup-");
        try
        {
            final ControlWarmup warmup = new ControlWarmup(directory, events);
            try
            {
                for (int round = 0; round < rounds; round++)
                {
                    warmup.round();
                }
            }
            finally
            {
                warmup.close();
            }
            return rounds;
        }
        finally
        {
            deleteTree(directory);
        }
    }

    /** One of each command, in the order a backup tool issues them. */
    private void round() throws IOException
    {
        write(a, 4);
        write(b, 4);
        a.transaction(BitmapActions.add("w1", GRANULARITY, true, false),
            BitmapActions.add("w2", GRANULARITY, false, false));
        write(a, 8);
        a.transaction(BitmapActions.clear("w1"));
        write(a, 8);
        a.transaction(BitmapActions.merge("w1", List.of("w2")));
        a.transaction(BitmapActions.disable("w2"));
        a.transaction(BitmapActions.enable("w2"));
        a.transaction(List.of());

        // A checkpoint over both disks at one cut, as libvirt takes one, and a bitmap made from it.
        final Map<TrackedDisk, List<ControlAction>> joint = new LinkedHashMap<>();
        joint.put(a, List.of(BitmapActions.add("j", GRANULARITY, true, false),
            CheckpointActions.add("c", List.of(a.name(), b.name()))));
        joint.put(b, List.of(BitmapActions.add("j", GRANULARITY, true, false)));
        TrackedDisk.transaction(joint);
        write(a, 4);
        a.transaction(CheckpointActions.bitmapFrom("c", "from-c", GRANULARITY, false));
        final Map<TrackedDisk, List<ControlAction>> jointRemove = new LinkedHashMap<>();
        jointRemove.put(a, List.of(BitmapActions.remove("j"), BitmapActions.remove("from-c"),
            CheckpointActions.remove("c")));
        jointRemove.put(b, List.of(BitmapActions.remove("j")));
        TrackedDisk.transaction(jointRemove);

        // An incremental backup that succeeds, and one that is cancelled (its bitmap reclaims the successor).
        final String id = "warmup-" + serial++;
        try (RawFileStore target = target())
        {
            await(BackupStartAction.start(a, jobs, BackupOptions.of(a.name(), SyncMode.INCREMENTAL).withJobId(id)
                .withBitmap("w1", null), target));
        }
        write(a, 8);
        try (RawFileStore target = target())
        {
            final BackupJob slow = BackupStartAction.start(a, jobs, BackupOptions.of(a.name(), SyncMode.BITMAP)
                .withJobId(id + "c").withBitmap("w2", BitmapMode.ON_SUCCESS)
                .withJob(new JobOptions(true, true, 1 << 20)), target);
            write(a, 4);
            slow.cancel();
            await(slow);
        }

        a.durable(true);
        write(a, 2);
        a.durable(false);
        a.transaction(BitmapActions.remove("w1"), BitmapActions.remove("w2"));
    }

    /** @return an empty sparse backup target, made afresh (the previous round's is deleted). */
    private RawFileStore target() throws IOException
    {
        final Path file = directory.resolve("target.raw");
        Files.deleteIfExists(file);
        return RawFileStore.create(file, DISK);
    }

    private void write(final TrackedDisk disk, final int count) throws IOException
    {
        for (int i = 0; i < count; i++)
        {
            block.clear();
            disk.write(BLOCK * random.nextLong(DISK / BLOCK), block, false);
        }
    }

    private static void await(final BackupJob job)
    {
        final long deadline = System.nanoTime() + JOB_WAIT_NANOS;
        while (job.status() != JobStatus.NULL)
        {
            if (System.nanoTime() > deadline)
            {
                throw new IllegalStateException("warm-up job " + job.id() + " did not end within 30 s");
            }
            try
            {
                Thread.sleep(1);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("warm-up interrupted", ex);
            }
        }
    }

    private void close() throws IOException
    {
        try
        {
            a.close();
        }
        finally
        {
            b.close();
        }
    }

    private static void deleteTree(final Path root)
    {
        try (Stream<Path> paths = Files.walk(root))
        {
            paths.sorted(Comparator.reverseOrder()).forEach(path ->
            {
                try
                {
                    Files.deleteIfExists(path);
                }
                catch (final IOException ex)
                {
                    throw new UncheckedIOException(ex);
                }
            });
        }
        catch (final IOException | UncheckedIOException ex)
        {
            // Best effort: a scratch directory left in the temporary folder harms nothing.
        }
    }
}
