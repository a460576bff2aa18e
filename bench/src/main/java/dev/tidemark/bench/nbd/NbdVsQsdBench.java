package dev.tidemark.bench.nbd;

import static dev.tidemark.bench.BenchProcesses.fill;
import static dev.tidemark.bench.BenchProcesses.startServer;
import static dev.tidemark.bench.BenchProcesses.run;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.tidemark.engine.JvmFlags;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs the NBD load side by side against qemu-storage-daemon and a Tidemark NBD server on the same
 * image, with the same clients, in one run; main thread only.
 *
 * <p>qemu-storage-daemon 7.2 has no {@code multi-conn} export option and does not offer CAN_MULTI_CONN
 * for a writable export, so default nbdcopy uses one connection to it and several to Tidemark; the
 * {@code --connections=1} row compares one connection each.
 *
 * <p>Usage: {@code NbdVsQsdBench [--dir /dev/shm] [--size-mib 2048] [--runtime 10]
 * [--server "COMMAND {file} {socket}"]}. The default server is {@link NbdServeMain} (a plain
 * {@code BlockStoreExport}, no bitmaps) in a child JVM with this JVM's classpath and the project's JVM
 * flags; pass {@code --server} to measure another export, such as the engine's tracked disk. Prints
 * a Markdown table with the ratio Tidemark / QSD for each load. Measures once: repeat runs by hand.
 */
public final class NbdVsQsdBench
{
    private static final String EXPORT = "disk";

    private NbdVsQsdBench()
    {
    }

    /**
     * @param args see the class comment.
     * @throws Exception when a tool fails or is missing.
     */
    public static void main(final String[] args) throws Exception
    {
        Path dir = Path.of("/dev/shm");
        long sizeMib = 2048;
        int runtime = 10;
        String serverCommand = null;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir":
                    dir = Path.of(args[++i]);
                    break;
                case "--size-mib":
                    sizeMib = Long.parseLong(args[++i]);
                    break;
                case "--runtime":
                    runtime = Integer.parseInt(args[++i]);
                    break;
                case "--server":
                    serverCommand = args[++i];
                    break;
                default:
                    throw new IllegalArgumentException("unknown argument '" + args[i] + "'; see the class comment");
            }
        }
        final Path work = Files.createTempDirectory(dir, "nbdbench");
        final Path image = work.resolve("image.raw");
        final Path qsdSocket = work.resolve("qsd.sock");
        final Path ourSocket = work.resolve("tidemark.sock");
        fill(image, sizeMib << 20);
        final List<Process> servers = new ArrayList<>();
        try
        {
            servers.add(startServer(work.resolve("qsd.log"), qsdSocket, List.of("qemu-storage-daemon",
                "--blockdev", "driver=file,node-name=file0,filename=" + image,
                "--nbd-server", "addr.type=unix,addr.path=" + qsdSocket,
                "--export", "type=nbd,id=exp0,node-name=file0,name=" + EXPORT + ",writable=on")));
            servers.add(startServer(work.resolve("tidemark.log"), ourSocket,
                tidemarkCommand(serverCommand, image, ourSocket)));

            final Map<String, double[]> results = new LinkedHashMap<>();
            final String qsdUri = uri(qsdSocket);
            final String ourUri = uri(ourSocket);
            final String[] loads = {"fio randwrite 4 KiB QD16 (IOPS)", "fio randwrite 64 KiB QD16 (IOPS)",
                "nbdcopy read of the export to null: (MiB/s)", "nbdcopy --connections=1 read to null: (MiB/s)"};
            for (final String load : loads)
            {
                final double[] pair = new double[2];
                for (int side = 0; side < 2; side++)
                {
                    final String uri = side == 0 ? qsdUri : ourUri;
                    if (load.startsWith("fio"))
                    {
                        pair[side] = fioIops(uri, load.contains("64 KiB") ? "64k" : "4k", sizeMib, runtime);
                    }
                    else
                    {
                        pair[side] = nbdcopyMibPerSecond(uri, sizeMib, load.contains("--connections=1"));
                    }
                }
                results.put(load, pair);
            }
            System.out.println();
            System.out.println("| load | qemu-storage-daemon | Tidemark | ratio |");
            System.out.println("|---|---|---|---|");
            for (final Map.Entry<String, double[]> entry : results.entrySet())
            {
                final double[] pair = entry.getValue();
                System.out.printf(Locale.ROOT, "| %s | %.0f | %.0f | %.2f |%n", entry.getKey(), pair[0], pair[1],
                    pair[1] / pair[0]);
            }
        }
        finally
        {
            for (final Process server : servers)
            {
                server.destroy();
                if (!server.waitFor(10, TimeUnit.SECONDS))
                {
                    server.destroyForcibly();
                }
            }
            try (var files = Files.list(work))
            {
                for (final Path file : (Iterable<Path>)files::iterator)
                {
                    Files.deleteIfExists(file);
                }
            }
            Files.deleteIfExists(work);
        }
    }

    private static String uri(final Path socket)
    {
        return "nbd+unix:///" + EXPORT + "?socket=" + socket;
    }

    private static List<String> tidemarkCommand(final String template, final Path image, final Path socket)
    {
        if (template != null)
        {
            final List<String> command = new ArrayList<>();
            for (final String word : template.trim().split("\\s+"))
            {
                command.add(word.replace("{file}", image.toString()).replace("{socket}", socket.toString()));
            }
            return command;
        }
        return JvmFlags.javaCommand(NbdServeMain.class.getName(), List.of(), image.toString(), socket.toString(),
            EXPORT);
    }

    private static double fioIops(final String uri, final String blockSize, final long sizeMib, final int runtime)
        throws Exception
    {
        final String json = run("fio", "--name=nbd", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite",
            "--bs=" + blockSize, "--iodepth=16", "--size=" + sizeMib + "m", "--time_based", "--runtime=" + runtime,
            "--ramp_time=2", "--output-format=json");
        final JsonNode root = new ObjectMapper().readTree(json.substring(json.indexOf('{')));
        return root.path("jobs").get(0).path("write").path("iops").asDouble();
    }

    private static double nbdcopyMibPerSecond(final String uri, final long sizeMib, final boolean oneConnection)
        throws Exception
    {
        final long start = System.nanoTime();
        if (oneConnection)
        {
            run("nbdcopy", "--connections=1", uri, "null:");
        }
        else
        {
            run("nbdcopy", uri, "null:");
        }
        final double seconds = (System.nanoTime() - start) / 1e9;
        return sizeMib / seconds;
    }
}
