package dev.tidemark.engine.torture;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.JvmFlags;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.checkpoint.Checkpoint;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.ClusterState;
import dev.tidemark.io.qcow2.Qcow2Reader;
import dev.tidemark.io.qcow2.Qcow2Writer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The parent of the process-crash torture: runs {@link TortureChild} engines on one disk, kills each with SIGKILL
 * at a random moment, reopens the disk in this process and checks it; not thread-safe, one run per instance.
 *
 * <p>After every kill it checks: every bitmap the journal names exists, is persistent, trusted ({@code inconsistent}
 * false), not busy (no orphaned successor), with one file each and no orphan file; exactly one rotation bitmap,
 * the one of the last acknowledged rotation or of the one in flight; every write acknowledged after the cut of the
 * last backup the journal calls completed is dirty in the backup bitmap, and every write acknowledged after the
 * rotation's cut is dirty in the rotation bitmap; every write acknowledged after a checkpoint's cut is changed
 * since that checkpoint in the epoch map, which must be trusted; a backup the child saw complete is journaled as
 * completed. Then it takes one more incremental backup (the bitmap must be trusted, so no full backup is ever
 * forced), applies the completed incrementals to its own restore image (full backup plus the chain) and compares it
 * with the disk byte for byte, checks that the backup bitmap is then clean, rotates once more and closes the disk
 * cleanly.
 */
public final class TortureHarness
{
    private static final String END = " $";

    /**
     * What to run.
     *
     * @param work an empty or missing directory for the image, backups and logs.
     * @param cycles kill cycles.
     * @param seed the run's seed.
     * @param writers writer threads in the child.
     * @param diskSize bytes of the disk, a multiple of 64 KiB.
     * @param minRunMillis shortest time a child runs before the kill.
     * @param maxRunMillis longest time a child runs before the kill.
     * @param chained whether incrementals name the previous backup as their qcow2 backing file.
     * @param progress where one line per cycle goes, or {@code null}.
     */
    public record Settings(Path work, int cycles, long seed, int writers, long diskSize, long minRunMillis,
        long maxRunMillis, boolean chained, PrintStream progress)
    {
        /** Checks the values. */
        public Settings
        {
            if (cycles < 1 || writers < 1 || diskSize < (1 << 20) || diskSize % TortureChild.GRANULARITY != 0
                || minRunMillis < 0 || maxRunMillis < minRunMillis)
            {
                throw new IllegalArgumentException("bad torture settings: cycles " + cycles + ", writers " + writers
                    + ", disk size " + diskSize + ", run " + minRunMillis + ".." + maxRunMillis + " ms");
            }
        }
    }

    /** The figures of a run; mutable while the run goes on, read after it. */
    public static final class Report
    {
        /** Cycles finished (kill, reopen, checks). */
        public int cycles;
        /** Children killed by the harness. */
        public int kills;
        /** Kills that hit while a backup job was running. */
        public int killsDuringBackup;
        /** Kills that hit between a cut's request and its acknowledgement. */
        public int killsDuringCut;
        /** Kills that hit while a fleecing view was open. */
        public int killsDuringFleece;
        /** Kills that hit in durable mode. */
        public int durableCycles;
        /** Acknowledged writes logged by the parent. */
        public long writes;
        /** Bytes of acknowledged writes. */
        public long bytesWritten;
        /** Chunk bits checked dirty. */
        public long bitsVerified;
        /** Bytes of restored image compared with the disk. */
        public long bytesVerified;
        /** Incremental backups completed by children and journaled as completed. */
        public long childBackupsCompleted;
        /** Incremental backups cut short by a kill and discarded. */
        public long childBackupsAbandoned;
        /** Incremental backups taken by the parent after each restart. */
        public long parentBackups;
        /** Rotations acknowledged by children. */
        public long rotations;
        /** Fleecing views read by children. */
        public long fleeces;
        /** Consolidations of the chain into a new base image. */
        public long consolidations;
        /** Checkpoints checked after a kill (each against every acknowledged write after its cut). */
        public long checkpointsChecked;
        /** Failures, one sentence each (the run stops at the first). */
        public final List<String> failures = new ArrayList<>();
        /** Wall time of the run. */
        public long elapsedMillis;

