package dev.tidemark.engine.torture;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.checkpoint.Checkpoint;
import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The engine under torture, run as a child JVM that its parent kills with SIGKILL; thread contract: the writer
 * threads share only the disk (thread-safe) and the output stream (each line written under its lock), and every
 * other field is confined to the control thread (the main thread), which runs rotations, backups and fleecing views.
 *
 * <p>Every acknowledged event is reported on standard output as one line ending in {@code " $"} (a line cut short
 * by the kill has no such end and is ignored by the parent):
 * <pre>
 * READY $                              the disk is open, the storm starts
 * CR n kind name $                     cut n is about to be requested (kind rot, backup or fleece)
 * CD n $                               cut n's transaction returned
 * W offset length seed a b $           a write completed; a = cuts done before submit, b = cuts requested after
 * BK jobId outcome $                   a backup job concluded (outcome completed, or its error)
 * FL n bytes $                         a fleecing view was read and closed
 * </pre>
 * A write with {@code a >= n} is after cut {@code n}; one with {@code b < n} is before it; others are ambiguous.
 */
public final class TortureChild
{
    /** The bitmap every incremental backup uses. */
    public static final String BACKUP_BITMAP = "tm";
    /** Bytes per chunk of the harness's bitmaps. */
    public static final long GRANULARITY = 64 << 10;

    private final TrackedDisk disk;
    private final Path work;
    private final SplittableRandom random;
    private final PrintStream out;
    private final AtomicLong requested;
    private final AtomicLong done;
    private final JobManager jobs = new JobManager();
    private final boolean chained;
    private String rotation;
    private Path chainTop;
    private int backups;

    private TortureChild(final TrackedDisk disk, final Path work, final long seed, final long firstCut,
        final String rotation, final Path chainTop, final boolean chained, final PrintStream out)
    {
        this.disk = disk;
        this.work = work;
        this.random = new SplittableRandom(seed);
        this.requested = new AtomicLong(firstCut - 1);
        this.done = new AtomicLong(firstCut - 1);
        this.rotation = rotation;
        this.chainTop = chainTop;
        this.chained = chained;
        this.out = out;
    }

