package dev.tidemark.bench.nbd;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.engine.JvmFlags;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * NBD over TLS against qemu-storage-daemon, with the plaintext figures beside them; main thread only.
 *
 * <p>Usage: {@code TlsVsQsd [--dir /dev/shm] [--size-mib 2048] [--runtime 5] [--runs 3]}. Makes a CA, a server
 * and a client certificate with certtool, fills one raw image with non-zero data, then, run after run, starts in
 * turn qemu-storage-daemon and {@code tidemark serve} (the real daemon in a child JVM), each once in clear and once
 * with {@code --object tls-creds-x509,...,endpoint=server,dir=DIR --nbd-server ...,tls-creds=tls0} on a loopback
 * TCP port, with the same certificates and the same image, and measures:
 * <ul>
 *   <li>after one untimed warm-up pass (the JIT), {@code nbdcopy nbd[s]://127.0.0.1:PORT/disk[?tls-certificates=DIR] null:} (read of the whole image, s);</li>
 *   <li>{@code fio --ioengine=nbd --rw=randwrite --bs=4k --iodepth=16} on the same URI (IOPS).</li>
 * </ul>
 * Prints a Markdown table of medians, the TLS cost for each server (TLS / plaintext) and Tidemark over TLS against
 * QSD over TLS.
 */
public final class TlsVsQsd
{
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String[] SERVERS = {"qsd", "tidemark"};
    private static final String[] MODES = {"plain", "tls"};

    private final Path work;
    private final long size;
    private final int runtime;
    private final int runs;
    /** server/mode/load to every run's figure. */
    private final Map<String, List<Double>> results = new LinkedHashMap<>();
    private Path fioHome;

    private TlsVsQsd(final Path work, final long size, final int runtime, final int runs)
    {
        this.work = work;
        this.size = size;
        this.runtime = runtime;
        this.runs = runs;
    }

    /**
     * @param args see the class comment.
     * @throws Exception when a tool is missing or a server does not start.
     */
    public static void main(final String[] args) throws Exception
    {
        Path dir = Path.of("/dev/shm");
        long sizeMib = 2048;
        int runtime = 5;
        int runs = 3;
        for (int i = 0; i < args.length; i += 2)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[i + 1]);
                case "--size-mib" -> sizeMib = Long.parseLong(args[i + 1]);
                case "--runtime" -> runtime = Integer.parseInt(args[i + 1]);
                case "--runs" -> runs = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        final Path work = Files.createTempDirectory(dir, "tls-vs-qsd");
        try
        {
            new TlsVsQsd(work, sizeMib << 20, runtime, runs).run();
        }
        finally
        {
            try (var walk = Files.walk(work))
            {
                for (final Path p : walk.sorted(java.util.Comparator.reverseOrder()).toList())
                {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    private void run() throws Exception
    {
        final Path pki = makePki(work.resolve("pki"));
        fioHome = work.resolve("fio-home");
        final Path libnbd = Files.createDirectories(fioHome.resolve(".pki").resolve("libnbd"));
        for (final String file : new String[] {"ca-cert.pem", "client-cert.pem", "client-key.pem"})
        {
            Files.copy(pki.resolve("client").resolve(file), libnbd.resolve(file));
        }
        BenchProcesses.run("chmod", "755", work.toString());
        BenchProcesses.run("chown", "-R", "65534:65534", fioHome.toString());
        final Path image = work.resolve("image.raw");
        fill(image);
        for (int run = 0; run < runs; run++)
        {
            for (final String server : SERVERS)
            {
                for (final String mode : MODES)
                {
                    measure(server, mode, image, pki);
                }
            }
        }
        print();
    }

    private void measure(final String server, final String mode, final Path image, final Path pki) throws Exception
    {
        final boolean tls = "tls".equals(mode);
        final int port = BenchProcesses.freePort();
        final List<String> nbdServer = new ArrayList<>();
        final String serverOpts = "addr.type=inet,addr.host=127.0.0.1,addr.port=" + port + (tls ? ",tls-creds=tls0" : "");
        final String object = "tls-creds-x509,id=tls0,endpoint=server,dir=" + pki.resolve("server");
        final List<String> command;
        if ("qsd".equals(server))
        {
            command = new ArrayList<>(List.of("qemu-storage-daemon"));
            if (tls)
            {
                command.addAll(List.of("--object", object));
            }
            command.addAll(List.of("--blockdev", "driver=file,node-name=file0,filename=" + image,
                "--nbd-server", serverOpts,
                "--export", "type=nbd,id=exp0,node-name=file0,name=disk,writable=on"));
        }
        else
        {
            command = new ArrayList<>();
            command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            command.addAll(JvmFlags.forDaemon(List.of()));
            command.addAll(List.of("-cp", System.getProperty("java.class.path"), "dev.tidemark.cli.TidemarkMain",
                "serve", "--verbose", "--qmp-socket", work.resolve("qmp-" + port + ".sock").toString(),
                "--bitmap-root", work.resolve("bitmaps").toString()));
            if (tls)
            {
                command.addAll(List.of("--object", object));
            }
            command.addAll(List.of("--blockdev", "driver=file,node-name=file0,filename=" + image,
                "--nbd-server", serverOpts,
                "--export", "type=nbd,id=exp0,node-name=file0,name=disk,writable=on"));
        }
        nbdServer.addAll(command);
        final Path log = work.resolve(server + "-" + mode + ".log");
        final Process process = new ProcessBuilder(nbdServer).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        try
        {
            if (!"qsd".equals(server))
            {
                // The daemon binds NBD before it adds the export; QMP listens last, once everything is in place.
                final Path qmp = work.resolve("qmp-" + port + ".sock");
                final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (!Files.exists(qmp) && process.isAlive() && System.nanoTime() < deadline)
                {
                    Thread.sleep(20);
                }
            }
            BenchProcesses.awaitTcp(port, process, log);
            if (!"qsd".equals(server))
            {
                BenchProcesses.awaitWarmup(process, log);
            }
            final String uri = (tls ? "nbds" : "nbd") + "://127.0.0.1:" + port + "/disk"
                + (tls ? "?tls-certificates=" + pki.resolve("client") : "");
            // One untimed pass first, for every server alike: the JVM's AES-GCM and GHASH intrinsics only
            // apply once C2 compiled them, which takes seconds on a loaded machine.
            BenchProcesses.run("nbdcopy", uri, "null:");
            final long start = System.nanoTime();
            BenchProcesses.run("nbdcopy", uri, "null:");
            record(server, mode, "nbdcopy read of " + (size >> 20) + " MiB (MiB/s)",
                (size >> 20) / ((System.nanoTime() - start) / 1e9));
            // fio's nbd engine forbids tls-certificates in the URI, and libnbd run as root reads /etc/pki/libnbd:
            // fio runs as nobody with HOME holding .pki/libnbd, for every server and mode alike.
            final String fioUri = (tls ? "nbds" : "nbd") + "://127.0.0.1:" + port + "/disk";
            final String json = BenchProcesses.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env",
                "HOME=" + fioHome, "fio", "--name=nbd", "--ioengine=nbd", "--uri=" + fioUri, "--rw=randwrite",
                "--bs=4k", "--iodepth=16", "--size=" + (size >> 20) + "m", "--time_based", "--runtime=" + runtime,
                "--ramp_time=1", "--output-format=json");
            final JsonNode root = JSON.readTree(json.substring(json.indexOf('{')));
            record(server, mode, "fio randwrite 4 KiB QD16 (IOPS)", root.path("jobs").get(0).path("write").path("iops")
                .asDouble());
        }
        finally
        {
            process.destroy();
            if (!process.waitFor(30, TimeUnit.SECONDS))
            {
                process.destroyForcibly().waitFor();
            }
        }
    }

    private void record(final String server, final String mode, final String load, final double value)
    {
        results.computeIfAbsent(load + "|" + server + "|" + mode, k -> new ArrayList<>()).add(value);
        System.err.printf(Locale.ROOT, "%s %s %s: %.1f%n", server, mode, load, value);
    }

    private void print()
    {
        final List<String> loads = new ArrayList<>();
        for (final String key : results.keySet())
        {
            final String load = key.substring(0, key.indexOf('|'));
            if (!loads.contains(load))
            {
                loads.add(load);
            }
        }
        System.out.println("| load | QSD plain | QSD TLS | Tidemark plain | Tidemark TLS | TLS cost QSD | TLS cost Tidemark "
            + "| Tidemark TLS / QSD TLS |");
        System.out.println("|---|---|---|---|---|---|---|---|");
        for (final String load : loads)
        {
            final double qp = median(load, "qsd", "plain");
            final double qt = median(load, "qsd", "tls");
            final double tp = median(load, "tidemark", "plain");
            final double tt = median(load, "tidemark", "tls");
            System.out.printf(Locale.ROOT, "| %s | %.0f | %.0f | %.0f | %.0f | %.1f %% | %.1f %% | %.2f |%n", load, qp, qt,
                tp, tt, 100 * (1 - qt / qp), 100 * (1 - tt / tp), tt / qt);
        }
        System.out.println();
        System.out.println("Every run: " + results);
    }

    private double median(final String load, final String server, final String mode)
    {
        final List<Double> values = new ArrayList<>(results.get(load + "|" + server + "|" + mode));
        Collections.sort(values);
        final int n = values.size();
        return n % 2 == 1 ? values.get(n / 2) : (values.get(n / 2 - 1) + values.get(n / 2)) / 2;
    }

    private void fill(final Path image) throws IOException
    {
        final SplittableRandom random = new SplittableRandom(1);
        final ByteBuffer block = ByteBuffer.allocateDirect(1 << 20);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            for (long at = 0; at < size; at += block.capacity())
            {
                block.clear();
                while (block.hasRemaining())
                {
                    block.putLong(random.nextLong() | 1);
                }
                block.flip();
                while (block.hasRemaining())
                {
                    channel.write(block);
                }
            }
        }
    }

    /** QEMU's layout made by certtool: server/ and client/ with the same CA. */
    private static Path makePki(final Path root) throws Exception
    {
        final Path work = Files.createDirectories(root.resolve("work"));
        BenchProcesses.run("certtool", "--generate-privkey", "--outfile", work.resolve("ca-key.pem").toString());
        Files.writeString(work.resolve("ca.info"), "cn = Bench CA\nca\ncert_signing_key\nexpiration_days = 7\n");
        BenchProcesses.run("certtool",
            "--generate-self-signed", "--load-privkey", work.resolve("ca-key.pem").toString(), "--template",
            work.resolve("ca.info").toString(), "--outfile", work.resolve("ca-cert.pem").toString());
        for (final String side : new String[] {"server", "client"})
        {
            final Path out = Files.createDirectories(root.resolve(side));
            Files.copy(work.resolve("ca-cert.pem"), out.resolve("ca-cert.pem"));
            BenchProcesses.run("certtool",
                "--generate-privkey", "--outfile", out.resolve(side + "-key.pem").toString());
            final Path info = work.resolve(side + ".info");
            Files.writeString(info, "server".equals(side)
                ? "cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\n"
                    + "signing_key\nexpiration_days = 7\n"
                : "cn = bench-client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 7\n");
            BenchProcesses.run("certtool",
                "--generate-certificate", "--load-privkey", out.resolve(side + "-key.pem").toString(),
                "--load-ca-certificate", work.resolve("ca-cert.pem").toString(), "--load-ca-privkey",
                work.resolve("ca-key.pem").toString(), "--template", info.toString(), "--outfile",
                out.resolve(side + "-cert.pem").toString());
        }
        return root;
    }
}
