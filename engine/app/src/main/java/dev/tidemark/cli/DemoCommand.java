package dev.tidemark.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobTransaction;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.BlockStoreExport;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.nbd.NbdServer;
import dev.tidemark.io.qcow2.Qcow2Reader;
import dev.tidemark.io.qcow2.Qcow2Writer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * {@code tidemark demo}: the whole idea in one run on generated data; runs on the calling thread plus one guest
 * workload thread it starts and joins.
 *
 * <p>Steps: a sparse sample disk; a guest-like workload; one transaction that adds a persistent bitmap, starts a
 * full backup to qcow2 and opens a point-in-time view (more guest writes run while the job copies); more writes;
 * one transaction that rotates the bitmaps, starts an incremental backup (a qcow2 backed by the full one) and
 * opens a second view; that view is exported over NBD and read back; the chain is restored to a raw file and
 * compared byte for byte with the disk at the cut (through NBD, and with {@code qemu-img compare} when it is
 * installed); then a second disk and a checkpoint of both in one transaction with one cut (a bitmap and a backup
 * on each), both backups restored and compared with their disk at the cut. Exit 0 only when every comparison
 * matched.
 */
@Command(
    name = "demo",
    mixinStandardHelpOptions = true,
    description = {
        "Run the whole cycle on generated data and verify the restored backup.",
        "In a temporary directory: write tracking, full and incremental backup to qcow2 in transactions,",
        "a fleecing view over NBD, restore and byte-for-byte verification, then a checkpoint of two disks in one",
        "transaction. Exit 0 only when it passes."})
final class DemoCommand implements Callable<Integer>
{
    private static final long MIB = 1 << 20;
    private static final String NODE = "disk0";
    private static final String NODE_1 = "disk1";
    /** The bitmap the two-disk checkpoint adds on each disk, named after it as libvirt does. */
    private static final String CHECKPOINT = "checkpoint-1";
    /** The bitmaps' granularity, and so the qcow2 targets' cluster size (QEMU's default for both). */
    private static final long GRANULARITY = 64 << 10;

    @Option(names = "--size", converter = BitmapCommand.SizeConverter.class, defaultValue = "256M",
        description = "Sample disk size (default ${DEFAULT-VALUE}).")
    long size;

    @Option(names = "--seed", defaultValue = "20261128", description = "Workload seed (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--dir", description = "Work here and keep the files (default: a temporary directory, removed).")
    Path dir;

    @Option(names = "--json", description = "Print the report as JSON.")
    boolean json;

    @Option(names = "--verbose", description = "Print each step as it runs.")
    boolean verbose;

    private final Map<String, Object> report = new LinkedHashMap<>();
    private final List<String> failures = new ArrayList<>();
    private PrintStream out;

    @Override
    public Integer call() throws Exception
    {
        out = System.out;
        if (size < 16 * MIB || size % MIB != 0)
        {
            System.err.println("tidemark demo: --size must be a multiple of 1 MiB and at least 16 MiB");
            return TidemarkMain.EXIT_USAGE;
        }
        final boolean temporary = dir == null;
        final Path work = temporary ? Files.createTempDirectory("tidemark-demo-") : Files.createDirectories(dir);
        if (!temporary)
        {
            try (Stream<Path> files = Files.list(work))
            {
                if (files.findAny().isPresent())
                {
                    System.err.println("tidemark demo: " + work + " is not empty");
                    return TidemarkMain.EXIT_USAGE;
                }
            }
        }
        final long started = System.nanoTime();
        try
        {
            run(work);
        }
        finally
        {
            if (temporary)
            {
                deleteTree(work);
            }
        }
        report.put("total_seconds", seconds(started));
        report.put("verified", failures.isEmpty());
        report.put("failures", failures);
        printReport(work, temporary);
        return failures.isEmpty() ? TidemarkMain.EXIT_OK : TidemarkMain.EXIT_CHECK_FAILED;
    }

