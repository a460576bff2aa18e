package dev.tidemark.bench.nbd;

import static dev.tidemark.bench.BenchProcesses.args;
import static dev.tidemark.bench.BenchProcesses.deleteTree;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.engine.JvmFlags;
import dev.tidemark.qmp.QmpClient;
import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;

/**
 * Write stalls during control commands, Tidemark against qemu-storage-daemon; a command-line program, one thread.
 *
 * <p>Each side serves a 64 TiB sparse raw image (plus two 1 GiB images, for the three-disk transaction) from its
 * own command line ({@code tidemark serve} with persistent bitmaps, qemu-storage-daemon as packaged; without an
 * iothread, because Debian's QSD 7.2 with {@code iothread=} on an NBD export aborts on an assertion in
 * {@code nbd_blockdev_client_closed} when fio's first connection closes), with
 * two recording bitmaps of 4 KiB granularity (2 GiB each) on the big disk. For every command, a fresh fio run
 * (nbd engine, 4 KiB random writes, queue depth 1, over a unix socket) writes for 2.5 s, then the command runs over
 * QMP, then fio writes 1 s more and is stopped: the worst write latency of that fio run after its first 2 s
 * ({@code --ramp_time=2}) is the worst wait a guest write saw while the command ran. A run with no command gives the
 * baseline. Sides alternate; each figure is the median over {@code --runs} rounds.
 *
 * <p>Beside each figure it reports what the machine did in the same window: the worst lateness of a thread that
 * only sleeps 1 ms at a time ({@link SchedulingProbe}; no server can beat it), the steal time, and the server's
 * CPU; for Tidemark also the longest time its write ring was held in that window, by one batch of guest
 * requests and by one control request ({@code __dev.tidemark_ring-statistics}): a write queued behind the ring
 * waits at most that long for Tidemark's own work; and the server's slowest write from its arrival to its reply
 * on the socket ({@code __dev.tidemark_nbd-statistics}), beyond which fio's figure was spent outside Tidemark. fio
 * logs every write's latency, and each round says when the slowest one was sent relative to the command's start.
 * {@code --rate-iops N} paces fio (its {@code --rate_iops}) so that the machine keeps headroom: on a virtual
 * machine whose host stops it when both cores are busy, that separates the server's own waits from the host's.
 *
 * <pre>java -jar bench/target/benchmarks.jar ... or
 * java -cp bench/target/benchmarks.jar dev.tidemark.bench.nbd.StallHarness [--dir /dev/shm] [--runs 3] [--rate-iops N]
 *     [--only COMMAND,COMMAND] [--tidemark-only]</pre>
 *
 * <p>JVM options given to this program ({@code -Dtidemark.background.nice=0}, {@code -XX:+UseG1GC}, say) reach
 * {@code tidemark serve} too; a collector named there replaces the launcher's. {@code --tidemark-only} leaves
 * qemu-storage-daemon out (A/B runs of Tidemark's own options).
 */
