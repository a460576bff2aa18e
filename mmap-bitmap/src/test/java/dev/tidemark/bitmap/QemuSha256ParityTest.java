package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Cross-check with real QEMU: qemu-storage-daemon records the same writes (made with qemu-io over NBD) in
 * its own dirty bitmaps, and its {@code x-debug-block-dirty-bitmap-sha256} must equal our {@code sha256()}.
 * Single-threaded; fails (does not skip) when the QEMU tools are missing.
 */
class QemuSha256ParityTest
{
    private static final Pattern SHA = Pattern.compile("\"sha256\"\\s*:\\s*\"([0-9a-f]{64})\"");

    @TempDir
    Path dir;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void digestsEqualQemuForTheSameWrites() throws Exception
    {
        requireTool("qemu-storage-daemon");
        requireTool("qemu-io");
        // 161 chunks of 64 KiB (a partial last chunk and a partial last word), 2561 chunks of 4 KiB.
        final long size = 10L * 1024 * 1024 + 3 * 512;
        final Path image = dir.resolve("disk.raw");
        try (var file = new java.io.RandomAccessFile(image.toFile(), "rw"))
        {
            file.setLength(size);
        }
        final Path qmpSocket = dir.resolve("qmp.sock");
        final Path nbdSocket = dir.resolve("nbd.sock");
        final Process daemon = new ProcessBuilder(
            "qemu-storage-daemon",
            "--blockdev", "driver=file,node-name=file0,filename=" + image,
            "--blockdev", "driver=raw,node-name=disk0,file=file0",
            "--nbd-server", "addr.type=unix,addr.path=" + nbdSocket,
            "--export", "type=nbd,id=e0,node-name=disk0,name=disk0,writable=on",
            "--chardev", "socket,id=qmp0,path=" + qmpSocket + ",server=on,wait=off",
            "--monitor", "chardev=qmp0")
            .redirectErrorStream(true).redirectOutput(dir.resolve("qsd.log").toFile()).start();
        try
        {
            waitFor(qmpSocket, daemon);
            waitFor(nbdSocket, daemon);
            try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX))
            {
                channel.connect(UnixDomainSocketAddress.of(qmpSocket));
                final BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(channel), StandardCharsets.UTF_8));
                final PrintWriter out = new PrintWriter(Channels.newOutputStream(channel), true, StandardCharsets.UTF_8);
                assertThat(in.readLine()).contains("QMP");
                command(in, out, "{\"execute\":\"qmp_capabilities\"}");
                command(in, out, "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"disk0\",\"name\":\"g64k\",\"granularity\":65536}}");
                command(in, out, "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"disk0\",\"name\":\"g4k\",\"granularity\":4096}}");

                final long[][] writes = {{0, 512}, {65536 * 5 - 512, 1024}, {3 * 1024 * 1024, 200 * 1024},
                    {7 * 1024 * 1024 + 4096, 4096}, {size - 512, 512}};
                final List<String> io = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
                for (final long[] write : writes)
                {
                    io.add("-c");
                    io.add("write -P 7 " + write[0] + " " + write[1]);
                }
                io.add("nbd+unix:///disk0?socket=" + nbdSocket);
                final Process writer = new ProcessBuilder(io).redirectErrorStream(true).start();
                final String writerOutput = new String(writer.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                assertThat(writer.waitFor(30, TimeUnit.SECONDS)).isTrue();
                assertThat(writer.exitValue()).as(writerOutput).isZero();

                for (final long granularity : new long[] {65536, 4096})
                {
                    try (MappedBitmap ours = MappedBitmap.createAnonymous("ours", size, granularity))
                    {
                        for (final long[] write : writes)
                        {
                            ours.mark(write[0], write[1]);
                        }
                        final String name = granularity == 65536 ? "g64k" : "g4k";
                        final String reply = command(in, out,
                            "{\"execute\":\"x-debug-block-dirty-bitmap-sha256\",\"arguments\":{\"node\":\"disk0\",\"name\":\"" + name + "\"}}");
                        final Matcher matcher = SHA.matcher(reply);
                        assertThat(matcher.find()).as(reply).isTrue();
                        assertThat(HexFormat.of().formatHex(ours.sha256())).as("granularity %d", granularity)
                            .isEqualTo(matcher.group(1));
                    }
                }
                // A bitmap added after the writes is clean: three zero words for 161 chunks.
                command(in, out, "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"disk0\",\"name\":\"fresh\",\"granularity\":65536}}");
                try (MappedBitmap fresh = MappedBitmap.createAnonymous("fresh", size, 65536))
                {
                    final Matcher matcher = SHA.matcher(command(in, out,
                        "{\"execute\":\"x-debug-block-dirty-bitmap-sha256\",\"arguments\":{\"node\":\"disk0\",\"name\":\"fresh\"}}"));
                    assertThat(matcher.find()).isTrue();
                    assertThat(HexFormat.of().formatHex(fresh.sha256())).isEqualTo(matcher.group(1));
                }
            }
        }
        finally
        {
            daemon.destroyForcibly();
            daemon.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** Sends one command and returns its reply line, skipping events. */
    private static String command(final BufferedReader in, final PrintWriter out, final String json) throws IOException
    {
        out.println(json);
        while (true)
        {
            final String line = in.readLine();
            if (line == null)
            {
                throw new AssertionError("QMP connection closed after " + json);
            }
            if (line.contains("\"event\""))
            {
                continue;
            }
            if (line.contains("\"error\""))
            {
                throw new AssertionError("QMP error for " + json + ": " + line);
            }
            return line;
        }
    }

    private static void waitFor(final Path socket, final Process daemon) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(socket))
        {
            if (!daemon.isAlive() || System.nanoTime() > deadline)
            {
                throw new AssertionError("qemu-storage-daemon did not create " + socket);
            }
            Thread.sleep(20);
        }
    }

    private static void requireTool(final String tool)
    {
        for (final String directory : System.getenv().getOrDefault("PATH", "").split(":"))
        {
            if (Files.isExecutable(Path.of(directory, tool)))
            {
                return;
            }
        }
        throw new AssertionError(tool + " is missing: install qemu-utils / qemu-system-common (.ci/test does)");
    }
}
