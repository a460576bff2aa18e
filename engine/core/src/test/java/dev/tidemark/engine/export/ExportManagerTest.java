package dev.tidemark.engine.export;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.nbd.NbdProtocol;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** ExportManager rules, QEMU's error texts, tracked writes through the export, and removal; each test owns its disk. */
class ExportManagerTest
{
    private static final long SIZE = 16L << 20;
    private static final long GRANULARITY = 64 << 10;

    @TempDir
    Path dir;

    private TrackedDisk disk;
    private ExportManager manager;
    private final List<String> events = new CopyOnWriteArrayList<>();

    @BeforeEach
    void open() throws IOException
    {
        disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("disk.img"), SIZE),
            dir.resolve("bitmaps")));
        final EngineEvents sink = (name, data) -> events.add(name + " " + data);
        manager = new ExportManager(sink);
    }

    @AfterEach
    void close() throws IOException
    {
        manager.close();
        disk.close();
    }

    private Path socket()
    {
        return dir.resolve("nbd.sock");
    }

    private NbdClient connect(final String name) throws IOException
    {
        return NbdClient.builder().unix(socket()).exportName(name).connections(1).connect();
    }

    @Test
    void everyCallButStartNeedsARunningServer()
    {
        final ExportRequest request = ExportRequest.of("e0", ExportNode.disk("d0", disk));
        assertThatThrownBy(() -> manager.add(request)).isInstanceOf(EngineException.class)
            .hasMessage("NBD server not running");
        assertThatThrownBy(() -> manager.remove("e0", RemoveMode.SAFE)).hasMessage("NBD server not running");
        assertThatThrownBy(manager::stop).hasMessage("NBD server not running");
        assertThat(manager.query()).isEmpty();
    }

    @Test
    void startTwiceIsRefusedAndStopAllowsARestartOnTheSameSocket()
    {
        manager.start(ExportAddress.unix(socket()), 0);
        assertThatThrownBy(() -> manager.start(ExportAddress.unix(dir.resolve("other.sock")), 0))
            .hasMessage("NBD server already running");
        manager.stop();
        assertThat(manager.isRunning()).isFalse();
        manager.start(ExportAddress.unix(socket()), 0);
        assertThat(manager.address()).isPresent();
        final Object port = manager.address().orElseThrow();
        assertThat(port.toString()).contains("nbd.sock");
    }

    @Test
    void aFailedBindSaysWhereAndLeavesTheServerStopped() throws IOException
    {
        java.nio.file.Files.createFile(socket());
        assertThatThrownBy(() -> manager.start(ExportAddress.unix(socket()), 0)).isInstanceOf(EngineException.class)
            .hasMessageStartingWith("Failed to bind socket to unix:" + socket() + ": ");
        assertThat(manager.isRunning()).isFalse();
        assertThatThrownBy(() -> manager.start(ExportAddress.tcp("127.0.0.1", 0), -1))
            .hasMessage("Parameter 'max-connections' expects uint32");
        assertThatThrownBy(() -> ExportAddress.tcp("127.0.0.1", 70000)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("70000");
        java.nio.file.Files.delete(socket());
        manager.start(ExportAddress.unix(socket()), 0);
        assertThat(manager.isRunning()).isTrue();
    }

    @Test
    void tcpListenerBindsLoopbackWithAnyFreePort() throws IOException
    {
        final java.net.InetSocketAddress bound = (java.net.InetSocketAddress)manager.start(
            ExportAddress.tcp("127.0.0.1", 0), 4);
        assertThat(bound.getPort()).isPositive();
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)));
        try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", bound.getPort()).exportName("d0").connect())
        {
            assertThat(client.size()).isEqualTo(SIZE);
            assertThat(client.isReadOnly()).isTrue();
        }
    }

    @Test
    void addRefusesWhatQemuRefusesWithItsTexts() throws IOException
    {
        manager.start(ExportAddress.unix(socket()), 0);
        disk.transaction(BitmapActions.add("rec", GRANULARITY, false, false),
            BitmapActions.add("off", GRANULARITY, false, true));
        final ExportNode node = ExportNode.disk("d0", disk);
        assertThatThrownBy(() -> manager.add(ExportRequest.of("0bad", node))).hasMessage("Invalid block export id");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("", node))).hasMessage("Invalid block export id");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e0", node).withBitmaps("nope")))
            .hasMessage("Bitmap 'nope' is not found");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e0", node).withBitmaps("rec")))
            .hasMessage("Enabled bitmap 'rec' incompatible with readonly export");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e0", node).withName("x".repeat(4097))))
            .hasMessage("export name '" + "x".repeat(4097) + "' too long");
        // Nothing of the refused requests stayed behind.
        assertThat(manager.query()).isEmpty();
        assertThat(disk.bitmaps().query("rec").busy()).isFalse();

        manager.add(ExportRequest.of("e0", node).withBitmaps("off"));
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e0", node).withName("other")))
            .hasMessage("Block export id 'e0' is already in use");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e1", node)))
            .hasMessage("NBD server already has export named 'd0'");
        assertThatThrownBy(() -> manager.add(ExportRequest.of("e1", node).withName("n1").withBitmaps("off")))
            .hasMessage("Bitmap 'off' is currently in use by another operation and cannot be used");
        // A writable export may carry a recording bitmap: its client sees its own writes tracked.
        final ExportInfo writable = manager.add(ExportRequest.of("e2", node).withName("rw").withWritable(true)
            .withBitmaps("rec"));
        assertThat(writable).isEqualTo(new ExportInfo("e2", "nbd", "d0", false, "rw", true, List.of("rec")));
        assertThat(manager.query()).extracting(ExportInfo::id).containsExactly("e0", "e2");
        assertThatThrownBy(() -> manager.remove("e9", RemoveMode.HARD)).hasMessage("Export 'e9' is not found");
    }

    @Test
    void fleecingNodeCannotBeWritableButServesThePointInTime() throws Exception
    {
        manager.start(ExportAddress.unix(socket()), 0);
        disk.write(0, ByteBuffer.wrap(filled(4096, (byte)1)), false);
        try (FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir.resolve("cbw"), SIZE)))
        {
            final ExportNode node = ExportNode.fleecing("fleece0", view, disk);
            assertThatThrownBy(() -> manager.add(ExportRequest.of("f0", node).withWritable(true)))
                .hasMessage("Cannot export read-only node as writable");
            manager.add(ExportRequest.of("f0", node));
            disk.write(0, ByteBuffer.wrap(filled(4096, (byte)2)), false);
            try (NbdClient client = connect("fleece0"))
            {
                assertThat(client.isReadOnly()).isTrue();
                final ByteBuffer got = ByteBuffer.allocate(4096);
                client.read(0, got);
                assertThat(got.array()).containsOnly((byte)1);
            }
            manager.remove("f0", RemoveMode.HARD).get(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void exportedBitmapIsBusyUntilTheExportIsDeleted() throws Exception
    {
        manager.start(ExportAddress.unix(socket()), 0);
        disk.transaction(BitmapActions.add("b0", GRANULARITY, false, true));
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withBitmaps("b0"));
        assertThat(disk.bitmaps().query("b0").busy()).isTrue();
        assertThat(manager.isExported("d0")).isTrue();
        assertThat(manager.isExported("d1")).isFalse();
        assertThatThrownBy(() -> disk.transaction(BitmapActions.remove("b0")))
            .hasMessage("Bitmap 'b0' is currently in use by another operation and cannot be used");
        manager.remove("e0", RemoveMode.SAFE).get(10, TimeUnit.SECONDS);
        assertThat(disk.bitmaps().query("b0").busy()).isFalse();
        assertThat(events).containsExactly("BLOCK_EXPORT_DELETED {id=e0}");
        assertThat(manager.query()).isEmpty();
        assertThat(manager.isExported("d0")).isFalse();
        disk.transaction(BitmapActions.remove("b0"));
    }

    @Test
    void safeRemovalRefusesConnectedClientsAndHardRemovalClosesThem() throws Exception
    {
        manager.start(ExportAddress.unix(socket()), 0);
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withWritable(true));
        try (NbdClient client = connect("d0"))
        {
            client.write(0, ByteBuffer.wrap(filled(512, (byte)7)));
            assertThatThrownBy(() -> manager.remove("e0", RemoveMode.SAFE)).hasMessage("export 'e0' still in use");
            final var removal = manager.remove("e0", RemoveMode.HARD);
            // Until the removal thread is done the id stays in use, shutting down; it may already be gone.
            assertThat(manager.query()).allMatch(ExportInfo::shuttingDown);
            assertThatThrownBy(() -> manager.remove("e0", RemoveMode.HARD)).isInstanceOf(EngineException.class)
                .message().isIn("Export 'e0' is already shutting down", "Export 'e0' is not found");
            removal.get(10, TimeUnit.SECONDS);
            assertThatThrownBy(() -> client.read(0, ByteBuffer.allocate(512))).isInstanceOf(IOException.class);
        }
        assertThat(events).containsExactly("BLOCK_EXPORT_DELETED {id=e0}");
        // The acknowledged write stayed.
        final ByteBuffer back = ByteBuffer.allocate(512);
        disk.read(0, back);
        assertThat(back.array()).containsOnly((byte)7);
    }

    @Test
    void stopDeletesEveryExportAndReleasesTheirBitmaps() throws Exception
    {
        manager.start(ExportAddress.unix(socket()), 0);
        disk.transaction(BitmapActions.add("b0", GRANULARITY, false, true));
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withBitmaps("b0"));
        manager.add(ExportRequest.of("e1", ExportNode.disk("d0", disk)).withName("second").withWritable(true));
        try (NbdClient client = connect("second"))
        {
            assertThat(manager.connectionCount()).isEqualTo(1);
            manager.stop();
            assertThatThrownBy(() -> client.read(0, ByteBuffer.allocate(512))).isInstanceOf(IOException.class);
        }
        assertThat(events).containsExactlyInAnyOrder("BLOCK_EXPORT_DELETED {id=e0}", "BLOCK_EXPORT_DELETED {id=e1}");
        assertThat(disk.bitmaps().query("b0").busy()).isFalse();
        assertThat(manager.query()).isEmpty();
        assertThat(manager.connectionCount()).isZero();
    }

    @Test
    void vhostUserBlkExportsNeedNoNbdServerShareIdsAndAreDeletedWithTheirEvent() throws Exception
    {
        final Path sock = dir.resolve("vhost.sock");
        final ExportInfo info = manager.addVhostUserBlk(ExportRequest.of("v0", ExportNode.disk("d0", disk))
            .withWritable(true), sock, 2, 512);
        assertThat(info.type()).isEqualTo("vhost-user-blk");
        assertThat(sock).exists();
        assertThat(manager.vhostServer("v0")).isPresent();
        assertThatThrownBy(() -> manager.addVhostUserBlk(ExportRequest.of("v0", ExportNode.disk("d0", disk)),
            dir.resolve("other.sock"), 1, 512)).hasMessage("Block export id 'v0' is already in use");
        assertThatThrownBy(() -> manager.addVhostUserBlk(ExportRequest.of("v1", ExportNode.disk("d0", disk)),
            dir.resolve("other.sock"), 0, 512)).hasMessageContaining("num-queues");
        assertThatThrownBy(() -> manager.addVhostUserBlk(ExportRequest.of("v1", ExportNode.disk("d0", disk)),
            dir.resolve("other.sock"), 1, 1000)).hasMessageContaining("Logical block size");
        assertThat(manager.query()).extracting(ExportInfo::id).containsExactly("v0");
        assertThat(manager.isExported("d0")).isTrue();
        manager.remove("v0", RemoveMode.SAFE).get(30, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(events).containsExactly("BLOCK_EXPORT_DELETED {id=v0}");
        assertThat(sock).doesNotExist();
        assertThat(manager.query()).isEmpty();
    }

    @Test
    void multiConnIsOfferedUnlessTheServerAllowsOneConnection() throws IOException
    {
        manager.start(ExportAddress.unix(socket()), 0);
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withWritable(true));
        try (NbdClient client = connect("d0"))
        {
            assertThat(client.transmissionFlags() & NbdProtocol.TF_CAN_MULTI_CONN).isNotZero();
            assertThat(client.transmissionFlags() & NbdProtocol.TF_SEND_FUA).isNotZero();
            assertThat(client.transmissionFlags() & NbdProtocol.TF_SEND_WRITE_ZEROES).isNotZero();
        }
        manager.stop();
        manager.start(ExportAddress.unix(socket()), 1);
        manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withWritable(true));
        try (NbdClient client = connect("d0"))
        {
            assertThat(client.transmissionFlags() & NbdProtocol.TF_CAN_MULTI_CONN).isZero();
        }
    }

    /**
     * Many threads write, zero and trim through a multi-connection client while the recording bitmap is compared
     * with a BitSet model of the chunks touched, and each thread's own region with a byte model.
     */
    @Test
    void concurrentClientWritesAreTrackedAndLandExactly()
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () ->
        {
            manager.start(ExportAddress.unix(socket()), 0);
            disk.transaction(BitmapActions.add("rec", GRANULARITY, false, false));
            manager.add(ExportRequest.of("e0", ExportNode.disk("d0", disk)).withWritable(true).withBitmaps("rec"));
            final int threads = 8;
            final long region = SIZE / threads;
            final BitSet model = new BitSet();
            final byte[][] bytes = new byte[threads][(int)region];
            try (NbdClient client = NbdClient.builder().unix(socket()).exportName("d0").connections(4).connect())
            {
                final ExecutorService pool = Executors.newFixedThreadPool(threads);
                final List<Future<BitSet>> results = new ArrayList<>();
                for (int t = 0; t < threads; t++)
                {
                    final int thread = t;
                    results.add(pool.submit(() -> writeRandomly(client, new SplittableRandom(seed + thread),
                        thread * region, region, bytes[thread])));
                }
                for (final Future<BitSet> result : results)
                {
                    model.or(result.get());
                }
                pool.shutdown();
                client.flush();
                for (int t = 0; t < threads; t++)
                {
                    final ByteBuffer back = ByteBuffer.allocate((int)region);
                    client.read(t * region, back);
                    assertThat(Arrays.equals(back.array(), bytes[t])).as("region %d, seed %d", t, seed).isTrue();
                }
            }
            final BitSet dirty = new BitSet();
            disk.bitmaps().view("rec").forEachDirtyExtent(0, SIZE, (offset, length) ->
            {
                dirty.set((int)(offset / GRANULARITY), (int)((offset + length + GRANULARITY - 1) / GRANULARITY));
                return true;
            });
            assertThat(dirty).as("seed %d", seed).isEqualTo(model);
        }, () -> "seed " + seed);
    }

    private static BitSet writeRandomly(final NbdClient client, final SplittableRandom random, final long base,
        final long region, final byte[] model) throws IOException
    {
        final BitSet touched = new BitSet();
        for (int i = 0; i < 150; i++)
        {
            final int length = 1 + random.nextInt(40_000);
            final int offset = random.nextInt((int)region - length);
            final int kind = random.nextInt(10);
            if (kind < 7)
            {
                final byte[] data = new byte[length];
                random.nextBytes(data);
                client.write(base + offset, ByteBuffer.wrap(data));
                System.arraycopy(data, 0, model, offset, length);
            }
            else if (kind < 9)
            {
                client.writeZeroes(base + offset, length, random.nextBoolean());
                Arrays.fill(model, offset, offset + length, (byte)0);
            }
            else
            {
                // Trim leaves the content unspecified: rewrite it so the model stays exact.
                client.trim(base + offset, length);
                final byte[] data = new byte[length];
                random.nextBytes(data);
                client.write(base + offset, ByteBuffer.wrap(data));
                System.arraycopy(data, 0, model, offset, length);
            }
            touched.set((int)((base + offset) / GRANULARITY), (int)((base + offset + length - 1) / GRANULARITY) + 1);
        }
        return touched;
    }

    static byte[] filled(final int length, final byte value)
    {
        final byte[] data = new byte[length];
        Arrays.fill(data, value);
        return data;
    }
}