    /**
     * Child entry point.
     *
     * @param args image, work directory, seed, first cut number, durable (true/false), current rotation bitmap,
     *             chain top (a path or {@code -}), chained (true/false), writer threads.
     * @throws Exception on any failure; the parent then sees the child end without being killed.
     */
    public static void main(final String[] args) throws Exception
    {
        final Path image = Path.of(args[0]);
        final Path work = Path.of(args[1]);
        final long seed = Long.parseLong(args[2]);
        final long firstCut = Long.parseLong(args[3]);
        final boolean durable = Boolean.parseBoolean(args[4]);
        final String rotation = args[5];
        final Path chainTop = "-".equals(args[6]) ? null : Path.of(args[6]);
        final boolean chained = Boolean.parseBoolean(args[7]);
        final int writers = Integer.parseInt(args[8]);
        final PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false,
            StandardCharsets.US_ASCII);
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.open(image),
            DiskOptions.bitmapDirectoryFor(image)).withDurable(durable).withName("torture"));
        final TortureChild child = new TortureChild(disk, work, seed, firstCut, rotation, chainTop, chained, out);
        child.line("READY");
        final SplittableRandom seeds = new SplittableRandom(seed ^ 0x5DEECE66DL);
        for (int i = 0; i < writers; i++)
        {
            final long writerSeed = seeds.nextLong();
            final Thread writer = new Thread(() -> child.writeStorm(writerSeed), "torture-writer-" + i);
            writer.setDaemon(true);
            writer.start();
        }
        child.controlLoop();
    }

    private void line(final String text)
    {
        synchronized (out)
        {
            out.print(text);
            out.print(" $\n");
            out.flush();
        }
    }

    private void writeStorm(final long seed)
    {
        final SplittableRandom rnd = new SplittableRandom(seed);
        final long sectors = disk.size() / 512;
        try
        {
            while (true)
            {
                final int length = 512 * (1 + rnd.nextInt(rnd.nextInt(8) == 0 ? 256 : 16));
                final long offset = 512 * rnd.nextLong(sectors - length / 512 + 1);
                final long dataSeed = rnd.nextLong();
                final ByteBuffer data = ByteBuffer.wrap(TortureData.bytes(dataSeed, length));
                final long before = done.get();
                disk.write(offset, data, rnd.nextInt(64) == 0);
                final long after = requested.get();
                line("W " + offset + " " + length + " " + dataSeed + " " + before + " " + after);
                if (rnd.nextInt(32) == 0)
                {
                    LockSupport.parkNanos(rnd.nextInt(200_000));
                }
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            fail("writer: " + ex);
        }
    }

    private void fail(final String text)
    {
        line("ERR " + text.replace('\n', ' '));
        Runtime.getRuntime().halt(3);
    }

    private void controlLoop()
    {
        try
        {
            while (true)
            {
                LockSupport.parkNanos(5_000_000L + random.nextLong(40_000_000L));
                final int pick = random.nextInt(12);
                if (pick < 4)
                {
                    rotate();
                }
                else if (pick < 8)
                {
                    backup();
                }
                else if (pick < 10)
                {
                    checkpoint();
                }
                else
                {
                    fleece();
                }
            }
        }
        catch (final Exception ex)
        {
            fail("control: " + ex);
        }
    }

    private long request(final String kind, final String name)
    {
        final long cut = requested.get() + 1;
        line("CR " + cut + " " + kind + " " + name);
        requested.set(cut);
        return cut;
    }

    private void cutDone(final long cut)
    {
        done.set(cut);
        line("CD " + cut);
    }

    private void rotate()
    {
        final String next = "rot-" + (requested.get() + 1);
        final long cut = request("rot", next);
        disk.transaction(BitmapActions.add(next, GRANULARITY, true, false), BitmapActions.remove(rotation));
        rotation = next;
        cutDone(cut);
    }

    /** Adds checkpoint {@code ck-<cut>} and, with four live, removes the oldest in the same transaction. */
    private void checkpoint()
    {
        final long cut = request("ckpt", "ck-" + (requested.get() + 1));
        final List<ControlAction> actions = new ArrayList<>();
        actions.add(CheckpointActions.add("ck-" + cut, List.of(disk.name())));
        final List<Checkpoint> live = disk.checkpoints().checkpoints();
        if (live.size() >= 4)
        {
            actions.add(CheckpointActions.remove(live.get(0).name()));
        }
        disk.transaction(actions);
        cutDone(cut);
    }

    private void backup() throws IOException, InterruptedException
    {
        final String jobId = "inc-" + (requested.get() + 1);
        final Path target = work.resolve(jobId + ".qcow2");
        Files.deleteIfExists(target);
        final Qcow2Writer.Options options = chained && chainTop != null
            ? Qcow2Writer.Options.defaults().withBacking(chainTop.getFileName().toString(), formatOf(chainTop))
            : Qcow2Writer.Options.defaults();
        try (Qcow2Writer writer = Qcow2Writer.create(target, disk.size(), options))
        {
            final long cut = request("backup", jobId);
            final BackupJob job = BackupStartAction.start(disk, jobs, BackupOptions.of("torture", SyncMode.INCREMENTAL)
                .withJobId(jobId).withBitmap(BACKUP_BITMAP, BitmapMode.ON_SUCCESS)
                .withJob(new JobOptions(true, false, 0)), writer);
            cutDone(cut);
            while (job.status() != JobStatus.CONCLUDED)
            {
                Thread.sleep(1);
            }
            final String error = job.error();
            job.dismiss();
            writer.flush();
            if (error == null)
            {
                chainTop = target;
            }
            line("BK " + jobId + " " + (error == null ? "completed" : "failed:" + error.replace(' ', '_')));
        }
    }

    static String formatOf(final Path file)
    {
        return file.getFileName().toString().endsWith(".qcow2") ? "qcow2" : "raw";
    }

    private void fleece() throws IOException
    {
        final long cut = request("fleece", "-");
        final FleecingView view = FleecingView.open(disk, FleecingOptions.of(work, disk.size()));
        cutDone(cut);
        long bytes = 0;
        try
        {
            final ByteBuffer buffer = ByteBuffer.allocate(64 << 10);
            final int reads = 4 + random.nextInt(16);
            for (int i = 0; i < reads; i++)
            {
                buffer.clear();
                view.read(random.nextLong(disk.size() / buffer.capacity()) * buffer.capacity(), buffer);
                bytes += buffer.capacity();
            }
            if (view.brokenReason() != null)
            {
                throw new IOException("fleecing view broke: " + view.brokenReason());
            }
        }
        finally
        {
            view.close();
        }
        line("FL " + cut + " " + bytes);
    }
}
