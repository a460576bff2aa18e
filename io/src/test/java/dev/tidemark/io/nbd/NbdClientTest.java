package dev.tidemark.io.nbd;

import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.testing.ExternalTools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** NbdClient against qemu-nbd (raw and qcow2), nbdkit memory, a legacy fake and our own server; runs on JUnit's thread plus the worker threads each test starts. */
@Timeout(90)
class NbdClientTest
{
    private static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    /** Writes a seeded mix of data, zeroes and discards from several threads, mirroring them in a model. */
    private static byte[] writePatterns(final NbdClient client, final long seed) throws Exception
    {
        final byte[] model = new byte[(int)client.size()];
        final int threads = 4;
        final long region = client.size() / threads;
        final ExecutorService pool = Executors.newFixedThreadPool(threads);
        try
        {
            final List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++)
            {
                final long base = t * region;
                final SplittableRandom random = new SplittableRandom(seed + t);
                futures.add(pool.submit(() ->
                {
                    for (int i = 0; i < 60; i++)
                    {
                        final long offset = base + random.nextLong(region - (1 << 20));
                        final int length = 1 + random.nextInt(i % 10 == 0 ? 5 << 20 : 200_000);
                        final long clipped = Math.min(length, base + region - offset);
                        final int op = random.nextInt(10);
                        if (op < 7)
                        {
                            final byte[] data = new byte[(int)clipped];
                            random.nextBytes(data);
                            client.write(offset, ByteBuffer.wrap(data));
                            System.arraycopy(data, 0, model, (int)offset, data.length);
                        }
                        else if (op < 9)
                        {
                            client.writeZeroes(offset, clipped, op == 7);
                            java.util.Arrays.fill(model, (int)offset, (int)(offset + clipped), (byte)0);
                        }
                        else
                        {
                            client.discard(offset, clipped);
                            java.util.Arrays.fill(model, (int)offset, (int)(offset + clipped), (byte)0);
                        }
                    }
                    return null;
                }));
            }
            for (final Future<?> future : futures)
            {
                future.get();
            }
        }
        finally
        {
            pool.shutdownNow();
        }
        client.flush();
        return model;
    }

    private static void assertReadsBack(final NbdClient client, final byte[] model) throws IOException
    {
        final ByteBuffer back = ByteBuffer.allocateDirect(model.length);
        client.read(0, back);
        assertThat(back.position()).isEqualTo(model.length);
        final byte[] bytes = new byte[model.length];
        back.flip().get(bytes);
        assertThat(java.util.Arrays.mismatch(bytes, model)).isEqualTo(-1);
        final ByteBuffer odd = ByteBuffer.allocate(333);
        client.read(1_000_001, odd);
        assertThat(odd.array()).isEqualTo(java.util.Arrays.copyOfRange(model, 1_000_001, 1_000_334));
    }

    private Process startQemuNbd(final String format, final Path image, final Path socket, final Path log) throws Exception
    {
        final Process process = ExternalTools.start(log, "qemu-nbd", "-f", format, "-t", "-e", "4", "-x", "disk",
            "--socket=" + socket, image.toString());
        ExternalTools.awaitSocket(socket, process, log);
        return process;
    }

    @Test
    void writesToQemuNbdRawWithMultiConnMatchQemuImgCompare() throws Exception
    {
        final Path image = dir.resolve("disk.raw");
        try (java.io.RandomAccessFile file = new java.io.RandomAccessFile(image.toFile(), "rw"))
        {
            file.setLength(SIZE);
        }
        final Path socket = dir.resolve("qn.sock");
        final Process qemuNbd = startQemuNbd("raw", image, socket, dir.resolve("qemu-nbd.log"));
        try
        {
            final byte[] model;
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("disk").connections(4)
                .minimumSize(SIZE).connect())
            {
                assertThat(client.connectionCount()).isEqualTo(4);
                assertThat(client.size()).isEqualTo(SIZE);
                model = writePatterns(client, 11);
                assertReadsBack(client, model);
            }
            final Path expected = dir.resolve("expected.raw");
            Files.write(expected, model);
            ExternalTools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", expected.toString(), image.toString());
        }
        finally
        {
            qemuNbd.destroy();
            qemuNbd.waitFor();
        }
    }

    @Test
    void writesToQemuNbdQcow2MatchQemuImgCompare() throws Exception
    {
        final Path image = dir.resolve("disk.qcow2");
        ExternalTools.run(30, "qemu-img", "create", "-q", "-f", "qcow2", image.toString(), String.valueOf(SIZE));
        final Path socket = dir.resolve("qq.sock");
        final Process qemuNbd = startQemuNbd("qcow2", image, socket, dir.resolve("qemu-nbd.log"));
        final byte[] model;
        try
        {
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("disk").connect())
            {
                model = writePatterns(client, 12);
                assertReadsBack(client, model);
                final long[] holes = {0};
                client.forEachAllocationExtent(0, SIZE, (offset, length, allocated, zero) ->
                {
                    holes[0] += allocated ? 0 : length;
                    return true;
                });
                assertThat(holes[0]).as("qcow2 reports unallocated space through base:allocation").isGreaterThan(0);
            }
        }
        finally
        {
            qemuNbd.destroy();
            qemuNbd.waitFor();
        }
        final Path expected = dir.resolve("expected.raw");
        Files.write(expected, model);
        ExternalTools.run(60, "qemu-img", "check", image.toString());
        ExternalTools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", expected.toString(), image.toString());
    }

    @Test
    void writesToNbdkitMemoryReadBackAndCompare() throws Exception
    {
        final Path socket = dir.resolve("kit.sock");
        final Path log = dir.resolve("nbdkit.log");
        final Process nbdkit = ExternalTools.start(log, "nbdkit", "-f", "-U", socket.toString(), "memory", String.valueOf(SIZE));
        try
        {
            ExternalTools.awaitSocket(socket, nbdkit, log);
            final byte[] model;
            try (NbdClient client = NbdClient.builder().unix(socket).connect())
            {
                model = writePatterns(client, 13);
                assertReadsBack(client, model);
            }
            assertExportHolds(socket, model);
        }
        finally
        {
            ExternalTools.stop(nbdkit);
        }
    }

    @Test
    void writesToOurServerAndReadsAllocation() throws Exception
    {
        final Path file = dir.resolve("own.raw");
        Files.write(file, new byte[(int)(16L << 20)]);
        try (RawFileStore store = RawFileStore.open(file); NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("own", store));
            final Path socket = server.listenUnix(dir.resolve("own.sock"));
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("own").connections(3).connect())
            {
                assertThat(client.connectionCount()).isEqualTo(3);
                final byte[] model = writePatterns(client, 14);
                assertReadsBack(client, model);
                client.writeZeroes(4096 * 10, 4096 * 20, true);
                final List<long[]> extents = new ArrayList<>();
                client.forEachAllocationExtent(4096 * 10, 4096 * 20, (offset, length, allocated, zero) ->
                    extents.add(new long[] {offset, length, allocated ? 1 : 0, zero ? 1 : 0}));
                assertThat(extents).hasSize(1);
                assertThat(extents.get(0)).containsExactly(4096 * 10, 4096 * 20, 0, 1);
                client.trim(0, 4096);
            }
            final ByteBuffer check = ByteBuffer.allocate(16);
            store.read(4096 * 10, check);
            assertThat(check.array()).containsOnly(0);
        }
    }

    @Test
    void refusesUnknownExportSmallTargetsReadOnlyAndBadRanges() throws Exception
    {
        final Path file = dir.resolve("small.raw");
        Files.write(file, new byte[1 << 20]);
        try (RawFileStore store = RawFileStore.open(file, RawFileStore.Option.READ_ONLY); NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("small", "", store, true, List.of()));
            final Path socket = server.listenUnix(dir.resolve("small.sock"));
            assertThatThrownBy(() -> NbdClient.builder().unix(socket).exportName("nope").connect())
                .isInstanceOf(NbdException.class).hasMessageContaining("no export 'nope'");
            assertThatThrownBy(() -> NbdClient.builder().unix(socket).exportName("small").minimumSize(2 << 20).connect())
                .isInstanceOf(NbdException.class).hasMessageContaining("fewer than the 2097152 required");
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("small").connect())
            {
                assertThat(client.isReadOnly()).isTrue();
                assertThatThrownBy(() -> client.write(0, ByteBuffer.allocate(10)))
                    .isInstanceOf(NbdException.class).hasMessageContaining("read-only");
                assertThatThrownBy(() -> client.read(1 << 20, ByteBuffer.allocate(1)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside");
            }
        }
    }

    @Test
    void killingTheServerMidWriteFailsCleanly() throws Exception
    {
        final Path socket = dir.resolve("kill.sock");
        final Path log = dir.resolve("kill.log");
        final Process nbdkit = ExternalTools.start(log, "nbdkit", "-f", "-U", socket.toString(), "memory", String.valueOf(SIZE));
        ExternalTools.awaitSocket(socket, nbdkit, log);
        try (NbdClient client = NbdClient.builder().unix(socket).replyTimeout(Duration.ofSeconds(20)).connect())
        {
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final Thread writer = new Thread(() ->
            {
                final ByteBuffer data = ByteBuffer.allocateDirect(4 << 20);
                try
                {
                    for (long i = 0; ; i++)
                    {
                        client.write((i % 16) * (4L << 20), data.clear());
                    }
                }
                catch (final Throwable ex)
                {
                    failure.set(ex);
                }
            });
            writer.start();
            Thread.sleep(300);
            nbdkit.destroyForcibly().waitFor();
            writer.join(20_000);
            assertThat(writer.isAlive()).as("writer must not hang").isFalse();
            assertThat(failure.get()).isInstanceOf(NbdDisconnectedException.class)
                .hasMessageContaining("broke");
            assertThatThrownBy(() -> client.write(0, ByteBuffer.allocate(512)))
                .isInstanceOf(NbdDisconnectedException.class);
        }
        finally
        {
            nbdkit.destroyForcibly().waitFor();
        }
    }

    @Test
    void reconnectsButRefusesToVouchForUnflushedWrites() throws Exception
    {
        final Path file = dir.resolve("re.raw");
        Files.write(file, new byte[1 << 20]);
        final Path socketPath = dir.resolve("re.sock");
        try (RawFileStore store = RawFileStore.open(file))
        {
            NbdServer server = new NbdServer();
            server.addExport(new BlockStoreExport("re", store));
            server.listenUnix(socketPath);
            try (NbdClient client = NbdClient.builder().unix(socketPath).exportName("re").reconnectAttempts(3).connect())
            {
                client.write(0, ByteBuffer.wrap(new byte[] {1, 2, 3}));
                client.flush();
                server.close();
                server = new NbdServer();
                server.addExport(new BlockStoreExport("re", store));
                server.listenUnix(socketPath);
                client.write(3, ByteBuffer.wrap(new byte[] {4}));
                client.flush();
                final ByteBuffer back = ByteBuffer.allocate(4);
                client.read(0, back);
                assertThat(back.array()).containsExactly(1, 2, 3, 4);

                client.write(4, ByteBuffer.wrap(new byte[] {5}));
                server.close();
                server = new NbdServer();
                server.addExport(new BlockStoreExport("re", store));
                server.listenUnix(socketPath);
                client.write(5, ByteBuffer.wrap(new byte[] {6}));
                assertThatThrownBy(client::flush).isInstanceOf(NbdException.class)
                    .hasMessageContaining("durability is unknown");
            }
            finally
            {
                server.close();
            }
        }
    }

    @Test
    void obeysBlockSizeConstraintsAndFallsBackWithoutWriteZeroes() throws Exception
    {
        final Path socket = dir.resolve("bs.sock");
        final Path log = dir.resolve("bs.log");
        // error policy: nbdkit fails any request that breaks the advertised constraints.
        final Process nbdkit = ExternalTools.start(log, "nbdkit", "-f", "-U", socket.toString(), "--filter=blocksize-policy",
            "--filter=nozero", "memory", String.valueOf(SIZE), "blocksize-minimum=4096", "blocksize-preferred=65536",
            "blocksize-maximum=1048576", "blocksize-error-policy=error");
        try
        {
            ExternalTools.awaitSocket(socket, nbdkit, log);
            final byte[] model;
            try (NbdClient client = NbdClient.builder().unix(socket).connect())
            {
                assertThat(client.minimumBlockSize()).isEqualTo(4096);
                assertThat(client.preferredBlockSize()).isEqualTo(65536);
                assertThat(client.requestSize()).isEqualTo(1 << 20);
                assertThat(client.transmissionFlags() & NbdProtocol.TF_SEND_WRITE_ZEROES).isZero();
                model = writePatterns(client, 15);
                assertReadsBack(client, model);
            }
            assertExportHolds(socket, model);
        }
        finally
        {
            ExternalTools.stop(nbdkit);
        }
    }

    /**
     * A minimal old-fashioned server: fixed newstyle without NO_ZEROES, every option but EXPORT_NAME
     * unsupported, simple replies only; serves one client from a 1 MiB array on its own thread.
     */
    private static Thread legacyServer(final java.net.ServerSocket listener, final byte[] disk)
    {
        final Thread thread = new Thread(() ->
        {
            try (java.net.Socket socket = listener.accept())
            {
                final java.io.DataInputStream in = new java.io.DataInputStream(socket.getInputStream());
                final java.io.DataOutputStream out = new java.io.DataOutputStream(
                    new java.io.BufferedOutputStream(socket.getOutputStream()));
                out.writeLong(NbdProtocol.INIT_PASSWD);
                out.writeLong(NbdProtocol.IHAVEOPT);
                out.writeShort(NbdProtocol.FLAG_FIXED_NEWSTYLE);
                out.flush();
                if (in.readInt() != NbdProtocol.CLIENT_FIXED_NEWSTYLE)
                {
                    return;
                }
                while (true)
                {
                    in.readLong();
                    final int option = in.readInt();
                    final byte[] data = new byte[in.readInt()];
                    in.readFully(data);
                    if (option == NbdProtocol.OPT_EXPORT_NAME)
                    {
                        out.writeLong(disk.length);
                        out.writeShort(NbdProtocol.TF_HAS_FLAGS | NbdProtocol.TF_SEND_FLUSH);
                        out.write(new byte[124]);
                        out.flush();
                        break;
                    }
                    out.writeLong(NbdProtocol.OPTION_REPLY_MAGIC);
                    out.writeInt(option);
                    out.writeInt(NbdProtocol.REP_ERR_UNSUP);
                    out.writeInt(0);
                    out.flush();
                }
                while (true)
                {
                    in.readInt();
                    in.readShort();
                    final int type = in.readShort();
                    final long cookie = in.readLong();
                    final int offset = (int)in.readLong();
                    final int length = in.readInt();
                    if (type == NbdProtocol.CMD_DISC)
                    {
                        return;
                    }
                    if (type == NbdProtocol.CMD_WRITE)
                    {
                        in.readFully(disk, offset, length);
                    }
                    out.writeInt(NbdProtocol.SIMPLE_REPLY_MAGIC);
                    out.writeInt(type == NbdProtocol.CMD_WRITE || type == NbdProtocol.CMD_READ
                        || type == NbdProtocol.CMD_FLUSH ? 0 : NbdProtocol.EINVAL);
                    out.writeLong(cookie);
                    if (type == NbdProtocol.CMD_READ)
                    {
                        out.write(disk, offset, length);
                    }
                    out.flush();
                }
            }
            catch (final IOException ex)
            {
                // The client went away.
            }
        }, "legacy-nbd-server");
        thread.start();
        return thread;
    }

    @Test
    void fallsBackToExportNameAndSimpleRepliesWhenGoIsUnsupported() throws Exception
    {
        final byte[] disk = new byte[1 << 20];
        final byte[] data = new byte[100_000];
        new SplittableRandom(3).nextBytes(data);
        try (java.net.ServerSocket listener = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()))
        {
            final Thread server = legacyServer(listener, disk);
            try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", listener.getLocalPort()).exportName("any").connect())
            {
                assertThat(client.size()).isEqualTo(disk.length);
                assertThat(client.connectionCount()).isEqualTo(1);
                client.write(12_345, ByteBuffer.wrap(data));
                client.writeZeroes(500_000, 10_000, false);
                client.flush();
                final ByteBuffer back = ByteBuffer.allocate(data.length);
                client.read(12_345, back);
                assertThat(back.array()).isEqualTo(data);
                final boolean[] allocated = {false};
                client.forEachAllocationExtent(0, disk.length, (offset, length, isAllocated, zero) ->
                {
                    allocated[0] = isAllocated && length == disk.length;
                    return true;
                });
                assertThat(allocated[0]).as("without base:allocation everything is data").isTrue();
            }
            server.join(5000);
            assertThat(server.isAlive()).as("DISC ended the legacy server").isFalse();
            assertThat(java.util.Arrays.copyOfRange(disk, 12_345, 112_345)).isEqualTo(data);
        }
    }

    /** Fails unless the unnamed export on {@code socket} holds exactly {@code model} ({@code qemu-img compare}). */
    private void assertExportHolds(final Path socket, final byte[] model) throws Exception
    {
        final Path expected = dir.resolve("expected.raw");
        Files.write(expected, model);
        ExternalTools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", expected.toString(),
            "nbd+unix:///?socket=" + socket);
    }
}
