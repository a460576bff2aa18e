package dev.tidemark.bench.e2e;

import static dev.tidemark.bench.BenchProcesses.args;
import static dev.tidemark.bench.BenchProcesses.deleteTree;
import static dev.tidemark.bench.BenchProcesses.run;
import static dev.tidemark.bench.BenchProcesses.stop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.engine.JvmFlags;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.qmp.QmpClient;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Tidemark against qemu-storage-daemon and nbdkit measured the way a user measures them, one command per table;
 * main thread only.
 *
 * <p>Every server is a separate process started from its own command line: {@code tidemark serve} ({@code java
 * <the project's JVM flags> -jar engine/app/target/tidemark.jar serve ...}, bitmaps added over QMP with
 * {@code persistent: true}, so they are mapped files as in production), {@code qemu-storage-daemon} with an iothread
 * for its export with {@code --qsd-iothread} (QEMU 7.2 as Debian 12 ships it aborts on the first NBD client that
 * disconnects from such an export: {@code nbd_blockdev_client_closed: Assertion `qemu_in_main_thread() && nbd_server'
 * failed}, so the default is the main loop; the iothread object is created either way), and {@code nbdkit file}
 * (untracked, C: the machine's limit). Each run
 * visits the sides in a rotated order, so no side is always first; every figure is a median of {@code --runs} runs
 * (at least 5 by default) and every ratio comes from the same run.
 *
 * <p>Usage: {@code AsAUser writes|backup|fleece|memory|checkpoints [--dir /dev/shm] [--size-mib 2048] [--runs 5]
 * [--runtime 3] [--bitmaps 4] [--jar engine/app/target/tidemark.jar] [--qsd-iothread] [--tidemark-jvm -Dx=y]}. Tables:
 * <ul>
 *   <li>{@code writes}: fio's nbd engine, random writes 4 KiB QD16, 4 KiB QD1 and 64 KiB QD1 (IOPS and mean
 *       latency), over TCP and over a unix socket, {@code --bitmaps} recording bitmaps on the tracked servers;</li>
 *   <li>{@code backup}: {@code blockdev-backup} timed from the QMP command to {@code BLOCK_JOB_COMPLETED} on both
 *       daemons: full to raw, full to qcow2, incremental at 1, 10 and 50 % dirty to qcow2, full to a remote
 *       {@code qemu-nbd}; beside them {@code FileChannel.transferTo} of the same image to a fresh file;</li>
 *   <li>{@code fleece}: fio 4 KiB QD16 with a fleecing view open (QEMU 7.2's {@code sync: none} flow) against
 *       without, per daemon;</li>
 *   <li>{@code memory}: resident memory with 1, 10 and 50 sparse disks of 100 GiB and 2 bitmaps each;</li>
 *   <li>{@code checkpoints}: fio 4 KiB random writes (QD16 IOPS, QD1 latency, unix socket) with 1, 8 and 64 live
 *       checkpoints on Tidemark (one epoch map, docs/checkpoints.md) against qemu-storage-daemon with 1, 8 and 64
 *       recording bitmaps (libvirt's way), same run; the tracking structure's size and the daemon's RSS.</li>
 * </ul>
 */
public final class AsAUser
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long GRANULARITY = 65536;
    private static final String EXPORT = "disk";
    private static final String CHILD_PROPERTY = "tidemark.asauser.child";

    private final Path work;
    private final long size;
    private final int runs;
    private final int runtime;
    private final int bitmaps;
    private final Path jar;
    private final List<String> tidemarkOptions;
    private boolean qsdIothread;
    private final Map<String, Map<String, List<Double>>> results = new LinkedHashMap<>();
    private final List<String> order = new ArrayList<>();

    private AsAUser(final Path work, final long size, final int runs, final int runtime, final int bitmaps,
        final Path jar, final List<String> tidemarkOptions)
    {
        this.work = work;
        this.size = size;
        this.runs = runs;
        this.runtime = runtime;
        this.bitmaps = bitmaps;
        this.jar = jar;
        this.tidemarkOptions = tidemarkOptions;
    }

    /**
     * @param args see the class comment.
     * @throws Exception when a tool is missing or a server fails.
     */
    public static void main(final String[] args) throws Exception
    {
        if (System.getProperty(CHILD_PROPERTY) == null)
        {
            // The NBD client needs the project's JVM flags: run again with them, so one command suffices.
            final List<String> command = new ArrayList<>();
            command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            command.addAll(JvmFlags.forThisJava());
            command.addAll(List.of("-D" + CHILD_PROPERTY + "=true", "-cp", System.getProperty("java.class.path"),
                AsAUser.class.getName()));
            command.addAll(List.of(args));
            System.exit(new ProcessBuilder(command).inheritIO().start().waitFor());
        }
        if (args.length == 0)
        {
            throw new IllegalArgumentException(
                "usage: AsAUser writes|backup|fleece|memory|checkpoints [options]; see the class");
        }
        Path dir = Path.of("/dev/shm");
        long sizeMib = 2048;
        int runs = 5;
        int runtime = 3;
        int bitmaps = 4;
        boolean qsdIothread = false;
        Path jar = Path.of("engine/app/target/tidemark.jar");
        final List<String> tidemarkOptions = new ArrayList<>();
        for (int i = 1; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--size-mib" -> sizeMib = Long.parseLong(args[++i]);
                case "--runs" -> runs = Integer.parseInt(args[++i]);
                case "--runtime" -> runtime = Integer.parseInt(args[++i]);
                case "--bitmaps" -> bitmaps = Integer.parseInt(args[++i]);
                case "--jar" -> jar = Path.of(args[++i]);
                case "--tidemark-jvm" -> tidemarkOptions.add(args[++i]);
                case "--qsd-iothread" -> qsdIothread = true;
                default -> throw new IllegalArgumentException("unknown argument '" + args[i] + "'");
            }
        }
        if (!Files.isRegularFile(jar))
        {
            throw new IllegalArgumentException(jar + " is missing: mvn -B -q -pl engine/app -am package "
                + "-Dmaven.test.skip");
        }
        final Path work = Files.createTempDirectory(dir, "asauser-");
        final AsAUser bench = new AsAUser(work, sizeMib << 20, runs, runtime, bitmaps, jar.toAbsolutePath(),
            tidemarkOptions);
        bench.qsdIothread = qsdIothread;
        System.out.println("# " + String.join(" ", args) + "  (load before: " + loadAverage() + ")");
        try
        {
            switch (args[0])
            {
                case "writes" -> bench.writes();
                case "backup" -> bench.backups();
                case "fleece" -> bench.fleece();
                case "memory" -> bench.memory();
                case "checkpoints" -> bench.checkpoints();
                default -> throw new IllegalArgumentException("unknown table '" + args[0] + "'");
            }
        }
        finally
        {
            deleteTree(work);
        }
        System.out.println("# load after: " + loadAverage());
    }

    // -------------------------------------------------------------------------------------------- servers

    /** The three servers, started from their command lines. */
    private enum Side
    {
        QSD("qemu-storage-daemon"),
        TIDEMARK("tidemark serve"),
        TIDEMARK_BUFFER("tidemark serve, buffer copy"),
        NBDKIT("nbdkit file"),
        TRANSFER_TO("FileChannel.transferTo");

        final String label;

        Side(final String label)
        {
            this.label = label;
        }
    }

    /** A running server: its process, QMP (none for nbdkit) and the NBD URI of its export. */
    private static final class Server implements AutoCloseable
    {
        final Side side;
        final Process process;
        final QmpClient qmp;
        final String uri;
        final Path nbdSocket;

        Server(final Side side, final Process process, final QmpClient qmp, final String uri, final Path nbdSocket)
        {
            this.side = side;
            this.process = process;
            this.qmp = qmp;
            this.uri = uri;
            this.nbdSocket = nbdSocket;
        }

        @Override
        public void close() throws IOException
        {
            if (qmp != null)
            {
                qmp.close();
            }
            process.destroy();
            try
            {
                if (!process.waitFor(20, TimeUnit.SECONDS))
                {
                    process.destroyForcibly().waitFor();
                }
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                process.destroyForcibly();
            }
        }
    }

    /**
     * Starts {@code side} on {@code images} (the first is exported as {@value #EXPORT}, writable), over TCP when
     * {@code tcp}, else a unix socket.
     */
    private Server start(final Side side, final List<Path> images, final boolean tcp) throws Exception
    {
        final String id = side.name().toLowerCase(Locale.ROOT);
        final Path nbdSocket = work.resolve(id + ".nbd.sock");
        final Path qmpSocket = work.resolve(id + ".qmp.sock");
        Files.deleteIfExists(nbdSocket);
        Files.deleteIfExists(qmpSocket);
        final int port = tcp ? freePort() : 0;
        final String nbdAddress = tcp ? "addr.type=inet,addr.host=127.0.0.1,addr.port=" + port
            : "addr.type=unix,addr.path=" + nbdSocket;
        final String uri = tcp ? "nbd://127.0.0.1:" + port + "/" + EXPORT
            : "nbd+unix:///" + EXPORT + "?socket=" + nbdSocket;
        final List<String> command = new ArrayList<>();
        switch (side)
        {
            case NBDKIT ->
            {
                command.addAll(List.of("nbdkit", "--foreground", "--exit-with-parent"));
                command.addAll(tcp ? List.of("-i", "127.0.0.1", "-p", String.valueOf(port))
                    : List.of("-U", nbdSocket.toString()));
                command.addAll(List.of("file", "file=" + images.get(0)));
            }
            case QSD ->
            {
                command.addAll(List.of("qemu-storage-daemon", "--object", "iothread,id=io0"));
                addBlockdevs(command, images);
                command.addAll(List.of("--nbd-server", nbdAddress, "--export",
                    "type=nbd,id=exp0,node-name=d0,name=" + EXPORT + ",writable=on"
                        + (qsdIothread ? ",iothread=io0" : ""),
                    "--chardev", "socket,id=m0,path=" + qmpSocket + ",server=on,wait=off", "--monitor", "chardev=m0"));
            }
            case TIDEMARK, TIDEMARK_BUFFER ->
            {
                // Fresh persistent bitmaps per start: the previous run's would reload and clash with the adds.
                deleteTree(work.resolve("bitmaps"));
                command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
                command.addAll(JvmFlags.forDaemon(tidemarkOptions));
                command.addAll(tidemarkOptions);
                if (side == Side.TIDEMARK_BUFFER)
                {
                    command.add("-Dtidemark.backup.copy=buffer");
                }
                command.addAll(List.of("-jar", jar.toString(), "serve", "--verbose"));
                addBlockdevs(command, images);
                command.addAll(List.of("--bitmap-root", work.resolve("bitmaps").toString(), "--nbd-server", nbdAddress,
                    "--export", "type=nbd,id=exp0,node-name=d0,name=" + EXPORT + ",writable=on",
                    "--qmp-socket", qmpSocket.toString()));
            }
            default -> throw new IllegalArgumentException(side + " is not a server");
        }
        final Path log = work.resolve(id + ".log");
        final Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        QmpClient qmp = null;
        while (true)
        {
            if (!process.isAlive() || System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new IOException(String.join(" ", command) + " did not start: " + Files.readString(log));
            }
            try
            {
                if (side == Side.NBDKIT ? (tcp ? canConnect(port) : Files.exists(nbdSocket))
                    : Files.exists(qmpSocket) && (tcp ? canConnect(port) : Files.exists(nbdSocket)))
                {
                    if (side != Side.NBDKIT)
                    {
                        qmp = QmpClient.connectUnix(qmpSocket);
                        qmp.setTimeout(Duration.ofMinutes(5));
                        qmp.negotiate();
                    }
                    break;
                }
            }
            catch (final IOException notYet)
            {
                // The socket exists before the server accepts on it.
            }
            Thread.sleep(20);
        }
        if (side == Side.TIDEMARK || side == Side.TIDEMARK_BUFFER)
        {
            BenchProcesses.awaitWarmup(process, log);
        }
        return new Server(side, process, qmp, uri, nbdSocket);
    }

    private static void addBlockdevs(final List<String> command, final List<Path> images)
    {
        for (int i = 0; i < images.size(); i++)
        {
            command.add("--blockdev");
            command.add("driver=file,node-name=d" + i + ",filename=" + images.get(i));
        }
    }

    private static boolean canConnect(final int port)
    {
        try (java.net.Socket socket = new java.net.Socket("127.0.0.1", port))
        {
            return socket.isConnected();
        }
        catch (final IOException ex)
        {
            return false;
        }
    }

    private static int freePort() throws IOException
    {
        try (ServerSocket socket = new ServerSocket(0))
        {
            return socket.getLocalPort();
        }
    }

    private void addBitmaps(final Server server, final String node, final int count) throws Exception
    {
        for (int i = 0; i < count; i++)
        {
            server.qmp.execute("block-dirty-bitmap-add", args("node", node, "name", "b" + i, "granularity",
                GRANULARITY, "persistent", server.side != Side.QSD));
        }
    }

    // -------------------------------------------------------------------------------------------- writes

    private void writes() throws Exception
    {
        final Path image = work.resolve("image.raw");
        fill(image, size);
        final String[][] loads = {{"4k", "16"}, {"4k", "1"}, {"64k", "1"}};
        for (final boolean tcp : new boolean[] {true, false})
        {
            final String transport = tcp ? "TCP" : "unix socket";
            final List<Side> sides = new ArrayList<>(List.of(Side.QSD, Side.TIDEMARK, Side.NBDKIT));
            for (int run = 0; run < runs; run++)
            {
                for (final Side side : sides)
                {
                    try (Server server = start(side, List.of(image), tcp))
                    {
                        if (side != Side.NBDKIT)
                        {
                            addBitmaps(server, "d0", bitmaps);
                        }
                        for (final String[] load : loads)
                        {
                            final double[] iopsLatency = fio(server.uri, load[0], Integer.parseInt(load[1]));
                            final String row = "fio randwrite " + load[0] + " QD" + load[1] + ", " + transport;
                            record(row + " (IOPS)", side, iopsLatency[0]);
                            if ("1".equals(load[1]))
                            {
                                record(row + " (mean latency, µs)", side, iopsLatency[1]);
                            }
                        }
                    }
                }
                Collections.rotate(sides, 1);
            }
        }
        print("writes: " + bitmaps + " recording bitmaps on the tracked servers (nbdkit: none), " + (size >> 20)
            + " MiB raw image, fio " + runtime + " s + 1 s ramp per figure");
    }

    /** @return {IOPS, mean completion latency in µs}. */
    private double[] fio(final String uri, final String blockSize, final int depth) throws Exception
    {
        final String json = run("fio", "--name=nbd", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite",
            "--bs=" + blockSize, "--iodepth=" + depth, "--size=" + (size >> 20) + "m", "--time_based",
            "--runtime=" + runtime, "--ramp_time=1", "--output-format=json");
        final JsonNode write = JSON.readTree(json.substring(json.indexOf('{'))).path("jobs").get(0).path("write");
        return new double[] {write.path("iops").asDouble(), write.path("lat_ns").path("mean").asDouble() / 1000};
    }

    // -------------------------------------------------------------------------------------------- backups

    private void backups() throws Exception
    {
        final Path image = work.resolve("image.raw");
        fill(image, size);
        final Path nbdTargetImage = work.resolve("remote.raw");
        final List<Side> sides = new ArrayList<>(List.of(Side.QSD, Side.TIDEMARK, Side.TIDEMARK_BUFFER));
        for (int run = 0; run < runs; run++)
        {
            // The kernel's own copy of the same bytes to a fresh file, in this run: the ceiling.
            final Path copy = work.resolve("transferTo.raw");
            final long start = System.nanoTime();
            try (FileChannel in = FileChannel.open(image, StandardOpenOption.READ);
                FileChannel out = FileChannel.open(copy, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
            {
                long done = 0;
                while (done < size)
                {
                    done += in.transferTo(done, size - done, out);
                }
            }
            record("full backup to raw (GB/s)", Side.TRANSFER_TO, size / ((System.nanoTime() - start) / 1e9) / 1e9);
            Files.delete(copy);
            for (final Side side : sides)
            {
                try (Server server = start(side, List.of(image), false))
                {
                    record("full backup to raw (GB/s)", side, size / backup(server, "full", null, false) / 1e9);
                    record("full backup to qcow2 (GB/s)", side, size / backup(server, "full", null, true) / 1e9);
                    final Process remote = startQemuNbd(nbdTargetImage);
                    try
                    {
                        record("full backup to remote qemu-nbd (GB/s)", side,
                            size / backupToNbd(server) / 1e9);
                    }
                    finally
                    {
                        stop(remote);
                        Files.deleteIfExists(nbdTargetImage);
                    }
                    for (final int percent : new int[] {1, 10, 50})
                    {
                        server.qmp.execute("block-dirty-bitmap-add", args("node", "d0", "name", "inc", "granularity",
                            GRANULARITY, "persistent", side != Side.QSD));
                        dirty(server, percent * 1000L + run, percent);
                        record("incremental " + percent + " % dirty to qcow2 (s)", side,
                            backup(server, "incremental", "inc", true));
                        server.qmp.execute("block-dirty-bitmap-remove", args("node", "d0", "name", "inc"));
                    }
                }
            }
            Collections.rotate(sides, 1);
        }
        print("backup: " + (size >> 20) + " MiB of random data in " + work.getParent()
            + ", QMP blockdev-backup to BLOCK_JOB_COMPLETED; tidemark serve with the kernel copy (default) and with"
            + " -Dtidemark.backup.copy=buffer; FileChannel.transferTo of the image to a fresh file as the ceiling");
    }

    /** Runs one {@code blockdev-backup} into a fresh target; @return seconds from the command to the event. */
    private double backup(final Server server, final String sync, final String bitmap, final boolean qcow2)
        throws Exception
    {
        final Path target = work.resolve("target." + (qcow2 ? "qcow2" : "raw"));
        Files.deleteIfExists(target);
        run("qemu-img", "create", "-q", "-f", qcow2 ? "qcow2" : "raw", "-o",
            qcow2 ? "cluster_size=" + GRANULARITY : "preallocation=off", target.toString(), String.valueOf(size));
        final ObjectNode file = args("driver", "file", "filename", target.toString());
        if (qcow2)
        {
            final ObjectNode add = args("driver", "qcow2", "node-name", "tgt");
            add.set("file", file);
            server.qmp.execute("blockdev-add", add);
        }
        else
        {
            file.put("node-name", "tgt");
            server.qmp.execute("blockdev-add", file);
        }
        final double seconds = timedJob(server, bitmap == null
            ? args("device", "d0", "target", "tgt", "sync", sync, "job-id", "j0")
            : args("device", "d0", "target", "tgt", "sync", sync, "bitmap", bitmap, "job-id", "j0"));
        server.qmp.execute("blockdev-del", args("node-name", "tgt"));
        Files.delete(target);
        return seconds;
    }

    private double backupToNbd(final Server server) throws Exception
    {
        final ObjectNode address = args("type", "unix", "path", work.resolve("remote.sock").toString());
        final ObjectNode add = args("driver", "nbd", "node-name", "tgt", "export", "remote");
        add.set("server", address);
        server.qmp.execute("blockdev-add", add);
        final double seconds = timedJob(server, args("device", "d0", "target", "tgt", "sync", "full", "job-id", "j0"));
        server.qmp.execute("blockdev-del", args("node-name", "tgt"));
        return seconds;
    }

    private Process startQemuNbd(final Path image) throws Exception
    {
        Files.deleteIfExists(image);
        run("qemu-img", "create", "-q", "-f", "raw", image.toString(), String.valueOf(size));
        final Path socket = work.resolve("remote.sock");
        Files.deleteIfExists(socket);
        final Process process = new ProcessBuilder("qemu-nbd", "--format=raw", "--export-name=remote",
            "--socket=" + socket, "--persistent", "--shared=4", "--cache=writeback", "--discard=unmap",
            image.toString()).redirectErrorStream(true).redirectOutput(work.resolve("qemu-nbd.log").toFile()).start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(socket))
        {
            if (!process.isAlive() || System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new IOException("qemu-nbd did not start: " + Files.readString(work.resolve("qemu-nbd.log")));
            }
            Thread.sleep(10);
        }
        return process;
    }

    private static double timedJob(final Server server, final ObjectNode arguments) throws Exception
    {
        server.qmp.drainEvents();
        final long start = System.nanoTime();
        server.qmp.execute("blockdev-backup", arguments);
        final JsonNode done = server.qmp.awaitEvent("BLOCK_JOB_COMPLETED", Duration.ofMinutes(5));
        final double seconds = (System.nanoTime() - start) / 1e9;
        if (done.path("data").has("error"))
        {
            throw new IOException(server.side.label + " backup failed: " + done);
        }
        return seconds;
    }

    /** Writes a seeded {@code percent} of the 64 KiB chunks through the server's export (the same on both sides). */
    private void dirty(final Server server, final long seed, final int percent) throws IOException
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final ByteBuffer data = ByteBuffer.allocateDirect((int)GRANULARITY);
        final byte[] bytes = new byte[(int)GRANULARITY];
        random.nextBytes(bytes);
        data.put(bytes);
        try (NbdClient client = NbdClient.builder().unix(server.nbdSocket).exportName(EXPORT).connect())
        {
            final long chunks = size / GRANULARITY;
            for (long c = 0; c < chunks; c++)
            {
                if (random.nextInt(100) < percent)
                {
                    client.write(c * GRANULARITY, data.clear());
                }
            }
            client.flush();
        }
    }

    // -------------------------------------------------------------------------------------------- fleecing

    private void fleece() throws Exception
    {
        final Path image = work.resolve("image.raw");
        fill(image, size);
        final List<Side> sides = new ArrayList<>(List.of(Side.QSD, Side.TIDEMARK));
        for (int run = 0; run < runs; run++)
        {
            for (final Side side : sides)
            {
                try (Server server = start(side, List.of(image), false))
                {
                    addBitmaps(server, "d0", 1);
                    // Warm-up (JIT, page cache) so that the first measured figure is not the handicapped one.
                    fio(server.uri, "4k", 16);
                    final double without = fio(server.uri, "4k", 16)[0];
                    final Path fleece = work.resolve("fleece.qcow2");
                    Files.deleteIfExists(fleece);
                    run("qemu-img", "create", "-q", "-f", "qcow2", fleece.toString(), String.valueOf(size));
                    final ObjectNode add = args("driver", "qcow2", "node-name", "fl", "backing", "d0");
                    add.set("file", args("driver", "file", "filename", fleece.toString()));
                    server.qmp.execute("blockdev-add", add);
                    server.qmp.execute("blockdev-backup", args("device", "d0", "target", "fl", "sync", "none",
                        "job-id", "jfl"));
                    server.qmp.execute("block-export-add", args("type", "nbd", "id", "fe", "node-name", "fl", "name",
                        "fleece"));
                    final double with = fio(server.uri, "4k", 16)[0];
                    record("fio randwrite 4k QD16, no view (IOPS)", side, without);
                    record("fio randwrite 4k QD16, fleecing view open, no reader (IOPS)", side, with);
                    record("ratio with view / without", side, with / without);
                }
            }
            Collections.rotate(sides, 1);
        }
        print("fleece: QEMU 7.2 flow (qcow2 node backed by the disk, blockdev-backup sync=none, NBD export), "
            + (size >> 20) + " MiB, unix socket");
    }

    // -------------------------------------------------------------------------------------------- memory

    private void memory() throws Exception
    {
        final List<Side> sides = new ArrayList<>(List.of(Side.QSD, Side.TIDEMARK));
        for (final int disks : new int[] {1, 10, 50})
        {
            final List<Path> images = new ArrayList<>();
            for (int i = 0; i < disks; i++)
            {
                final Path image = work.resolve("disk" + i + ".raw");
                try (FileChannel channel = FileChannel.open(image, StandardOpenOption.CREATE, StandardOpenOption.WRITE))
                {
                    channel.truncate(0);
                    channel.write(ByteBuffer.wrap(new byte[] {1}), (100L << 30) - 1);
                }
                images.add(image);
            }
            for (int run = 0; run < runs; run++)
            {
                for (final Side side : sides)
                {
                    deleteTree(work.resolve("bitmaps"));
                    try (Server server = start(side, images, false))
                    {
                        for (int i = 0; i < disks; i++)
                        {
                            for (int b = 0; b < 2; b++)
                            {
                                server.qmp.execute("block-dirty-bitmap-add", args("node", "d" + i, "name", "b" + b,
                                    "granularity", GRANULARITY, "persistent", side != Side.QSD));
                            }
                        }
                        Thread.sleep(1000);
                        record(disks + " disks of 100 GiB, 2 bitmaps each: RSS (MiB)", side, rssMib(server.process));
                    }
                }
                Collections.rotate(sides, 1);
            }
            for (final Path image : images)
            {
                Files.delete(image);
            }
        }
        print("memory: VmRSS of the daemon after adding the disks and bitmaps");
    }

    private void checkpoints() throws Exception
    {
        final Path image = work.resolve("image.raw");
        fill(image, size);
        final List<Side> sides = new ArrayList<>(List.of(Side.QSD, Side.TIDEMARK));
        for (int run = 0; run < runs; run++)
        {
            for (final int count : new int[] {1, 8, 64})
            {
                for (final Side side : sides)
                {
                    try (Server server = start(side, List.of(image), false))
                    {
                        for (int i = 0; i < count; i++)
                        {
                            if (side == Side.QSD)
                            {
                                server.qmp.execute("block-dirty-bitmap-add", args("node", "d0", "name", "c" + i,
                                    "granularity", GRANULARITY));
                            }
                            else
                            {
                                server.qmp.execute("__dev.tidemark_checkpoint-add", args("node", "d0", "name",
                                    "c" + i));
                            }
                        }
                        final double[] qd16 = fio(server.uri, "4k", 16);
                        final double[] qd1 = fio(server.uri, "4k", 1);
                        final String row = String.format(Locale.ROOT, "%2d live", count);
                        record(row + ": fio randwrite 4k QD16 (IOPS)", side, qd16[0]);
                        record(row + ": fio randwrite 4k QD1 (mean latency, µs)", side, qd1[1]);
                        record(row + ": RSS after the writes (MiB)", side, rssMib(server.process));
                        // QEMU's level-0 words per bitmap (plus its small upper levels); the map's allocated bytes.
                        record(row + ": tracking structure (KiB)", side, side == Side.QSD
                            ? count * (size / GRANULARITY / 8) / 1024.0
                            : allocatedKib(work.resolve("bitmaps").resolve("d0").resolve("epochs.tmem")));
                    }
                }
                Collections.rotate(sides, 1);
            }
        }
        print("checkpoints: Tidemark with N live checkpoints (one epoch map, 4 B per 64 KiB chunk) against"
            + " qemu-storage-daemon with N recording bitmaps (64 KiB), " + (size >> 20) + " MiB raw image, unix"
            + " socket, fio " + runtime + " s + 1 s ramp per figure");
    }

    private static double allocatedKib(final Path file) throws Exception
    {
        return Double.parseDouble(run("du", "-k", file.toString()).trim().split("\\s+")[0]);
    }

    private static double rssMib(final Process process) throws IOException
    {
        for (final String line : Files.readAllLines(Path.of("/proc/" + process.pid() + "/status")))
        {
            if (line.startsWith("VmRSS:"))
            {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
            }
        }
        throw new IOException("no VmRSS for " + process.pid());
    }

    // -------------------------------------------------------------------------------------------- output

    private void record(final String row, final Side side, final double value)
    {
        if (!results.containsKey(row))
        {
            order.add(row);
        }
        results.computeIfAbsent(row, key -> new LinkedHashMap<>()).computeIfAbsent(side.name(),
            key -> new ArrayList<>()).add(value);
        System.err.printf(Locale.ROOT, "%s | %s: %.3f%n", row, side.label, value);
    }

    /** Prints the table: medians per side, Tidemark's ratio against each other side (above 1 = Tidemark ahead). */
    private void print(final String title)
    {
        final List<Side> present = new ArrayList<>();
        for (final Side side : Side.values())
        {
            for (final Map<String, List<Double>> row : results.values())
            {
                if (row.containsKey(side.name()) && !present.contains(side))
                {
                    present.add(side);
                }
            }
        }
        System.out.println();
        System.out.println("### " + title + "; medians of " + runs + " runs, sides alternating");
        System.out.println();
        final StringBuilder header = new StringBuilder("| load |");
        final StringBuilder rule = new StringBuilder("|---|");
        for (final Side side : present)
        {
            header.append(' ').append(side.label).append(" |");
            rule.append("---:|");
        }
        for (final Side side : present)
        {
            if (side != Side.TIDEMARK)
            {
                header.append(" Tidemark / ").append(side.label).append(" |");
                rule.append("---:|");
            }
        }
        System.out.println(header.append(" runs (").append(present.size()).append(" sides, in column order) |"));
        System.out.println(rule.append("---|"));
        for (final String row : order)
        {
            final Map<String, List<Double>> sides = results.get(row);
            final boolean lowerBetter = row.contains("latency") || row.contains("(s)") || row.contains("RSS");
            final StringBuilder line = new StringBuilder("| ").append(row).append(" |");
            final double ours = median(sides.get(Side.TIDEMARK.name()));
            final StringBuilder all = new StringBuilder();
            for (final Side side : present)
            {
                line.append(' ').append(format(median(sides.get(side.name())))).append(" |");
                all.append(all.length() == 0 ? "" : "; ").append(list(sides.get(side.name())));
            }
            for (final Side side : present)
            {
                if (side != Side.TIDEMARK)
                {
                    line.append(' ').append(ratio(ours, median(sides.get(side.name())), lowerBetter)).append(" |");
                }
            }
            System.out.println(line.append(' ').append(all).append(" |"));
        }
        results.clear();
        order.clear();
    }

    private static String ratio(final double ours, final double peer, final boolean lowerBetter)
    {
        if (Double.isNaN(ours) || Double.isNaN(peer))
        {
            return "—";
        }
        return String.format(Locale.ROOT, "%.2f", lowerBetter ? peer / ours : ours / peer);
    }

    private static String list(final List<Double> values)
    {
        if (values == null)
        {
            return "—";
        }
        final StringBuilder out = new StringBuilder();
        for (final double value : values)
        {
            out.append(out.length() == 0 ? "" : " ").append(format(value));
        }
        return out.toString();
    }

    private static String format(final double value)
    {
        if (Double.isNaN(value))
        {
            return "—";
        }
        return value >= 100 ? String.format(Locale.ROOT, "%.0f", value) : String.format(Locale.ROOT, "%.3f", value);
    }

    private static double median(final List<Double> values)
    {
        if (values == null || values.isEmpty())
        {
            return Double.NaN;
        }
        final List<Double> sorted = new ArrayList<>(values);
        Collections.sort(sorted);
        final int n = sorted.size();
        return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
    }

    // -------------------------------------------------------------------------------------------- helpers

    private static String loadAverage()
    {
        try
        {
            return Files.readString(Path.of("/proc/loadavg")).trim();
        }
        catch (final IOException ex)
        {
            return "unknown";
        }
    }

    private static void fill(final Path image, final long bytes) throws IOException
    {
        final ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 20);
        final byte[] data = new byte[1 << 20];
        final SplittableRandom random = new SplittableRandom(1);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            for (long at = 0; at < bytes; at += chunk.capacity())
            {
                // Different bytes per MiB: no side can deduplicate or skip zeroes.
                random.nextBytes(data);
                chunk.clear();
                chunk.put(data).flip();
                long position = at;
                while (chunk.hasRemaining())
                {
                    position += channel.write(chunk, position);
                }
            }
        }
    }

}
