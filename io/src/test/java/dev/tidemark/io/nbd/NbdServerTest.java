package dev.tidemark.io.nbd;

import dev.tidemark.io.ForwardingBlockStore;
import dev.tidemark.io.testing.HeapStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Server lifecycle, limits and concurrency, driven from Java; runs on JUnit's thread plus the client threads each test starts. */
@Timeout(60)
class NbdServerTest
{
    @TempDir
    Path dir;

    /** An export whose writes complete, on a thread of their own, only when the test opens the gate; thread-safe. */
    private static final class GatedExport extends StoreExportBase
    {
        final HeapStore store;
        final BlockStoreExport inner;
        final CountDownLatch entered = new CountDownLatch(1);
        final CountDownLatch gate = new CountDownLatch(1);

        GatedExport()
        {
            this(new HeapStore(new byte[1 << 20], false));
        }

        private GatedExport(final HeapStore store)
        {
            super("gated", "", store, false, true, List.of());
            this.store = store;
            this.inner = new BlockStoreExport("gated", store);
        }

        @Override
        public long size()
        {
            return inner.size();
        }

        @Override
        public int read(final long offset, final ByteBuffer dst)
        {
            return inner.read(offset, dst);
        }

        @Override
        public void write(final long offset, final ByteBuffer data, final int flags, final NbdCompletion done)
        {
            final Thread completer = new Thread(() ->
            {
                entered.countDown();
                try
                {
                    gate.await();
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
                inner.write(offset, data, flags, done);
            });
            completer.start();
        }

        @Override
        public void flush(final NbdCompletion done)
        {
            inner.flush(done);
        }

        @Override
        public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
        {
            inner.trim(offset, length, flags, done);
        }

        @Override
        public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
        {
            inner.writeZeroes(offset, length, flags, done);
        }
    }

    @Test
    void removingAnExportAnswersInFlightWritesThenClosesOnlyItsConnections() throws Exception
    {
        final GatedExport gated = new GatedExport();
        try (NbdServer server = new NbdServer())
        {
            server.addExport(gated);
            server.addExport(new BlockStoreExport("other", new HeapStore(new byte[65536], false)));
            assertThatThrownBy(() -> server.addExport(new BlockStoreExport("other", new HeapStore(new byte[1], false))))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("already exists");
            final Path socket = server.listenUnix(dir.resolve("s.sock"));
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("gated").connections(1).connect();
                NbdClient other = NbdClient.builder().unix(socket).exportName("other").connect())
            {
                final AtomicReference<Throwable> writeFailure = new AtomicReference<>();
                final Thread writer = new Thread(() ->
                {
                    try
                    {
                        client.write(4096, ByteBuffer.wrap(new byte[] {9, 9, 9}));
                    }
                    catch (final Throwable ex)
                    {
                        writeFailure.set(ex);
                    }
                });
                writer.start();
                assertThat(gated.entered.await(10, TimeUnit.SECONDS)).isTrue();
                final Thread remover = new Thread(() -> server.removeExport("gated"));
                remover.start();
                Thread.sleep(200);
                assertThat(remover.isAlive()).as("removal waits for the in-flight write").isTrue();
                gated.gate.countDown();
                remover.join(10_000);
                writer.join(10_000);
                assertThat(writeFailure.get()).as("the in-flight write was answered").isNull();
                assertThat(gated.store.copy(4096, 4099)).containsExactly(9, 9, 9);
                assertThatThrownBy(() -> client.read(0, ByteBuffer.allocate(1))).isInstanceOf(NbdDisconnectedException.class);
                other.write(0, ByteBuffer.wrap(new byte[] {1}));
                assertThat(server.exportNames()).containsExactly("other");
                assertThat(server.removeExport("gated")).isFalse();
                assertThatThrownBy(() -> NbdClient.builder().unix(socket).exportName("gated").connect())
                    .isInstanceOf(NbdException.class).hasMessageContaining("no export 'gated'");
            }
        }
    }