public final class StallHarness
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long BIG = 64L << 40;
    private static final long SMALL = 1L << 30;
    private static final String CHILD_PROPERTY = "tidemark.stall.child";
    /** fio's {@code --ramp_time}: the writes before it are neither counted nor logged. */
    private static final long RAMP_MS = 2000;
    private static final List<String> COMMANDS = List.of("none", "block-dirty-bitmap-clear",
        "block-dirty-bitmap-merge", "x-debug-block-dirty-bitmap-sha256", "block-dirty-bitmap-add+remove (2 GiB)",
        "incremental backup start to finish", "incremental backup cancelled (reclaim)", "transaction over 3 disks");

    private final Path work;
    private final int runs;
    /** fio's {@code --rate_iops}, or 0 for queue depth 1 as fast as it goes. */
    private final int rateIops;
    /** The commands measured, in {@link #COMMANDS}' order. */
    private final List<String> commands;
    /** Leaves qemu-storage-daemon out: for A/B runs of Tidemark's own options. */
    private final boolean tidemarkOnly;
    private final SchedulingProbe probe = new SchedulingProbe();
    private final Map<String, Map<String, List<Round>>> results = new LinkedHashMap<>();
    private int targetSerial;

    private StallHarness(final Path work, final int runs, final int rateIops, final List<String> commands,
        final boolean tidemarkOnly)
    {
        this.tidemarkOnly = tidemarkOnly;
        this.commands = commands;
        this.work = work;
        this.runs = runs;
        this.rateIops = rateIops;
    }

    /**
     * @param args {@code [--dir DIR] [--runs N] [--rate-iops N] [--only COMMAND,COMMAND] [--tidemark-only]}.
     * @throws Exception when a server or tool fails.
     */
    public static void main(final String[] args) throws Exception
    {
        if (System.getProperty(CHILD_PROPERTY) == null)
        {
            // QmpClient's libraries need nothing, but tidemark serve is started from this JVM's class path with
            // the project's flags; run again with them so that one command suffices.
            final List<String> command = JvmFlags.javaCommand(StallHarness.class.getName(),
                List.of("-D" + CHILD_PROPERTY + "=true"), args);
            System.exit(new ProcessBuilder(command).inheritIO().start().waitFor());
        }
        Path dir = Path.of("/dev/shm");
        int runs = 3;
        int rateIops = 0;
        List<String> commands = COMMANDS;
        boolean tidemarkOnly = false;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--runs" -> runs = Integer.parseInt(args[++i]);
                case "--rate-iops" -> rateIops = Integer.parseInt(args[++i]);
                case "--only" -> commands = only(args[++i]);
                case "--tidemark-only" -> tidemarkOnly = true;
                default -> throw new IllegalArgumentException("unknown argument '" + args[i] + "'; see the class comment");
            }
        }
        final Path work = Files.createTempDirectory(dir, "stall");
        try
        {
            final StallHarness harness = new StallHarness(work, runs, rateIops, commands, tidemarkOnly);
            harness.probe.start();
            harness.run();
        }
        finally
        {
            deleteTree(work);
        }
    }

    /** @return the commands named in a comma-separated list, in the order of {@link #COMMANDS}. */
    private static List<String> only(final String list)
    {
        final List<String> wanted = List.of(list.split(","));
        for (final String name : wanted)
        {
            if (!COMMANDS.contains(name))
            {
                throw new IllegalArgumentException("--only: unknown command '" + name + "'; known: " + COMMANDS);
            }
        }
        return COMMANDS.stream().filter(wanted::contains).toList();
    }

    private void run() throws Exception
    {
        for (int round = 0; round < runs; round++)
        {
            // Alternate which side goes first.
            final String[] sides = tidemarkOnly ? new String[] {"tidemark"}
                : round % 2 == 0 ? new String[] {"tidemark", "qsd"} : new String[] {"qsd", "tidemark"};
            for (final String side : sides)
            {
                measureSide(side);
            }
        }
        print();
    }

    private void measureSide(final String side) throws Exception
    {
        final Path dir = Files.createDirectories(work.resolve(side));
        final List<Path> images = List.of(dir.resolve("d0.raw"), dir.resolve("d1.raw"), dir.resolve("d2.raw"));
        sparse(images.get(0), BIG);
        sparse(images.get(1), SMALL);
        sparse(images.get(2), SMALL);
        final Path nbd = dir.resolve("nbd.sock");
        final Path qmpSocket = dir.resolve("qmp.sock");
        final List<String> command = new ArrayList<>();
        final boolean ours = "tidemark".equals(side);
        if (ours)
        {
            // The launcher's collector too: javaCommand adds only the flags every child needs.
            command.addAll(JvmFlags.javaCommand("dev.tidemark.cli.TidemarkMain", JvmFlags.collector(List.of()),
                "serve", "--verbose"));
        }
        else
        {
            command.add("qemu-storage-daemon");
        }
        for (int d = 0; d < images.size(); d++)
        {
            command.addAll(List.of("--blockdev", "driver=file,node-name=f" + d + ",filename=" + images.get(d)));
        }
        command.addAll(List.of("--nbd-server", "addr.type=unix,addr.path=" + nbd,
            "--export", "type=nbd,id=e0,node-name=f0,name=e0,writable=on",
            "--chardev", "socket,id=m0,path=" + qmpSocket + ",server=on,wait=off", "--monitor", "chardev=m0"));
        final Path log = dir.resolve("server.log");
        final Process server = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        try
        {
            awaitSocket(server, qmpSocket, log);
            awaitSocket(server, nbd, log);
            if (ours)
            {
                BenchProcesses.awaitWarmup(server, log);
            }
            try (QmpClient qmp = QmpClient.connectUnix(qmpSocket))
            {
                qmp.setTimeout(Duration.ofMinutes(5));
                qmp.negotiate();
                for (final String name : List.of("b0", "b1"))
                {
                    final ObjectNode add = args("node", "f0", "name", name, "granularity", 4096);
                    if (ours)
                    {
                        add.put("persistent", true);
                    }
                    qmp.execute("block-dirty-bitmap-add", add);
                }
                for (final String name : commands)
                {
                    final Round round = measure(qmp, nbd, name, dir, server.pid(), ours);
                    results.computeIfAbsent(name, k -> new LinkedHashMap<>()).computeIfAbsent(side,
                        k -> new ArrayList<>()).add(round);
                    System.err.printf(Locale.ROOT, "%s %-40s command %8.1f ms, worst write %8.2f ms (server %.2f ms;"
                        + " logged %.2f ms, sent at %+.0f ms from the command's start), %6.0f IOPS, p99.9 %6.2f ms,"
                        + " probe %7.2f ms, steal %4.1f %%, server CPU %4.2f, ring: longest batch %.3f ms"
                        + " (%.0f requests), longest control %.3f ms (CPU %.3f ms) %s%n",
                        side, name, round.commandMs(), round.worstWriteMs(), round.serverWorstMs(),
                        round.loggedWorstMs(), round.loggedWorstSentMs(), round.iops(), round.p999Ms(),
                        round.probeMs(), round.stealPercent(), round.serverCores(), round.ringBatchMs(),
                        round.ringBatchRequests(), round.ringControlMs(), round.ringControlCpuMs(),
                        round.ringControlKind());
                }
                qmp.execute("quit", JSON.createObjectNode());
            }
        }
        finally
        {
            server.destroy();
            if (!server.waitFor(30, TimeUnit.SECONDS))
            {
                server.destroyForcibly().waitFor();
            }
            deleteTree(dir);
        }
    }

    /**
     * What one command did to the guest's writes over the window after fio's ramp; immutable. Times in ms;
     * Tidemark's own figures (ring, server) are NaN for QSD.
     *
     * @param commandMs how long the command took.
     * @param worstWriteMs fio's slowest write.
     * @param iops fio's writes per second.
     * @param p999Ms fio's 99.9th percentile completion latency.
     * @param probeMs the scheduling probe's worst lateness.
     * @param stealPercent the machine's steal time.
     * @param serverCores the server's CPU, in cores.
     * @param ringBatchMs the ring's longest batch of guest requests.
     * @param ringBatchRequests how many requests that batch held.
     * @param ringControlMs the ring's longest control request, wall-clock.
     * @param ringControlCpuMs that request's CPU time.
     * @param ringControlKind that request's kind ("" for none or QSD).
     * @param serverWorstMs the server's slowest write from its arrival to its reply on the socket.
     * @param loggedWorstMs the slowest write in fio's per-write log.
     * @param loggedWorstSentMs when that write was sent, from the command's start.
     */
    private record Round(double commandMs, double worstWriteMs, double iops, double p999Ms, double probeMs,
        double stealPercent, double serverCores, double ringBatchMs, double ringBatchRequests, double ringControlMs,
        double ringControlCpuMs, String ringControlKind, double serverWorstMs, double loggedWorstMs,
        double loggedWorstSentMs)
    {
    }

    /** @return the figures of one command's window (see {@link Round}). */
    private Round measure(final QmpClient qmp, final Path nbd, final String name, final Path dir,
        final long serverPid, final boolean ours) throws Exception
    {
        final Path out = dir.resolve("fio.json");
        final List<String> fioCommand = new ArrayList<>(List.of("fio", "--name=w", "--ioengine=nbd",
            "--uri=nbd+unix:///e0?socket=" + nbd, "--rw=randwrite", "--bs=4k", "--iodepth=1", "--size=" + BIG,
            "--norandommap", "--random_generator=tausworthe64", "--time_based", "--runtime=600",
            // Statistics from 2 s on: fio's first second (connecting, first writes) stalls ~100 ms on both servers
            // with no command at all, and the command starts at 2.5 s.
            "--ramp_time=" + RAMP_MS + "ms",
            // Every write's completion time and latency: when in the window the worst one happened.
            "--write_lat_log=" + dir.resolve("fio"), "--log_avg_msec=0",
            "--output-format=json"));
        if (rateIops > 0)
        {
            fioCommand.add("--rate_iops=" + rateIops);
        }
        final Process fio = new ProcessBuilder(fioCommand).redirectErrorStream(false)
            .redirectOutput(out.toFile()).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        // Writes must be flowing before the command: fio reports each connection in its first second.
        Thread.sleep(2000);
        // The window fio counts (from its ramp's end) is the window the machine figures cover.
        probe.reset();
        if (ours)
        {
            ringWindow(qmp, "f0");
            serverWindow(qmp);
        }
        final long[] stealBefore = MachineTimes.cpuTicks();
        final long serverTicksBefore = MachineTimes.processTicks(serverPid);
        final long windowStart = System.nanoTime();
        Thread.sleep(500);
        final long start = System.nanoTime();
        command(qmp, name, dir);
        final double commandMs = (System.nanoTime() - start) / 1e6;
        Thread.sleep(1000);
        final JsonNode ring = ours ? ringWindow(qmp, "f0") : null;
        final double serverWorstMs = ours ? serverWindow(qmp).path("longest-modifying-request-ns").asLong() / 1e6
            : Double.NaN;
        final long stopAsked = System.nanoTime();
        new ProcessBuilder("kill", "-INT", Long.toString(fio.pid())).start().waitFor();
        final double windowSeconds = (System.nanoTime() - windowStart) / 1e9;
        final double probeWorstMs = probe.worstMillis();
        final long[] stealAfter = MachineTimes.cpuTicks();
        final double stealPercent = MachineTimes.stealPercent(stealBefore, stealAfter);
        final double serverCores = (MachineTimes.processTicks(serverPid) - serverTicksBefore)
            / (double) MachineTimes.TICKS_PER_SECOND / windowSeconds;
        if (!fio.waitFor(60, TimeUnit.SECONDS))
        {
            fio.destroyForcibly();
            throw new IOException("fio did not stop");
        }
        final String json = Files.readString(out, StandardCharsets.UTF_8);
        final JsonNode write = JSON.readTree(json.substring(json.indexOf('{'))).path("jobs").get(0).path("write");
        final double p999 = write.path("clat_ns").path("percentile").path("99.900000").asDouble() / 1e6;
        final double[] worst = worstLogged(dir.resolve("fio_lat.1.log"));
        // fio's clock is its own: its last logged write completed as the stop was asked, which ties the two clocks
        // together to within one write (the kill command's own start-up, a few ms, is the error that remains).
        final double worstCompletedMs = worst[0] - worst[2] + (stopAsked - start) / 1e6;
        return new Round(commandMs, write.path("lat_ns").path("max").asDouble() / 1e6, write.path("iops").asDouble(),
            p999, probeWorstMs, stealPercent, serverCores, ringMillis(ring, "longest-batch-ns"),
            ring == null ? Double.NaN : ring.path("longest-batch-requests").asLong(),
            ringMillis(ring, "longest-control-ns"), ringMillis(ring, "longest-control-cpu-ns"),
            ring == null ? "" : ring.path("longest-control-kind").asText(), serverWorstMs, worst[1],
            worstCompletedMs - worst[1]);
    }

    /** @return a nanosecond figure of Tidemark's ring window in ms, NaN without one (QSD). */
    private static double ringMillis(final JsonNode ring, final String member)
    {
        return ring == null ? Double.NaN : ring.path(member).asLong() / 1e6;
    }

    /**
     * Reads and restarts Tidemark's NBD latency window ({@code __dev.tidemark_nbd-statistics}).
     *
     * @return the window that ended.
     */
    private static JsonNode serverWindow(final QmpClient qmp) throws Exception
    {
        return qmp.execute("__dev.tidemark_nbd-statistics", JSON.createObjectNode()).path("window");
    }

    /**
     * Reads and restarts Tidemark's ring hold window of a node ({@code __dev.tidemark_ring-statistics}).
     *
     * @return the window that ended.
     */
    private static JsonNode ringWindow(final QmpClient qmp, final String node) throws Exception
    {
        return qmp.execute("__dev.tidemark_ring-statistics", args("node", node)).path("window");
    }

    /**
     * @param log fio's per-write latency log ({@code time ms, latency ns, direction, size, offset} per line), which
     *            starts at the ramp's end: its time 0 is {@link #RAMP_MS} on fio's clock.
     * @return {fio time of the slowest logged write (ms), its latency (ms), fio time of the last logged write (ms)}.
     */
    private static double[] worstLogged(final Path log) throws IOException
    {
        double worstTime = Double.NaN;
        double worstMs = 0;
        double lastTime = Double.NaN;
        for (final String line : Files.readAllLines(log, StandardCharsets.UTF_8))
        {
            final String[] fields = line.split(",\\s*");
            if (fields.length < 2)
            {
                continue;
            }
            final double time = RAMP_MS + Double.parseDouble(fields[0]);
            final double latencyMs = Double.parseDouble(fields[1]) / 1e6;
            lastTime = time;
            if (latencyMs > worstMs)
            {
                worstMs = latencyMs;
                worstTime = time;
            }
        }
        return new double[] {worstTime, worstMs, lastTime};
    }

    private void command(final QmpClient qmp, final String name, final Path dir) throws Exception
    {
        switch (name)
        {
            case "none" ->
            {
                // The baseline: fio alone.
            }
            case "block-dirty-bitmap-clear" -> qmp.execute("block-dirty-bitmap-clear", args("node", "f0", "name", "b1"));
            case "block-dirty-bitmap-merge" ->
            {
                final ObjectNode merge = args("node", "f0", "target", "b1");
                merge.putArray("bitmaps").add("b0");
                qmp.execute("block-dirty-bitmap-merge", merge);
            }
            case "x-debug-block-dirty-bitmap-sha256" ->
                qmp.execute("x-debug-block-dirty-bitmap-sha256", args("node", "f0", "name", "b0"));
            case "block-dirty-bitmap-add+remove (2 GiB)" ->
            {
                qmp.execute("block-dirty-bitmap-add", args("node", "f0", "name", "extra", "granularity", 4096));
                qmp.execute("block-dirty-bitmap-remove", args("node", "f0", "name", "extra"));
            }
            case "incremental backup start to finish" ->
            {
                final Path target = addQcow2Target(qmp, dir);
                qmp.execute("blockdev-backup", args("device", "f0", "target", "t0", "sync", "incremental",
                    "bitmap", "b0", "job-id", "j0"));
                qmp.awaitEvent("BLOCK_JOB_COMPLETED", Duration.ofMinutes(5));
                awaitNoJobs(qmp);
                qmp.execute("blockdev-del", args("node-name", "t0"));
                Files.deleteIfExists(target);
            }
            case "incremental backup cancelled (reclaim)" ->
            {
                // Slowed so that it is still copying when cancelled: the bitmap takes back the successor's bits.
                final Path target = addQcow2Target(qmp, dir);
                qmp.execute("blockdev-backup", args("device", "f0", "target", "t0", "sync", "incremental",
                    "bitmap", "b1", "job-id", "j1", "speed", 1 << 20));
                Thread.sleep(500);
                qmp.execute("block-job-cancel", args("device", "j1"));
                qmp.awaitEvent("BLOCK_JOB_CANCELLED", Duration.ofMinutes(5));
                awaitNoJobs(qmp);
                qmp.execute("blockdev-del", args("node-name", "t0"));
                Files.deleteIfExists(target);
            }
            case "transaction over 3 disks" ->
            {
                final ObjectNode txn = JSON.createObjectNode();
                final ArrayNode actions = txn.putArray("actions");
                for (int d = 0; d < 3; d++)
                {
                    final ObjectNode action = actions.addObject().put("type", "block-dirty-bitmap-add");
                    action.set("data", args("node", "f" + d, "name", "chk" + targetSerial, "granularity", 65536));
                }
                targetSerial++;
                qmp.execute("transaction", txn);
            }
            default -> throw new IllegalArgumentException(name);
        }
    }

    /** Creates a 64 TiB qcow2 image and adds it as node {@code t0}. @return its path. */
    private Path addQcow2Target(final QmpClient qmp, final Path dir) throws Exception
    {
        final Path target = dir.resolve("target" + (targetSerial++) + ".qcow2");
        BenchProcesses.run("qemu-img", "create", "-f", "qcow2", target.toString(), Long.toString(BIG));
        final ObjectNode add = args("driver", "qcow2", "node-name", "t0");
        add.putObject("file").put("driver", "file").put("filename", target.toString());
        qmp.execute("blockdev-add", add);
        qmp.drainEvents();
        return target;
    }

    private static void awaitNoJobs(final QmpClient qmp) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        while (!qmp.execute("query-jobs", JSON.createObjectNode()).isEmpty())
        {
            if (System.nanoTime() > deadline)
            {
                throw new IOException("job did not go away");
            }
            Thread.sleep(10);
        }
    }

    private void print()
    {
        System.out.println("| command | Tidemark worst write (ms) | QSD worst write (ms) | Tidemark command (ms) | QSD command (ms)"
            + " | Tidemark IOPS | QSD IOPS | Tidemark p99.9 (ms) | QSD p99.9 (ms) | probe worst, Tidemark / QSD (ms)"
            + " | steal %, Tidemark / QSD | server CPU (cores), Tidemark / QSD"
            + " | Tidemark ring: longest batch / longest control (ms) | Tidemark server's worst write (ms) |");
        System.out.println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (final Map.Entry<String, Map<String, List<Round>>> entry : results.entrySet())
        {
            final List<Round> ours = entry.getValue().getOrDefault("tidemark", List.of());
            final List<Round> qsd = entry.getValue().getOrDefault("qsd", List.of());
            System.out.printf(Locale.ROOT,
                "| %s | %.2f | %.2f | %.1f | %.1f | %.0f | %.0f | %.2f | %.2f | %.1f / %.1f | %.1f / %.1f | %.2f / %.2f"
                    + " | %.3f / %.3f | %.2f |%n",
                entry.getKey(), median(ours, Round::worstWriteMs), median(qsd, Round::worstWriteMs),
                median(ours, Round::commandMs), median(qsd, Round::commandMs), median(ours, Round::iops),
                median(qsd, Round::iops), median(ours, Round::p999Ms), median(qsd, Round::p999Ms),
                median(ours, Round::probeMs), median(qsd, Round::probeMs), median(ours, Round::stealPercent),
                median(qsd, Round::stealPercent), median(ours, Round::serverCores), median(qsd, Round::serverCores),
                median(ours, Round::ringBatchMs), median(ours, Round::ringControlMs),
                median(ours, Round::serverWorstMs));
        }
    }

    private static double median(final List<Round> rounds, final ToDoubleFunction<Round> figure)
    {
        if (rounds.isEmpty())
        {
            return Double.NaN;
        }
        final double[] values = rounds.stream().mapToDouble(figure).sorted().toArray();
        final int n = values.length;
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    }

    private static void sparse(final Path image, final long size) throws IOException
    {
        try (RandomAccessFile file = new RandomAccessFile(image.toFile(), "rw"))
        {
            file.setLength(size);
        }
    }

    private static void awaitSocket(final Process server, final Path socket, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!Files.exists(socket))
        {
            if (!server.isAlive() || System.nanoTime() > deadline)
            {
                throw new IOException("server did not start: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
    }

}