        @Override
        public String toString()
        {
            return "cycles " + cycles + ", kills " + kills + " (during backup " + killsDuringBackup + ", during cut "
                + killsDuringCut + ", during fleecing " + killsDuringFleece + ", durable " + durableCycles
                + "), acknowledged writes " + writes + " (" + bytesWritten + " bytes), bits verified " + bitsVerified
                + ", bytes verified " + bytesVerified + ", child backups completed " + childBackupsCompleted
                + " / abandoned " + childBackupsAbandoned + ", parent backups " + parentBackups + ", rotations "
                + rotations + ", fleecing views " + fleeces + ", consolidations " + consolidations
                + ", checkpoints checked " + checkpointsChecked + ", failures " + failures.size() + ", " + elapsedMillis
                + " ms";
        }
    }

    /** A check that failed. */
    static final class TortureFailure extends Exception
    {
        private static final long serialVersionUID = 1L;

        TortureFailure(final String message)
        {
            super(message);
        }
    }

    private static final int CONSOLIDATE_AT = 24;

    private final Settings settings;
    private final Report report = new Report();
    private final SplittableRandom random;
    private final Path image;
    private final Path restore;
    private final List<Path> layers = new ArrayList<>();
    private Path chainTop;
    private long cut;
    private long baselineCut;
    private String rotation;
    private long rotationCut;

    /** @param settings what to run. */
    public TortureHarness(final Settings settings)
    {
        this.settings = settings;
        this.random = new SplittableRandom(settings.seed());
        this.image = settings.work().resolve("disk.raw");
        this.restore = settings.work().resolve("restore.raw");
    }

    /**
     * Runs every cycle, stopping at the first failure.
     *
     * @return the figures; {@link Report#failures} is empty when every check passed.
     * @throws IOException if the work directory cannot be used.
     * @throws InterruptedException when interrupted.
     */
    public Report run() throws IOException, InterruptedException
    {
        final long start = System.nanoTime();
        Files.createDirectories(settings.work());
        setUp();
        for (int c = 0; c < settings.cycles(); c++)
        {
            try
            {
                cycle(c);
            }
            catch (final TortureFailure | IOException | RuntimeException ex)
            {
                report.failures.add("cycle " + c + " (seed " + settings.seed() + "): " + ex);
                break;
            }
            finally
            {
                report.elapsedMillis = (System.nanoTime() - start) / 1_000_000;
            }
        }
        return report;
    }

    /** @return the chain's top backup (qcow2 or the raw base). */
    public Path chainTop()
    {
        return chainTop;
    }

    /** @return the disk image. */
    public Path image()
    {
        return image;
    }