    private void run(final Path work) throws Exception
    {
        final Path image = work.resolve("disk.raw");
        final Path full = work.resolve("full.qcow2");
        final Path inc = work.resolve("inc-1.qcow2");
        final Path restored = work.resolve("restored.raw");
        final Path cbwDir = work.resolve("cbw");
        final JobManager jobs = new JobManager();
        final JobWaiter waiter = new JobWaiter();
        final SplittableRandom random = new SplittableRandom(seed);
        report.put("disk", Map.of("file", image.toString(), "size", size));
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image, size),
            DiskOptions.bitmapDirectoryFor(image)).withName(NODE).withCloseStore(true)))
        {
            disk.addListener(waiter);

            step("guest install: sequential writes over the first quarter, then random writes");
            long t = System.nanoTime();
            final long installBytes = size / 4;
            final ByteBuffer block = ByteBuffer.allocateDirect((int)MIB);
            for (long at = 0; at < installBytes; at += MIB)
            {
                fill(block, random, (int)MIB);
                disk.write(at, block, false);
            }
            final long randomBytes = randomWrites(disk, random, 400, null);
            disk.flush();
            report.put("install", phase(installBytes + randomBytes, t));

            step("transaction: block-dirty-bitmap-add daily-1 (persistent) + blockdev-backup sync=full + view");
            final Qcow2Writer fullTarget = BackupTargets.createQcow2(full, size, GRANULARITY);
            final FleecingView cut1 = FleecingView.create(disk, FleecingOptions.of(cbwDir, size));
            t = System.nanoTime();
            disk.transaction(BitmapActions.add("daily-1", GRANULARITY, true, false),
                new BackupStartAction(jobs, BackupOptions.of(NODE, SyncMode.FULL).withJobId("full-1"), fullTarget,
                    null),
                cut1.openAction());
            final long duringFull = writeWhileRunning(disk, new SplittableRandom(seed + 1), waiter, "full-1");
            final Map<String, Object> fullEnd = waiter.await("full-1", 120);
            final double fullSeconds = seconds(t);
            fullTarget.close();
            checkJob("full-1", fullEnd);
            final Map<String, Object> fullReport = new LinkedHashMap<>();
            fullReport.put("file", full.toString());
            fullReport.put("copied_bytes", fullEnd.get("offset"));
            fullReport.put("file_bytes", Files.size(full));
            fullReport.put("seconds", fullSeconds);
            fullReport.put("mb_per_s", mbps(size, fullSeconds));
            fullReport.put("guest_bytes_written_during_job", duringFull);
            step("verify full.qcow2 against the disk at the first cut");
            try (Qcow2Reader reader = Qcow2Reader.open(full))
            {
                fullReport.put("matches_cut", check("full.qcow2 vs cut 1", cut1, reader));
            }
            cut1.close();
            report.put("full_backup", fullReport);

            step("guest keeps writing");
            t = System.nanoTime();
            final long more = randomWrites(disk, random, 1500, null);
            disk.flush();
            report.put("more_writes", phase(more, t));
            final long dirty = disk.bitmaps().query("daily-1").count();
            report.put("dirty_before_incremental", Map.of("bitmap", "daily-1", "bytes", dirty,
                "fraction", round((double)dirty / size)));

            step("transaction: rotate (add daily-2) + blockdev-backup sync=incremental bitmap=daily-1 + view");
            final Qcow2Writer incTarget = BackupTargets.createQcow2(inc, size, GRANULARITY, full);
            final FleecingView cut2 = FleecingView.create(disk, FleecingOptions.of(cbwDir, size));
            t = System.nanoTime();
            disk.transaction(BitmapActions.add("daily-2", GRANULARITY, true, false),
                new BackupStartAction(jobs, BackupOptions.of(NODE, SyncMode.INCREMENTAL).withJobId("inc-1")
                    .withBitmap("daily-1", null), incTarget, null),
                cut2.openAction());
            final long duringInc = writeWhileRunning(disk, new SplittableRandom(seed + 2), waiter, "inc-1");
            final Map<String, Object> incEnd = waiter.await("inc-1", 120);
            final double incSeconds = seconds(t);
            incTarget.close();
            checkJob("inc-1", incEnd);
            disk.transaction(BitmapActions.remove("daily-1"));
            final Map<String, Object> incReport = new LinkedHashMap<>();
            incReport.put("file", inc.toString());
            incReport.put("backing", full.getFileName().toString());
            incReport.put("copied_bytes", incEnd.get("offset"));
            incReport.put("file_bytes", Files.size(inc));
            incReport.put("seconds", incSeconds);
            incReport.put("mb_per_s", mbps(((Number)incEnd.get("offset")).longValue(), incSeconds));
            incReport.put("guest_bytes_written_during_job", duringInc);
            incReport.put("copied_fraction_of_disk", round(((Number)incEnd.get("offset")).doubleValue() / size));
            report.put("incremental_backup", incReport);
            final long dirty2 = disk.bitmaps().query("daily-2").count();
            report.put("dirty_after_incremental", Map.of("bitmap", "daily-2", "bytes", dirty2,
                "fraction", round((double)dirty2 / size)));

            step("export the view at the incremental cut over NBD and restore the chain");
            final Path socket = work.resolve("nbd.sock");
            try (NbdServer server = new NbdServer())
            {
                server.listenUnix(socket);
                server.addExport(new BlockStoreExport("fleece", "disk0 at the incremental cut", cut2, true,
                    List.of()));
                final Map<String, Object> restoreReport = new LinkedHashMap<>();
                t = System.nanoTime();
                final long data;
                try (Qcow2Reader chain = Qcow2Reader.open(inc))
                {
                    restoreReport.put("chain", ChainTools.describe(chain));
                    data = ChainTools.restore(chain, restored, ChainTools.Progress.none());
                }
                final double restoreSeconds = seconds(t);
                restoreReport.put("file", restored.toString());
                restoreReport.put("data_bytes", data);
                restoreReport.put("seconds", restoreSeconds);
                restoreReport.put("mb_per_s", mbps(size, restoreSeconds));
                report.put("restore", restoreReport);

                final Map<String, Object> verify = new LinkedHashMap<>();
                t = System.nanoTime();
                try (NbdClient client = NbdClient.builder().unix(socket).exportName("fleece").connect();
                    RawFileStore back = RawFileStore.open(restored, RawFileStore.Option.READ_ONLY))
                {
                    verify.put("restored_vs_nbd_fleecing_export", check("restored chain vs NBD export", client,
                        back));
                }
                verify.put("nbd_read_mb_per_s", mbps(size, seconds(t)));
                verify.put("qemu_img_compare", qemuImgCompare(inc, socket));
                report.put("verification", verify);
            }
            cut2.close();
            checkpoint(work, disk, jobs, waiter, inc);
            report.put("events_seen", waiter.eventCount());
            report.put("bitmaps_at_end", disk.bitmaps().query().stream().map(b -> b.name()).toList());
        }
    }

    /**
     * A second disk, guest writes to both, then one checkpoint across both as libvirt takes it: one transaction,
     * one cut, that adds bitmap {@code checkpoint-1} on each disk and starts a backup of each (disk0 incremental
     * since the last cut, disk1 full; {@code completion-mode: grouped}) and a point-in-time view of each. While it
     * runs, a writer alternates numbered writes between the disks; each disk's image at the cut must hold writes
     * up to neighbouring numbers (one instant), and each backup is restored and compared with its view.
     */
    private void checkpoint(final Path work, final TrackedDisk disk0, final JobManager jobs, final JobWaiter waiter,
        final Path disk0Previous) throws Exception
    {
        final long size1 = Math.max(16 * MIB, size / 4);
        final Path image1 = work.resolve("disk1.raw");
        final Path inc2 = work.resolve("inc-2.qcow2");
        final Path full1 = work.resolve("disk1-full.qcow2");
        final SplittableRandom random = new SplittableRandom(seed + 3);
        final Map<String, Object> checkpoint = new LinkedHashMap<>();
        report.put("checkpoint", checkpoint);
        try (TrackedDisk disk1 = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image1, size1),
            DiskOptions.bitmapDirectoryFor(image1)).withName(NODE_1).withCloseStore(true)))
        {
            disk1.addListener(waiter);
            step("second disk disk1: guest writes to both disks");
            long t = System.nanoTime();
            final long written = randomWrites(disk0, size, random, 300, null)
                + randomWrites(disk1, size1, random, 300, null);
            disk0.flush();
            disk1.flush();
            checkpoint.put("writes_before", phase(written, t));

            step("transaction on disk0 + disk1: block-dirty-bitmap-add checkpoint-1 on each + blockdev-backup of"
                + " each (disk0 incremental bitmap=daily-2, disk1 full, completion-mode grouped) + views, one cut");
            final Qcow2Writer target0 = BackupTargets.createQcow2(inc2, size, GRANULARITY, disk0Previous);
            final Qcow2Writer target1 = BackupTargets.createQcow2(full1, size1, GRANULARITY);
            final FleecingView view0 = FleecingView.create(disk0, FleecingOptions.of(work.resolve("cbw-0"), size));
            final FleecingView view1 = FleecingView.create(disk1, FleecingOptions.of(work.resolve("cbw-1"), size1));
            final JobTransaction grouped = new JobTransaction();
            final SequenceWriter writer = new SequenceWriter(disk0, size, disk1, size1);
            writer.start();
            final Map<TrackedDisk, List<ControlAction>> actions = new LinkedHashMap<>();
            actions.put(disk0, List.of(BitmapActions.add(CHECKPOINT, GRANULARITY, true, false),
                new BackupStartAction(jobs, BackupOptions.of(NODE, SyncMode.INCREMENTAL).withJobId("cp-disk0")
                    .withBitmap("daily-2", null), target0, grouped),
                view0.openAction()));
            actions.put(disk1, List.of(BitmapActions.add(CHECKPOINT, GRANULARITY, true, false),
                new BackupStartAction(jobs, BackupOptions.of(NODE_1, SyncMode.FULL).withJobId("cp-disk1"), target1,
                    grouped),
                view1.openAction()));
            t = System.nanoTime();
            final Map<TrackedDisk, Long> cuts;
            final Map<String, Object> end0;
            final Map<String, Object> end1;
            try
            {
                writer.awaitWrites(64);
                cuts = TrackedDisk.transaction(actions);
                end0 = waiter.await("cp-disk0", 120);
                end1 = waiter.await("cp-disk1", 120);
            }
            finally
            {
                writer.finish();
            }
            final double jobSeconds = seconds(t);
            target0.close();
            target1.close();
            checkJob("cp-disk0", end0);
            checkJob("cp-disk1", end1);
            disk0.transaction(BitmapActions.remove("daily-2"));
            checkpoint.put("disks", List.of(NODE, NODE_1));
            checkpoint.put("cut_sequences", Map.of(NODE, cuts.get(disk0), NODE_1, cuts.get(disk1)));
            checkpoint.put("seconds", jobSeconds);
            checkpoint.put("guest_writes_during", writer.count());

            step("restore both backups and compare each with its disk at the cut; check the cut was one instant");
            final List<Map<String, Object>> backups = new ArrayList<>();
            backups.add(restoreAndCompare(NODE, inc2, end0, view0, work.resolve("restored-disk0.raw")));
            backups.add(restoreAndCompare(NODE_1, full1, end1, view1, work.resolve("restored-disk1.raw")));
            checkpoint.put("backups", backups);
            final long last0 = SequenceWriter.lastIn(view0, size);
            final long last1 = SequenceWriter.lastIn(view1, size1);
            // Writes alternate disk0 (odd), disk1 (even), each done before the next: one instant leaves neighbours.
            final boolean oneInstant = last0 > 0 && last1 > 0 && Math.abs(last0 - last1) == 1;
            if (!oneInstant)
            {
                failures.add("checkpoint: the last numbered writes at the cut are " + last0 + " on disk0 and "
                    + last1 + " on disk1, not one instant");
            }
            checkpoint.put("last_write_at_cut", Map.of(NODE, last0, NODE_1, last1));
            checkpoint.put("one_instant", oneInstant);
            view0.close();
            view1.close();
            checkpoint.put("bitmaps_at_end", Map.of(NODE, names(disk0), NODE_1, names(disk1)));
        }
    }

    private static List<String> names(final TrackedDisk disk)
    {
        return disk.bitmaps().query().stream().map(b -> b.name()).toList();
    }

    /** Restores {@code backup} (through its backing chain) to {@code restored} and compares it with the view. */
    private Map<String, Object> restoreAndCompare(final String node, final Path backup, final Map<String, Object> end,
        final FleecingView cut, final Path restored) throws IOException
    {
        final Map<String, Object> result = new LinkedHashMap<>();
        result.put("disk", node);
        result.put("file", backup.getFileName().toString());
        result.put("copied_bytes", end.get("offset"));
        try (Qcow2Reader chain = Qcow2Reader.open(backup))
        {
            result.put("chain", ChainTools.describe(chain));
            ChainTools.restore(chain, restored, ChainTools.Progress.none());
        }
        try (RawFileStore back = RawFileStore.open(restored, RawFileStore.Option.READ_ONLY))
        {
            result.put("restored_matches_cut", check(node + " restored " + backup.getFileName() + " vs its cut",
                cut, back));
        }
        return result;
    }

    /**
     * Writes numbered 4 KiB records alternately to two disks (odd numbers to the first, even to the second), each
     * write done before the next starts, into the last MiB of each disk; runs on its own thread between
     * {@link #start} and {@link #finish}, which the demo's thread calls.
     */
    private static final class SequenceWriter implements Runnable
    {
        private static final long MAGIC = 0x54494445_4d41524bL;
        private static final int RECORD = 4096;
        private static final int SLOTS = (int)(MIB / RECORD);
        private static final long MOST_WRITES = 1_000_000;

        private final TrackedDisk first;
        private final long firstSize;
        private final TrackedDisk second;
        private final long secondSize;
        private final Thread thread = new Thread(this, "tidemark-demo-writer");
        private final AtomicLong done = new AtomicLong();
        private final AtomicBoolean stop = new AtomicBoolean();
        private volatile Exception failure;

        SequenceWriter(final TrackedDisk first, final long firstSize, final TrackedDisk second, final long secondSize)
        {
            this.first = first;
            this.firstSize = firstSize;
            this.second = second;
            this.secondSize = secondSize;
        }

        void start()
        {
            thread.start();
        }

        @Override
        public void run()
        {
            final ByteBuffer record = ByteBuffer.allocateDirect(RECORD);
            try
            {
                for (long n = 1; n <= MOST_WRITES && !stop.get(); n++)
                {
                    record.clear();
                    record.putLong(0, MAGIC).putLong(8, n).putLong(16, ~n);
                    final boolean odd = (n & 1) == 1;
                    final long slot = ((n - 1) / 2) % SLOTS;
                    (odd ? first : second).write((odd ? firstSize : secondSize) - MIB + slot * RECORD, record, false);
                    done.set(n);
                }
            }
            catch (final IOException | RuntimeException ex)
            {
                failure = ex;
            }
        }

        /** Waits until {@code count} records are written, so that the cut falls among the writes. */
        void awaitWrites(final long count) throws Exception
        {
            while (done.get() < count && thread.isAlive())
            {
                Thread.onSpinWait();
            }
            throwIfFailed();
        }

        void finish() throws Exception
        {
            stop.set(true);
            thread.join();
            throwIfFailed();
        }

        long count()
        {
            return done.get();
        }

        private void throwIfFailed() throws Exception
        {
            if (failure != null)
            {
                throw failure;
            }
        }

        /** @return the highest record number in the last MiB of {@code image}, 0 if none. */
        static long lastIn(final dev.tidemark.io.BlockStore image, final long imageSize) throws IOException
        {
            final ByteBuffer region = ByteBuffer.allocate((int)MIB);
            image.read(imageSize - MIB, region);
            long last = 0;
            for (int slot = 0; slot < SLOTS; slot++)
            {
                final int at = slot * RECORD;
                final long n = region.getLong(at + 8);
                if (region.getLong(at) == MAGIC && region.getLong(at + 16) == ~n)
                {
                    last = Math.max(last, n);
                }
            }
            return last;
        }
    }

    private Object qemuImgCompare(final Path chain, final Path socket) throws IOException, InterruptedException
    {
        final Path qemuImg = findOnPath("qemu-img");
        if (qemuImg == null)
        {
            return "skipped (qemu-img not installed)";
        }
        step("qemu-img compare inc-1.qcow2 (through its backing chain) against the NBD export");
        final ProcessBuilder pb = new ProcessBuilder(qemuImg.toString(), "compare", "-f", "qcow2", "-F", "raw",
            chain.toString(), "nbd+unix:///fleece?socket=" + socket).redirectErrorStream(true);
        final Process p = pb.start();
        final String output = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8)
            .trim();
        if (!p.waitFor(60, TimeUnit.SECONDS))
        {
            p.destroyForcibly();
            failures.add("qemu-img compare did not finish within 60 s");
            return "timeout";
        }
        if (p.exitValue() != 0)
        {
            failures.add("qemu-img compare exit " + p.exitValue() + ": " + output);
            return "differs: " + output;
        }
        return output.isEmpty() ? "identical" : output;
    }

    static Path findOnPath(final String tool)
    {
        final String path = System.getenv("PATH");
        if (path == null)
        {
            return null;
        }
        for (final String entry : path.split(java.io.File.pathSeparator))
        {
            final Path candidate = Path.of(entry, tool);
            if (Files.isExecutable(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    private boolean check(final String what, final dev.tidemark.io.BlockStore expected,
        final dev.tidemark.io.BlockStore actual) throws IOException
    {
        final ChainTools.Mismatch mismatch = ChainTools.compare(expected, actual, ChainTools.Progress.none());
        if (mismatch != null)
        {
            failures.add(what + ": first difference at offset " + mismatch.offset() + " (expected byte "
                + mismatch.expected() + ", found " + mismatch.actual() + ")");
            return false;
        }
        return true;
    }

    private void checkJob(final String id, final Map<String, Object> end)
    {
        if (!"BLOCK_JOB_COMPLETED".equals(end.get("event")) || end.containsKey("error"))
        {
            failures.add("job " + id + " did not complete: " + end);
        }
    }

    /** Guest writes on another thread while the job runs (copy-before-write at work); at most 64 MiB. */
    private long writeWhileRunning(final TrackedDisk disk, final SplittableRandom random, final JobWaiter waiter,
        final String job) throws Exception
    {
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicLong written = new AtomicLong();
        final Exception[] failure = new Exception[1];
        final Thread guest = new Thread(() ->
        {
            try
            {
                written.set(randomWrites(disk, random, 1000, stop));
            }
            catch (final Exception ex)
            {
                failure[0] = ex;
            }
        }, "tidemark-demo-guest");
        guest.start();
        try
        {
            waiter.await(job, 120);
        }
        finally
        {
            stop.set(true);
            guest.join();
        }
        if (failure[0] != null)
        {
            throw failure[0];
        }
        return written.get();
    }

    /** Writes of 4 KiB to 64 KiB, 80 % of them into a hot tenth of the disk; returns bytes written. */
    private long randomWrites(final TrackedDisk disk, final SplittableRandom random, final int count,
        final AtomicBoolean stop) throws IOException
    {
        return randomWrites(disk, size, random, count, stop);
    }

    /** As above on a disk of {@code diskSize} bytes. */
    private static long randomWrites(final TrackedDisk disk, final long diskSize, final SplittableRandom random,
        final int count, final AtomicBoolean stop) throws IOException
    {
        final long size = diskSize;
        final ByteBuffer buffer = ByteBuffer.allocateDirect(64 << 10);
        final long hotStart = size / 2;
        final long hotLength = size / 10;
        long bytes = 0;
        for (int i = 0; i < count && (stop == null || !stop.get()); i++)
        {
            final int length = 4096 << random.nextInt(5);
            final long offset = random.nextInt(10) < 8
                ? hotStart + random.nextLong(hotLength - length) / 4096 * 4096
                : random.nextLong(size - length) / 4096 * 4096;
            fill(buffer, random, length);
            disk.write(offset, buffer, false);
            bytes += length;
        }
        return bytes;
    }

    private static void fill(final ByteBuffer buffer, final SplittableRandom random, final int length)
    {
        buffer.clear().limit(length);
        while (buffer.remaining() >= 8)
        {
            buffer.putLong(random.nextLong());
        }
        buffer.flip();
    }

    private void step(final String text)
    {
        if (verbose)
        {
            System.err.println("tidemark demo: " + text);
        }
    }

    private static Map<String, Object> phase(final long bytes, final long startNanos)
    {
        final double s = seconds(startNanos);
        final Map<String, Object> m = new LinkedHashMap<>();
        m.put("bytes", bytes);
        m.put("seconds", s);
        m.put("mb_per_s", mbps(bytes, s));
        return m;
    }

    private static double seconds(final long startNanos)
    {
        return round((System.nanoTime() - startNanos) / 1e9);
    }

    private static double mbps(final long bytes, final double seconds)
    {
        return seconds <= 0 ? 0 : round(bytes / 1e6 / seconds);
    }

    private static double round(final double value)
    {
        return Math.round(value * 1000) / 1000.0;
    }

    @SuppressWarnings("unchecked")
    private void printReport(final Path work, final boolean temporary) throws IOException
    {
        if (json)
        {
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(report));
            return;
        }
        final Map<String, Object> full = (Map<String, Object>)report.get("full_backup");
        final Map<String, Object> inc = (Map<String, Object>)report.get("incremental_backup");
        final Map<String, Object> restore = (Map<String, Object>)report.get("restore");
        final Map<String, Object> verify = (Map<String, Object>)report.get("verification");
        final Map<String, Object> dirty = (Map<String, Object>)report.get("dirty_before_incremental");
        final Map<String, Object> dirty2 = (Map<String, Object>)report.get("dirty_after_incremental");
        final Map<String, Object> install = (Map<String, Object>)report.get("install");
        out.println("Tidemark demo" + (temporary ? " (temporary directory, removed)" : " in " + work));
        out.printf(Locale.ROOT, "  disk            %s sparse raw, guest wrote %s at %.1f MB/s%n", mib(size),
            mib(num(install.get("bytes"))), num(install.get("mb_per_s")));
        out.printf(Locale.ROOT, "  full backup     full.qcow2: copied %s in %.2f s (%.1f MB/s), file %s;"
            + " guest wrote %s during the job%n", mib(num(full.get("copied_bytes"))), num(full.get("seconds")),
            num(full.get("mb_per_s")), mib(num(full.get("file_bytes"))),
            mib(num(full.get("guest_bytes_written_during_job"))));
        out.printf(Locale.ROOT, "  dirty           daily-1 %s = %.1f %% of the disk before the incremental%n",
            mib(num(dirty.get("bytes"))), 100 * num(dirty.get("fraction")));
        out.printf(Locale.ROOT, "  incremental     inc-1.qcow2 (backing full.qcow2): copied %s in %.2f s"
            + " (%.1f MB/s), file %s; bitmaps rotated to daily-2 in the same transaction%n",
            mib(num(inc.get("copied_bytes"))), num(inc.get("seconds")), num(inc.get("mb_per_s")),
            mib(num(inc.get("file_bytes"))));
        out.printf(Locale.ROOT, "  after           daily-2 %s = %.1f %% dirty (writes during the incremental)%n",
            mib(num(dirty2.get("bytes"))), 100 * num(dirty2.get("fraction")));
        out.printf(Locale.ROOT, "  restore         chain -> restored.raw in %.2f s (%.1f MB/s)%n",
            num(restore.get("seconds")), num(restore.get("mb_per_s")));
        out.printf(Locale.ROOT, "  verify          full.qcow2 vs cut 1: %s; restored vs NBD fleecing export: %s"
            + " (%.1f MB/s); qemu-img compare: %s%n", yes(full.get("matches_cut")),
            yes(verify.get("restored_vs_nbd_fleecing_export")), num(verify.get("nbd_read_mb_per_s")),
            verify.get("qemu_img_compare"));
        final Map<String, Object> checkpoint = (Map<String, Object>)report.get("checkpoint");
        final List<Map<String, Object>> backups = (List<Map<String, Object>>)checkpoint.get("backups");
        final Map<String, Object> last = (Map<String, Object>)checkpoint.get("last_write_at_cut");
        out.printf(Locale.ROOT, "  checkpoint      disk0 + disk1 in one transaction, one cut: bitmap %s added on"
            + " each, %s (disk0, incremental, %s) and %s (disk1, full, %s) in %.2f s; guest wrote %d records"
            + " meanwhile%n", CHECKPOINT, backups.get(0).get("file"), mib(num(backups.get(0).get("copied_bytes"))),
            backups.get(1).get("file"), mib(num(backups.get(1).get("copied_bytes"))), num(checkpoint.get("seconds")),
            ((Number)checkpoint.get("guest_writes_during")).longValue());
        out.printf(Locale.ROOT, "  verify 2 disks  disk0 chain vs its cut: %s; disk1 vs its cut: %s; last records at"
            + " the cut #%d (disk0) and #%d (disk1): %s%n", yes(backups.get(0).get("restored_matches_cut")),
            yes(backups.get(1).get("restored_matches_cut")), ((Number)last.get(NODE)).longValue(),
            ((Number)last.get(NODE_1)).longValue(),
            Boolean.TRUE.equals(checkpoint.get("one_instant")) ? "one instant" : "NOT ONE INSTANT");
        out.printf(Locale.ROOT, "  total           %.1f s, %d engine events%n", num(report.get("total_seconds")),
            ((Number)report.get("events_seen")).longValue());
        if (failures.isEmpty())
        {
            out.println("VERIFIED: the restored chain equals the disk at the cut, byte for byte.");
        }
        else
        {
            for (final String failure : failures)
            {
                out.println("FAILED: " + failure);
            }
        }
    }

    private static String yes(final Object value)
    {
        return Boolean.TRUE.equals(value) ? "identical" : "DIFFERENT";
    }

    private static double num(final Object value)
    {
        return ((Number)value).doubleValue();
    }

    private static String mib(final double bytes)
    {
        return String.format(Locale.ROOT, "%.1f MiB", bytes / MIB);
    }

    private static void deleteTree(final Path root) throws IOException
    {
        if (!Files.exists(root))
        {
            return;
        }
        try (Stream<Path> walk = Files.walk(root))
        {
            for (final Path p : walk.sorted(Comparator.reverseOrder()).toList())
            {
                Files.deleteIfExists(p);
            }
        }
    }
}
