package dev.tidemark.bench.nbd;

import static dev.tidemark.bench.BenchProcesses.fill;
import static dev.tidemark.bench.BenchProcesses.startServer;
import static dev.tidemark.bench.BenchProcesses.args;
import static dev.tidemark.bench.BenchProcesses.deleteTree;
import static dev.tidemark.bench.BenchProcesses.stop;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidemark.bench.BenchProcesses;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.engine.JvmFlags;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportAddress;
import dev.tidemark.engine.export.ExportManager;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.engine.export.ExportRequest;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.qcow2.Qcow2Writer;
import dev.tidemark.qmp.QmpClient;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The NBD and qcow2 comparison with qemu-storage-daemon in one command; main thread only.
 *
 * <p><b>Superseded for figures of record by {@link dev.tidemark.bench.e2e.AsAUser}</b>, which starts
 * {@code tidemark serve} from its command line with persistent bitmaps, times both daemons' backups the same way
 * (QMP command to {@code BLOCK_JOB_COMPLETED}) and puts nbdkit beside every write figure. This harness serves an
 * in-process {@link TrackedServeMain} with in-memory bitmaps and times the Tidemark backup from an in-process
 * transaction; it stays for the dirty-bitmap map figure and for comparisons with its earlier runs.
 *
 * <p>Usage: {@code VsQsd [--dir /dev/shm] [--size-mib 2048] [--runtime 5] [--runs 3] [--wait phased|blocking]
 * [--pipeline fused|staged]} ({@code --wait}: the tracked server's ring wait strategy, the engine's default or
 * Disruptor's blocking one; {@code --pipeline}: the tracked disk's ring pipeline, default fused). On one raw image filled
 * with non-zero data, alternating QSD and Tidemark run after run:
 * <ol>
 *   <li>for 0, 1 and 4 recording bitmaps (QSD: {@code block-dirty-bitmap-add} on its QMP monitor; Tidemark: the
 *       engine's tracked export in a child JVM, {@link TrackedServeMain}): fio nbd 4 KiB and 64 KiB random writes
 *       at QD16; with 0 bitmaps also {@code nbdcopy URI null:};</li>
 *   <li>incremental backup at 1, 10 and 50 % dirty (64 KiB chunks, the same seeded set on both sides) to a new
 *       qcow2 with 64 KiB clusters: QSD's {@code blockdev-backup sync=incremental} against the engine's
 *       {@link BackupStartAction} with {@code sync: incremental} into a {@link Qcow2Writer};</li>
 *   <li>{@code nbdinfo --map=qemu:dirty-bitmap:b0} of a disabled bitmap at 10 % dirty, exported read-only.</li>
 * </ol>
 * Prints one Markdown table of medians, every run, and the ratio (Tidemark / QSD for throughput, QSD / Tidemark for
 * times, so above 1 is always Tidemark ahead).
 */
public final class VsQsd
{
    private static final String EXPORT = "disk";
    private static final long GRANULARITY = 65536;
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String CHILD_PROPERTY = "tidemark.vsqsd.child";

    private final Path work;
    private final long size;
    private final int runtime;
    private final int runs;
    private final String wait;
    private final Pipeline pipeline;
    private final Map<String, List<double[]>> results = new LinkedHashMap<>();
    private final Map<String, Boolean> higherIsBetter = new LinkedHashMap<>();

    private VsQsd(final Path work, final long size, final int runtime, final int runs, final String wait,
        final Pipeline pipeline)
    {
        this.wait = wait;
        this.pipeline = pipeline;
        this.work = work;
        this.size = size;
        this.runtime = runtime;
        this.runs = runs;
    }

    /**
     * @param args see the class comment.
     * @throws Exception when a tool fails or is missing.
     */
    public static void main(final String[] args) throws Exception
    {
        if (System.getProperty(CHILD_PROPERTY) == null)
        {
            // The engine's libraries need the project's JVM flags: run again with them, so one command suffices.
            final List<String> command = javaCommandWith(List.of("-D" + CHILD_PROPERTY + "=true"),
                VsQsd.class.getName());
            command.addAll(List.of(args));
            System.exit(new ProcessBuilder(command).inheritIO().start().waitFor());
        }
        Path dir = Path.of("/dev/shm");
        long sizeMib = 2048;
        int runtime = 5;
        int runs = 3;
        String wait = "phased";
        Pipeline pipeline = Pipeline.FUSED;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--size-mib" -> sizeMib = Long.parseLong(args[++i]);
                case "--runtime" -> runtime = Integer.parseInt(args[++i]);
                case "--runs" -> runs = Integer.parseInt(args[++i]);
                case "--wait" -> wait = args[++i];
                case "--pipeline" -> pipeline = Pipeline.valueOf(args[++i].toUpperCase(Locale.ROOT));
                default -> throw new IllegalArgumentException("unknown argument '" + args[i] + "'; see the class comment");
            }
        }
        final Path work = Files.createTempDirectory(dir, "vsqsd");
        final VsQsd bench = new VsQsd(work, sizeMib << 20, runtime, runs, wait, pipeline);
        try
        {
            bench.run();
        }
        finally
        {
            deleteTree(work);
        }
    }

    private void run() throws Exception
    {
        final Path image = work.resolve("image.raw");
        fill(image, size);
        final Path ourImage = work.resolve("tidemark.raw");
        Files.copy(image, ourImage);
        for (final int bitmaps : new int[] {0, 1, 4})
        {
            nbdLoads(image, ourImage, bitmaps);
        }
        backups(image, ourImage);
        print();
    }

    // ------------------------------------------------------------------------------------------ NBD loads

    private void nbdLoads(final Path image, final Path ourImage, final int bitmaps) throws Exception
    {
        final Path qsdSocket = work.resolve("qsd.sock");
        final Path qmpSocket = work.resolve("qmp.sock");
        final Path ourSocket = work.resolve("tidemark.sock");
        final Process qsd = startQsd(image, qsdSocket, qmpSocket);
        Process ours = null;
        try (QmpClient qmp = QmpClient.connectUnix(qmpSocket))
        {
            qmp.negotiate();
            for (int i = 0; i < bitmaps; i++)
            {
                qmp.execute("block-dirty-bitmap-add", args("node", "file0", "name", "b" + i, "granularity", GRANULARITY));
            }
            ours = startServer(work.resolve("tidemark.log"), ourSocket, javaCommandWith(
                List.of("-Dtidemark.bench.wait=" + wait,
                    "-Dtidemark.bench.pipeline=" + pipeline.name().toLowerCase(Locale.ROOT)),
                TrackedServeMain.class.getName(), ourImage.toString(), ourSocket.toString(), String.valueOf(bitmaps)));
            final String qsdUri = uri(qsdSocket);
            final String ourUri = uri(ourSocket);
            for (int run = 0; run < runs; run++)
            {
                for (final String bs : new String[] {"4k", "64k"})
                {
                    final String load = "fio randwrite " + bs + " QD16, " + bitmaps + " bitmaps (IOPS)";
                    record(load, true, fioIops(qsdUri, bs), fioIops(ourUri, bs));
                }
                if (bitmaps == 0)
                {
                    record("nbdcopy read of " + (size >> 20) + " MiB to null: (s)", false, nbdcopySeconds(qsdUri),
                        nbdcopySeconds(ourUri));
                }
            }
        }
        finally
        {
            stop(qsd);
            if (ours != null)
            {
                stop(ours);
            }
            Files.deleteIfExists(qsdSocket);
            Files.deleteIfExists(qmpSocket);
            Files.deleteIfExists(ourSocket);
        }
    }

    private double fioIops(final String uri, final String blockSize) throws Exception
    {
        final String json = BenchProcesses.run("fio", "--name=nbd", "--ioengine=nbd", "--uri=" + uri,
            "--rw=randwrite", "--bs=" + blockSize, "--iodepth=16", "--size=" + (size >> 20) + "m", "--time_based",
            "--runtime=" + runtime, "--ramp_time=1", "--output-format=json");
        final JsonNode root = JSON.readTree(json.substring(json.indexOf('{')));
        return root.path("jobs").get(0).path("write").path("iops").asDouble();
    }

    private static double nbdcopySeconds(final String uri) throws Exception
    {
        final long start = System.nanoTime();
        BenchProcesses.run("nbdcopy", uri, "null:");
        return (System.nanoTime() - start) / 1e9;
    }

    // ------------------------------------------------------------------------------------------ backups, map

    private void backups(final Path image, final Path ourImage) throws Exception
    {
        final Path qsdSocket = work.resolve("qsd.sock");
        final Path qmpSocket = work.resolve("qmp.sock");
        final Process qsd = startQsd(image, qsdSocket, qmpSocket);
        final JobManager jobs = new JobManager();
        try (QmpClient qmp = QmpClient.connectUnix(qmpSocket);
            TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.open(ourImage),
                work.resolve("tidemark.raw.bitmaps")).withName("disk").withPipeline(pipeline));
            NbdClient qsdClient = NbdClient.builder().unix(qsdSocket).exportName(EXPORT).connect())
        {
            qmp.setTimeout(Duration.ofMinutes(5));
            qmp.negotiate();
            for (int run = 0; run < runs; run++)
            {
                for (final int percent : new int[] {1, 10, 50})
                {
                    final long seed = percent * 1000L + run;
                    final String load = "incremental backup to qcow2, " + percent + " % dirty (s)";
                    // QSD.
                    qmp.execute("block-dirty-bitmap-add", args("node", "file0", "name", "b0", "granularity",
                        GRANULARITY));
                    dirty(seed, percent, (offset, data) -> qsdClient.write(offset, data));
                    final Path qsdTarget = work.resolve("qsd-target.qcow2");
                    BenchProcesses.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + GRANULARITY,
                        qsdTarget.toString(), String.valueOf(size));
                    final ObjectNode file = args("driver", "file", "filename", qsdTarget.toString());
                    final ObjectNode add = args("driver", "qcow2", "node-name", "tgt");
                    add.set("file", file);
                    qmp.execute("blockdev-add", add);
                    qmp.drainEvents();
                    long start = System.nanoTime();
                    qmp.execute("blockdev-backup", args("device", "file0", "target", "tgt", "sync", "incremental",
                        "bitmap", "b0", "job-id", "j0"));
                    final JsonNode done = qmp.awaitEvent("BLOCK_JOB_COMPLETED", Duration.ofMinutes(5));
                    final double qsdSeconds = (System.nanoTime() - start) / 1e9;
                    if (done.path("data").has("error"))
                    {
                        throw new IOException("QSD backup failed: " + done);
                    }
                    qmp.execute("blockdev-del", args("node-name", "tgt"));
                    qmp.execute("block-dirty-bitmap-remove", args("node", "file0", "name", "b0"));
                    Files.delete(qsdTarget);
                    // Tidemark.
                    disk.transaction(BitmapActions.add("b0", GRANULARITY, false, false));
                    dirty(seed, percent, (offset, data) -> disk.write(offset, data, false));
                    final Path ourTarget = work.resolve("tidemark-target.qcow2");
                    final double ourSeconds;
                    try (Qcow2Writer target = BackupTargets.createQcow2(ourTarget, size, GRANULARITY))
                    {
                        final CountDownLatch finished = new CountDownLatch(1);
                        final String[] error = {null};
                        disk.addListener((name, data) ->
                        {
                            if ("BLOCK_JOB_COMPLETED".equals(name))
                            {
                                error[0] = (String)data.get("error");
                                finished.countDown();
                            }
                        });
                        start = System.nanoTime();
                        BackupStartAction.start(disk, jobs, BackupOptions.of("disk", SyncMode.INCREMENTAL)
                            .withJobId("j0").withBitmap("b0", null), target);
                        if (!finished.await(5, TimeUnit.MINUTES) || error[0] != null)
                        {
                            throw new IOException("Tidemark backup failed: " + error[0]);
                        }
                        target.flush();
                        ourSeconds = (System.nanoTime() - start) / 1e9;
                    }
                    disk.transaction(BitmapActions.remove("b0"));
                    Files.delete(ourTarget);
                    record(load, false, qsdSeconds, ourSeconds);
                    awaitNoJob(jobs);
                }
            }
            dirtyMap(qmp, qsdSocket, qsdClient, disk);
        }
        finally
        {
            stop(qsd);
        }
    }

    private static void awaitNoJob(final JobManager jobs) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!jobs.jobs().isEmpty() && System.nanoTime() < deadline)
        {
            Thread.sleep(5);
        }
    }

    private void dirtyMap(final QmpClient qmp, final Path qsdSocket, final NbdClient qsdClient, final TrackedDisk disk)
        throws Exception
    {
        final String load = "nbdinfo --map=qemu:dirty-bitmap:b0, 10 % dirty (s)";
        qmp.execute("block-dirty-bitmap-add", args("node", "file0", "name", "b0", "granularity", GRANULARITY));
        dirty(7, 10, (offset, data) -> qsdClient.write(offset, data));
        qmp.execute("block-dirty-bitmap-disable", args("node", "file0", "name", "b0"));
        final ObjectNode export = args("type", "nbd", "id", "map0", "node-name", "file0", "name", "map");
        export.putArray("bitmaps").add("b0");
        qmp.execute("block-export-add", export);
        disk.transaction(BitmapActions.add("b0", GRANULARITY, false, false));
        dirty(7, 10, (offset, data) -> disk.write(offset, data, false));
        disk.transaction(BitmapActions.disable("b0"));
        final Path ourSocket = work.resolve("map.sock");
        try (ExportManager exports = new ExportManager((name, data) -> { }))
        {
            exports.start(ExportAddress.unix(ourSocket), 0);
            exports.add(ExportRequest.of("map0", ExportNode.disk("disk", disk)).withName("map").withBitmaps("b0"));
            final String qsdUri = "nbd+unix:///map?socket=" + qsdSocket;
            final String ourUri = "nbd+unix:///map?socket=" + ourSocket;
            final String qsdMap = BenchProcesses.run("nbdinfo", "--map=qemu:dirty-bitmap:b0", qsdUri);
            final String ourMap = BenchProcesses.run("nbdinfo", "--map=qemu:dirty-bitmap:b0", ourUri);
            if (!qsdMap.equals(ourMap))
            {
                throw new IOException("the two dirty maps differ:\nQSD:\n" + head(qsdMap) + "\nTidemark:\n" + head(ourMap));
            }
            for (int run = 0; run < runs; run++)
            {
                record(load, false, timed("nbdinfo", "--map=qemu:dirty-bitmap:b0", qsdUri),
                    timed("nbdinfo", "--map=qemu:dirty-bitmap:b0", ourUri));
            }
        }
        qmp.execute("block-export-del", args("id", "map0"));
    }

    private static String uri(final Path socket)
    {
        return "nbd+unix:///" + EXPORT + "?socket=" + socket;
    }

    private static String head(final String text)
    {
        return text.length() > 2000 ? text.substring(0, 2000) + "..." : text;
    }

    private static double timed(final String... command) throws Exception
    {
        final long start = System.nanoTime();
        BenchProcesses.run(command);
        return (System.nanoTime() - start) / 1e9;
    }

    /** Writes a seeded set of {@code percent} % of the 64 KiB chunks, each with non-zero data. */
    private void dirty(final long seed, final int percent, final ChunkWriter writer) throws IOException
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final byte[] bytes = new byte[(int)GRANULARITY];
        random.nextBytes(bytes);
        final ByteBuffer data = ByteBuffer.allocateDirect(bytes.length);
        data.put(bytes);
        final long chunks = size / GRANULARITY;
        for (long chunk = 0; chunk < chunks; chunk++)
        {
            if (random.nextInt(100) < percent)
            {
                data.clear();
                writer.write(chunk * GRANULARITY, data);
            }
        }
    }

    /** Writes one chunk. */
    @FunctionalInterface
    private interface ChunkWriter
    {
        void write(long offset, ByteBuffer data) throws IOException;
    }

    // ------------------------------------------------------------------------------------------ results

    private void record(final String load, final boolean higher, final double qsd, final double ours)
    {
        results.computeIfAbsent(load, key -> new ArrayList<>()).add(new double[] {qsd, ours});
        higherIsBetter.put(load, higher);
        System.err.printf(Locale.ROOT, "%s: QSD %.3f, Tidemark %.3f%n", load, qsd, ours);
    }

    private void print()
    {
        System.out.println();
        System.out.println("| load | QSD median | Tidemark median | ratio (>1 = Tidemark ahead) | runs QSD / Tidemark |");
        System.out.println("|---|---|---|---|---|");
        for (final Map.Entry<String, List<double[]>> entry : results.entrySet())
        {
            final List<Double> qsd = new ArrayList<>();
            final List<Double> ours = new ArrayList<>();
            final StringBuilder all = new StringBuilder();
            for (final double[] pair : entry.getValue())
            {
                qsd.add(pair[0]);
                ours.add(pair[1]);
                all.append(all.length() == 0 ? "" : "; ").append(format(pair[0])).append(" / ").append(format(pair[1]));
            }
            final double q = median(qsd);
            final double o = median(ours);
            final double ratio = higherIsBetter.get(entry.getKey()) ? o / q : q / o;
            System.out.printf(Locale.ROOT, "| %s | %s | %s | %.2f | %s |%n", entry.getKey(), format(q), format(o), ratio,
                all);
        }
    }

    private static String format(final double value)
    {
        return value >= 100 ? String.format(Locale.ROOT, "%.0f", value) : String.format(Locale.ROOT, "%.3f", value);
    }

    private static double median(final List<Double> values)
    {
        final List<Double> sorted = new ArrayList<>(values);
        Collections.sort(sorted);
        final int n = sorted.size();
        return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
    }

    // ------------------------------------------------------------------------------------------ processes

    private Process startQsd(final Path image, final Path nbdSocket, final Path qmpSocket) throws Exception
    {
        return startServer(work.resolve("qsd.log"), nbdSocket, List.of("qemu-storage-daemon",
            "--blockdev", "driver=file,node-name=file0,filename=" + image,
            "--nbd-server", "addr.type=unix,addr.path=" + nbdSocket,
            "--export", "type=nbd,id=exp0,node-name=file0,name=" + EXPORT + ",writable=on",
            "--chardev", "socket,id=m0,path=" + qmpSocket + ",server=on,wait=off",
            "--monitor", "chardev=m0"));
    }

    private static List<String> javaCommand(final String mainClass, final String... arguments)
    {
        return javaCommandWith(List.of(), mainClass, arguments);
    }

    private static List<String> javaCommandWith(final List<String> properties, final String mainClass,
        final String... arguments)
    {
        return JvmFlags.javaCommand(mainClass, properties, arguments);
    }
}