    private void setUp() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(image, settings.diskSize()))
        {
            // Old data in a quarter of the disk, written before tracking starts.
            final SplittableRandom fill = new SplittableRandom(random.nextLong());
            for (long offset = 0; offset < settings.diskSize(); offset += 1 << 20)
            {
                if (fill.nextInt(4) == 0)
                {
                    store.write(offset, ByteBuffer.wrap(TortureData.bytes(fill.nextLong(), 1 << 20)));
                }
            }
        }
        final Path full = settings.work().resolve("full.raw");
        try (TrackedDisk disk = open(false); RawFileStore target = RawFileStore.create(full, settings.diskSize()))
        {
            final JobManager jobs = new JobManager();
            final BackupStartAction action = new BackupStartAction(jobs, BackupOptions.of("torture", SyncMode.FULL)
                .withJobId("full").withJob(new JobOptions(true, false, 0)), target, null);
            cut = 1;
            disk.transaction(BitmapActions.add(TortureChild.BACKUP_BITMAP, TortureChild.GRANULARITY, true, false),
                BitmapActions.add("rot-1", TortureChild.GRANULARITY, true, false), action);
            final String error = await(action.job());
            if (error != null)
            {
                throw new IOException("the full backup failed: " + error);
            }
        }
        Files.copy(full, restore, StandardCopyOption.REPLACE_EXISTING);
        chainTop = full;
        layers.add(full);
        baselineCut = 1;
        rotation = "rot-1";
        rotationCut = 1;
    }

    private TrackedDisk open(final boolean durable) throws IOException
    {
        return TrackedDisk.open(DiskOptions.of(RawFileStore.open(image), DiskOptions.bitmapDirectoryFor(image))
            .withDurable(durable).withName("torture"));
    }

    private static String await(final BackupJob job) throws IOException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (job.status() != JobStatus.CONCLUDED)
        {
            if (System.nanoTime() > deadline)
            {
                throw new IOException("backup job " + job.id() + " did not conclude within 60 s: " + job.status());
            }
            try
            {
                Thread.sleep(1);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", ex);
            }
        }
        final String error = job.error();
        job.dismiss();
        return error;
    }

    /** What one child reported. */
    private static final class ChildLog
    {
        final List<long[]> writes = new ArrayList<>();
        final Map<Long, String[]> requested = new LinkedHashMap<>();
        final TreeSet<Long> done = new TreeSet<>();
        final Map<String, String> backupsSeen = new LinkedHashMap<>();
        final List<String> errors = new ArrayList<>();
        final List<String> tail = new ArrayList<>();
        long fleecesDone;
        boolean ready;
        String streamError;
    }

    private void cycle(final int number) throws TortureFailure, IOException, InterruptedException
    {
        final boolean durable = random.nextBoolean();
        final long firstCut = cut + 1;
        final List<String> command = JvmFlags.javaCommand(TortureChild.class.getName(), List.of("-Xmx256m"),
            image.toString(), settings.work().toString(), Long.toString(random.nextLong()), Long.toString(firstCut),
            Boolean.toString(durable), rotation, chainTop.toString(),
            Boolean.toString(settings.chained() && layers.size() < 60), Integer.toString(settings.writers()));
        final Process child = new ProcessBuilder(command).redirectErrorStream(true).start();
        final ChildLog log = new ChildLog();
        final Thread reader = new Thread(() -> read(child, log), "torture-reader");
        reader.start();
        final long readyDeadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!readyOf(log) && child.isAlive() && System.nanoTime() < readyDeadline)
        {
            Thread.sleep(2);
        }
        final long runMillis = settings.minRunMillis()
            + random.nextLong(settings.maxRunMillis() - settings.minRunMillis() + 1);
        final boolean aliveAtKill = child.waitFor(runMillis, TimeUnit.MILLISECONDS) ? false : child.isAlive();
        // SIGKILL through the process handle: Process.destroyForcibly would also close our end of the pipe and
        // drop acknowledged lines still in it.
        child.toHandle().destroyForcibly();
        child.waitFor();
        reader.join();
        synchronized (log)
        {
            if (!log.ready || !aliveAtKill || !log.errors.isEmpty())
            {
                throw new TortureFailure("the child ended on its own (ready " + log.ready + ", errors " + log.errors
                    + "), last output " + log.tail);
            }
        }
        report.kills++;
        if (durable)
        {
            report.durableCycles++;
        }
        check(number, log, durable);
    }

    private static boolean readyOf(final ChildLog log)
    {
        synchronized (log)
        {
            return log.ready;
        }
    }

    private static void read(final Process child, final ChildLog log)
    {
        try (BufferedReader lines = new BufferedReader(new InputStreamReader(child.getInputStream(),
            StandardCharsets.US_ASCII)))
        {
            String line;
            while ((line = lines.readLine()) != null)
            {
                synchronized (log)
                {
                    log.tail.add(line);
                    if (log.tail.size() > 12)
                    {
                        log.tail.remove(0);
                    }
                    if (!line.endsWith(END))
                    {
                        continue;
                    }
                    final String[] f = line.substring(0, line.length() - END.length()).split(" ");
                    switch (f[0])
                    {
                        case "W" -> log.writes.add(new long[] {Long.parseLong(f[1]), Long.parseLong(f[2]),
                            Long.parseLong(f[4]), Long.parseLong(f[5])});
                        case "CR" -> log.requested.put(Long.parseLong(f[1]), new String[] {f[2], f[3]});
                        case "CD" -> log.done.add(Long.parseLong(f[1]));
                        case "BK" -> log.backupsSeen.put(f[1], f[2]);
                        case "FL" -> log.fleecesDone++;
                        case "READY" -> log.ready = true;
                        default -> log.errors.add(line);
                    }
                }
            }
        }
        catch (final IOException ex)
        {
            // The kill closes the pipe under the reader: the end of the log, like end of file.
            synchronized (log)
            {
                log.streamError = ex.toString();
            }
        }
    }

    private void check(final int number, final ChildLog log, final boolean durable)
        throws TortureFailure, IOException
    {
        // What was in flight at the kill.
        String inFlightRotation = null;
        boolean backupInFlight = false;
        boolean fleeceInFlight = false;
        long lastRequested = cut;
        for (final Map.Entry<Long, String[]> entry : log.requested.entrySet())
        {
            lastRequested = Math.max(lastRequested, entry.getKey());
            final String kind = entry.getValue()[0];
            final String name = entry.getValue()[1];
            if (!log.done.contains(entry.getKey()))
            {
                report.killsDuringCut++;
            }
            if ("rot".equals(kind))
            {
                if (log.done.contains(entry.getKey()))
                {
                    report.rotations++;
                }
                else
                {
                    inFlightRotation = name;
                }
            }
            else if ("backup".equals(kind) && !log.backupsSeen.containsKey(name))
            {
                backupInFlight = true;
            }
            else if ("fleece".equals(kind) && entry.getKey() == lastRequested && log.fleecesDone < fleeceCount(log))
            {
                fleeceInFlight = true;
            }
        }
        report.killsDuringBackup += backupInFlight ? 1 : 0;
        report.killsDuringFleece += fleeceInFlight ? 1 : 0;
        report.fleeces += log.fleecesDone;
        final String openedRotation;
        final List<String> messages;
        try (TrackedDisk disk = open(false))
        {
            messages = disk.openMessages();
            final Journal.Replay replay = disk.journal().replay();
            final List<BitmapInfo> infos = disk.bitmaps().query();
            final String context = "cycle " + number + (durable ? " durable" : " lazy") + ", open messages "
                + messages + ", bitmaps " + infos;
            for (final BitmapInfo info : infos)
            {
                if (!info.persistent() || info.busy() || info.inconsistent() || !info.recording())
                {
                    throw new TortureFailure("bitmap " + info + " reopened wrong; " + context);
                }
            }
            if (replay.bitmaps().size() != infos.size())
            {
                throw new TortureFailure("journal names " + replay.bitmaps().keySet() + " but the registry holds "
                    + infos + "; " + context);
            }
            try (Stream<Path> files = Files.list(DiskOptions.bitmapDirectoryFor(image)))
            {
                final long count = files.filter(f -> f.toString().endsWith(".tmbm")).count();
                if (count != infos.size())
                {
                    throw new TortureFailure(count + " bitmap files for " + infos.size() + " bitmaps (orphaned"
                        + " successor or lost file); " + context);
                }
            }
            final List<String> rotations = infos.stream().map(BitmapInfo::name).filter(n -> n.startsWith("rot-"))
                .toList();
            if (!disk.bitmaps().exists(TortureChild.BACKUP_BITMAP) || rotations.size() != 1 || infos.size() != 2)
            {
                throw new TortureFailure("expected '" + TortureChild.BACKUP_BITMAP + "' and one rotation bitmap; "
                    + context);
            }
            openedRotation = rotations.get(0);
            final String lastDoneRotation = lastDoneRotation(log);
            if (!openedRotation.equals(lastDoneRotation) && !openedRotation.equals(inFlightRotation))
            {
                throw new TortureFailure("rotation bitmap " + openedRotation + " is neither the last acknowledged ("
                    + lastDoneRotation + ") nor the one in flight (" + inFlightRotation + "); " + context);
            }
            rotationCut = Long.parseLong(openedRotation.substring(4));
            rotation = openedRotation;

            // Which child backups completed, by the journal; the chain grows by them in cut order.
            for (final Map.Entry<Long, String[]> entry : log.requested.entrySet())
            {
                if (!"backup".equals(entry.getValue()[0]))
                {
                    continue;
                }
                final String jobId = entry.getValue()[1];
                final String journaled = replay.jobs().get(jobId);
                final String seen = log.backupsSeen.get(jobId);
                final Path target = settings.work().resolve(jobId + ".qcow2");
                if ("completed".equals(journaled))
                {
                    if (seen != null && !"completed".equals(seen))
                    {
                        throw new TortureFailure("backup " + jobId + " journaled completed, child saw " + seen);
                    }
                    applyLayer(target);
                    baselineCut = entry.getKey();
                    report.childBackupsCompleted++;
                }
                else
                {
                    if ("completed".equals(seen))
                    {
                        throw new TortureFailure("backup " + jobId + " completed in the child but the journal says "
                            + journaled + "; " + context);
                    }
                    if (seen != null)
                    {
                        throw new TortureFailure("backup " + jobId + " failed in the child: " + seen);
                    }
                    Files.deleteIfExists(target);
                    report.childBackupsAbandoned++;
                }
            }

            // Bits: every write after a bitmap's cut is dirty in it.
            final BitmapView backupBits = disk.bitmaps().view(TortureChild.BACKUP_BITMAP);
            final BitmapView rotationBits = disk.bitmaps().view(openedRotation);
            for (final long[] write : log.writes)
            {
                report.writes++;
                report.bytesWritten += write[1];
                if (write[2] >= baselineCut)
                {
                    checkDirty(backupBits, write, context, TortureChild.BACKUP_BITMAP);
                }
                if (write[2] >= rotationCut)
                {
                    checkDirty(rotationBits, write, context, openedRotation);
                }
            }
            // Checkpoints: every write acknowledged after a checkpoint's cut is changed since it.
            for (final Checkpoint checkpoint : disk.checkpoints().checkpoints())
            {
                final long checkpointCut = Long.parseLong(checkpoint.name().substring(3));
                if (!disk.checkpoints().epochMap().isTrustedFor(checkpoint.epoch()))
                {
                    throw new TortureFailure("checkpoint " + checkpoint + " reopened untrusted after a process kill; "
                        + context);
                }
                report.checkpointsChecked++;
                for (final long[] write : log.writes)
                {
                    if (write[2] >= checkpointCut)
                    {
                        checkChanged(disk, checkpoint.name(), write, context);
                    }
                }
            }
            cut = Math.max(cut, lastRequested);
            deleteLeftovers();
            afterRestart(disk, context);
        }
        deleteLeftovers();
        report.cycles++;
        if (settings.progress() != null)
        {
            settings.progress().printf("cycle %d%s: %d writes, %d cuts, kill %s%s%s, chain %d, messages %s%n", number,
                durable ? " durable" : " lazy", log.writes.size(), log.requested.size(),
                backupInFlight ? "during a backup " : "", fleeceInFlight ? "during fleecing " : "",
                inFlightRotation != null ? "during rotation " + inFlightRotation : "", layers.size(), messages);
        }
    }

    private static long fleeceCount(final ChildLog log)
    {
        return log.requested.values().stream().filter(v -> "fleece".equals(v[0])).count();
    }

    private String lastDoneRotation(final ChildLog log)
    {
        String last = rotation;
        for (final Map.Entry<Long, String[]> entry : log.requested.entrySet())
        {
            if ("rot".equals(entry.getValue()[0]) && log.done.contains(entry.getKey()))
            {
                last = entry.getValue()[1];
            }
        }
        return last;
    }

    private void checkDirty(final BitmapView bits, final long[] write, final String context, final String name)
        throws TortureFailure
    {
        final long granularity = bits.granularity();
        for (long chunk = write[0] / granularity; chunk <= (write[0] + write[1] - 1) / granularity; chunk++)
        {
            report.bitsVerified++;
            if (!bits.isDirty(chunk * granularity))
            {
                throw new TortureFailure("acknowledged write at " + write[0] + "+" + write[1] + " (after cut "
                    + write[2] + ") is clean in '" + name + "' at chunk " + chunk + "; " + context);
            }
        }
    }

    private void checkChanged(final TrackedDisk disk, final String checkpoint, final long[] write,
        final String context) throws TortureFailure
    {
        final long[] covered = {write[0]};
        disk.checkpoints().changedSince(checkpoint, write[0], write[1], (offset, length) ->
        {
            if (offset > covered[0])
            {
                return false;
            }
            covered[0] = Math.max(covered[0], offset + length);
            return true;
        });
        report.bitsVerified++;
        if (covered[0] < write[0] + write[1])
        {
            throw new TortureFailure("acknowledged write at " + write[0] + "+" + write[1] + " (after cut " + write[2]
                + ") is not changed since checkpoint '" + checkpoint + "' from byte " + covered[0] + "; " + context);
        }
    }

    /** One more incremental (it must be allowed: the bitmap is trusted), restore check, rotation, clean close. */
    private void afterRestart(final TrackedDisk disk, final String context) throws TortureFailure, IOException
    {
        if (layers.size() >= CONSOLIDATE_AT)
        {
            consolidate();
        }
        final long backupCut = ++cut;
        final String jobId = "post-" + backupCut;
        final Path target = settings.work().resolve(jobId + ".qcow2");
        final Qcow2Writer.Options options = settings.chained()
            ? Qcow2Writer.Options.defaults().withBacking(chainTop.getFileName().toString(),
                TortureChild.formatOf(chainTop))
            : Qcow2Writer.Options.defaults();
        try (Qcow2Writer writer = Qcow2Writer.create(target, disk.size(), options))
        {
            final BackupJob job = BackupStartAction.start(disk, new JobManager(), BackupOptions.of("torture",
                SyncMode.INCREMENTAL).withJobId(jobId).withBitmap(TortureChild.BACKUP_BITMAP, BitmapMode.ON_SUCCESS)
                .withJob(new JobOptions(true, false, 0)), writer);
            final String error = await(job);
            if (error != null)
            {
                throw new TortureFailure("the incremental after restart failed: " + error + "; " + context);
            }
        }
        catch (final RuntimeException ex)
        {
            throw new TortureFailure("the incremental after restart was refused (a full backup would be forced): "
                + ex.getMessage() + "; " + context);
        }
        report.parentBackups++;
        applyLayer(target);
        baselineCut = backupCut;
        compareRestore(context);
        final long leftover = disk.bitmaps().view(TortureChild.BACKUP_BITMAP).dirtyChunkCount();
        if (leftover != 0)
        {
            throw new TortureFailure(leftover + " chunks still dirty in '" + TortureChild.BACKUP_BITMAP
                + "' after an incremental with the disk idle; " + context);
        }
        final String next = "rot-" + (++cut);
        disk.transaction(BitmapActions.add(next, TortureChild.GRANULARITY, true, false),
            BitmapActions.remove(rotation));
        rotation = next;
        rotationCut = cut;
    }

    private void applyLayer(final Path layer) throws IOException, TortureFailure
    {
        if (!Files.exists(layer))
        {
            throw new TortureFailure("completed backup " + layer + " is missing");
        }
        try (Qcow2Reader reader = Qcow2Reader.open(layer); RawFileStore out = RawFileStore.open(restore))
        {
            final int cluster = reader.clusterSize();
            final ByteBuffer buffer = ByteBuffer.allocate(cluster);
            for (long offset = 0; offset < reader.size(); offset += cluster)
            {
                final ClusterState state = reader.clusterState(offset);
                if (state == ClusterState.UNALLOCATED)
                {
                    continue;
                }
                buffer.clear();
                final int length = (int) Math.min(cluster, reader.size() - offset);
                buffer.limit(length);
                if (state == ClusterState.DATA)
                {
                    reader.read(offset, buffer);
                }
                else
                {
                    Arrays.fill(buffer.array(), (byte) 0);
                    buffer.position(length);
                }
                buffer.flip();
                out.write(offset, buffer);
            }
        }
        layers.add(layer);
        chainTop = layer;
    }

    private void compareRestore(final String context) throws IOException, TortureFailure
    {
        try (RawFileStore a = RawFileStore.open(image); RawFileStore b = RawFileStore.open(restore))
        {
            final ByteBuffer left = ByteBuffer.allocate(1 << 20);
            final ByteBuffer right = ByteBuffer.allocate(1 << 20);
            for (long offset = 0; offset < settings.diskSize(); offset += left.capacity())
            {
                left.clear();
                right.clear();
                a.read(offset, left);
                b.read(offset, right);
                left.flip();
                right.flip();
                final int mismatch = left.mismatch(right);
                if (mismatch >= 0)
                {
                    throw new TortureFailure("full backup + " + (layers.size() - 1) + " incrementals differ from"
                        + " the disk at byte " + (offset + mismatch) + "; " + context);
                }
                report.bytesVerified += left.capacity();
            }
        }
    }

    /** Starts a new chain on a copy of the restored image (a synthetic full) and drops the old layers. */
    private void consolidate() throws IOException
    {
        final Path base = settings.work().resolve("base-" + (cut + 1) + ".raw");
        Files.copy(restore, base, StandardCopyOption.REPLACE_EXISTING);
        for (final Path layer : layers)
        {
            Files.deleteIfExists(layer);
        }
        layers.clear();
        layers.add(base);
        chainTop = base;
        report.consolidations++;
    }

    private void deleteLeftovers() throws IOException
    {
        try (Stream<Path> files = Files.list(settings.work()))
        {
            for (final Path file : files.filter(f -> f.getFileName().toString().startsWith("fleece-")
                || f.getFileName().toString().endsWith(".qcow2") && !layers.contains(f)).toList())
            {
                Files.deleteIfExists(file);
            }
        }
    }
}