    @Test
    void handshakeTimeoutAndConnectionLimit() throws Exception
    {
        try (NbdServer server = new NbdServer(2, Duration.ofMillis(300)))
        {
            server.addExport(new BlockStoreExport("x", new HeapStore(new byte[4096], false)));
            final InetSocketAddress address = server.listenTcp(0);
            assertThat(address.getAddress().isLoopbackAddress()).isTrue();
            try (RawNbd idle = new RawNbd(address, 5000))
            {
                idle.greeting();
                final long start = System.nanoTime();
                assertThat(idle.closedByServer()).as("silent client is dropped").isTrue();
                assertThat(System.nanoTime() - start).isLessThan(TimeUnit.SECONDS.toNanos(3));
            }
            final long idleGone = System.currentTimeMillis() + 5000;
            while (server.connectionCount() > 0 && System.currentTimeMillis() < idleGone)
            {
                Thread.sleep(5);
            }
            try (RawNbd first = new RawNbd(address, 5000); RawNbd second = new RawNbd(address, 5000))
            {
                first.open("x", true);
                second.open("x", false);
                final long deadline = System.currentTimeMillis() + 5000;
                while (server.connectionCount() < 2 && System.currentTimeMillis() < deadline)
                {
                    Thread.sleep(5);
                }
                try (RawNbd third = new RawNbd(address, 5000))
                {
                    assertThat(third.closedByServer()).as("connection beyond the limit is closed").isTrue();
                }
                first.request(0, NbdProtocol.CMD_FLUSH, 1, 0, 0, null);
                assertThat(first.readReply(java.util.Map.of()).error).isZero();
            }
        }
    }

    @Test
    void pipelinedAsyncWritesFromManyThreadsAreAllAnsweredAndRecorded() throws Exception
    {
        final long seed = System.nanoTime();
        final int size = 8 << 20;
        final HeapStore store = new HeapStore(new byte[size], false);
        final BitSetBitmap recorded = new BitSetBitmap(4096, size);
        final ScheduledExecutorService delays = Executors.newScheduledThreadPool(3);
        final ExecutorService completer = Executors.newFixedThreadPool(4);
        final ExecutorService clients = Executors.newFixedThreadPool(8);
        try (NbdServer server = new NbdServer())
        {
            // Completions arrive out of order, from other threads, after random delays.
            final SplittableRandom delayRandom = new SplittableRandom(seed);
            final RecordingExport export = new RecordingExport(new BlockStoreExport("p", store), recorded, "p",
                command -> delays.schedule(() -> completer.execute(command), nextDelay(delayRandom), TimeUnit.MICROSECONDS));
            server.addExport(export);
            final Path socket = server.listenUnix(dir.resolve("p.sock"));
            final BitSet expected = new BitSet();
            final byte[] model = new byte[size];
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("p").connections(4).connect())
            {
                final List<Future<BitSet>> futures = new ArrayList<>();
                for (int t = 0; t < 8; t++)
                {
                    final int thread = t;
                    final SplittableRandom random = new SplittableRandom(seed + t);
                    futures.add(clients.submit(() ->
                    {
                        final BitSet mine = new BitSet();
                        final int base = thread * (size / 8);
                        for (int i = 0; i < 300; i++)
                        {
                            final int length = 1 + random.nextInt(3 * 4096);
                            final int offset = base + random.nextInt(size / 8 - length);
                            final byte[] data = new byte[length];
                            random.nextBytes(data);
                            client.write(offset, ByteBuffer.wrap(data));
                            System.arraycopy(data, 0, model, offset, length);
                            mine.set(offset / 4096, (offset + length - 1) / 4096 + 1);
                        }
                        return mine;
                    }));
                }
                for (final Future<BitSet> future : futures)
                {
                    expected.or(future.get(50, TimeUnit.SECONDS));
                }
                client.flush();
                final ByteBuffer back = ByteBuffer.allocate(size);
                client.read(0, back);
                assertThat(java.util.Arrays.mismatch(back.array(), model)).as("seed %d", seed).isEqualTo(-1);
            }
            assertThat(recorded.snapshot()).as("seed %d", seed).isEqualTo(expected);
            assertThat(export.readerThreads).hasSize(4);
        }
        finally
        {
            clients.shutdownNow();
            delays.shutdownNow();
            completer.shutdownNow();
        }
    }

    private static long nextDelay(final SplittableRandom random)
    {
        synchronized (random)
        {
            return random.nextInt(300);
        }
    }

    @Test
    void flushOnOneConnectionCoversWritesCompletedOnAll() throws Exception
    {
        final List<String> events = java.util.Collections.synchronizedList(new ArrayList<>());
        final HeapStore memory = new HeapStore(new byte[1 << 20], false);
        final dev.tidemark.io.BlockStore tracking = new ForwardingBlockStore(memory)
        {
            private final Set<Long> unflushed = java.util.concurrent.ConcurrentHashMap.newKeySet();

            @Override
            public void write(final long offset, final ByteBuffer src) throws IOException
            {
                super.write(offset, src);
                unflushed.add(offset);
            }

            @Override
            public void flush()
            {
                events.add("flush covering " + unflushed.size());
                unflushed.clear();
            }
        };
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("m", tracking));
            final Path socket = server.listenUnix(dir.resolve("m.sock"));
            try (NbdClient writer = NbdClient.builder().unix(socket).exportName("m").connections(4).connect();
                NbdClient flusher = NbdClient.builder().unix(socket).exportName("m").connections(1).connect())
            {
                assertThat(writer.transmissionFlags() & NbdProtocol.TF_CAN_MULTI_CONN).isNotZero();
                for (int i = 0; i < 8; i++)
                {
                    writer.write(i * 4096L, ByteBuffer.wrap(new byte[] {(byte)i}));
                }
                flusher.flush();
                assertThat(events).containsExactly("flush covering 8");
            }
        }
    }

    @Test
    void servesWritesAndReadsOfThe32MiBMaximum() throws Exception
    {
        final int max = NbdProtocol.MAX_PAYLOAD;
        final HeapStore store = new HeapStore(new byte[max + 4096], false);
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("big", store));
            final InetSocketAddress address = server.listenTcp(0);
            try (RawNbd raw = new RawNbd(address, 20_000))
            {
                raw.open("big", true);
                final byte[] data = new byte[max];
                new SplittableRandom(8).nextBytes(data);
                raw.request(NbdProtocol.CMD_FLAG_FUA, NbdProtocol.CMD_WRITE, 1, 4096, max, data);
                assertThat(raw.readReply(java.util.Map.of()).error).isZero();
                raw.request(NbdProtocol.CMD_FLAG_DF, NbdProtocol.CMD_READ, 2, 4096, max, null);
                final RawNbd.Reply reply = raw.readReply(java.util.Map.of(2L, (long)max));
                assertThat(reply.error).isZero();
                assertThat(reply.dataOffset).isEqualTo(4096);
                assertThat(java.util.Arrays.mismatch(reply.data, data)).isEqualTo(-1);
                raw.request(0, NbdProtocol.CMD_READ, 3, 0, max + 1L, null);
                assertThat(raw.readReply(java.util.Map.of()).error).isEqualTo(NbdProtocol.EOVERFLOW);
            }
        }
    }

    @Test
    void rejectsBadConfiguration() throws IOException
    {
        assertThatThrownBy(() -> new NbdServer(0, Duration.ofSeconds(1))).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new NbdServer(1, Duration.ZERO)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new DirtyBitmapContext("", (o, l, v) -> { })).isInstanceOf(IllegalArgumentException.class);
        try (NbdServer server = new NbdServer())
        {
            assertThatThrownBy(() -> server.addExport(new BlockStoreExport("n".repeat(4097), new HeapStore(new byte[1], false))))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("4096");
        }
    }
}
