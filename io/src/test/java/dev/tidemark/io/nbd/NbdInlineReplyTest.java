package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.DelayedCompleter;
import dev.tidemark.io.testing.DiscardingExport;
import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.io.tls.TlsCredentials;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static dev.tidemark.io.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Replies written inline by the completing thread, driven from JUnit's thread, a request-sender thread per
 * pipelining client and the test exports' completing threads: taken on plain connections (TCP and Unix), never
 * on TLS ones, whole when sends go out in part (the reply thread writes the rest first), and never onto another
 * connection's socket when connections close while completions fire.
 */
@Timeout(180)
class NbdInlineReplyTest
{
    private static final int BLOCK = 4096;
    private static final int SIZE = 64 << 20;

    @TempDir
    Path dir;

    @Test
    void plainConnectionsOverTcpAndUnixReplyInline() throws Exception
    {
        assertThat(NonBlockingSend.AVAILABLE).as("libc send bound").isTrue();
        final ExecutorService ring = Executors.newSingleThreadExecutor();
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new RecordingExport(new BlockStoreExport("d", new HeapStore(SIZE)),
                new BitSetBitmap(BLOCK, SIZE), "d", ring));
            final InetSocketAddress address = server.listenTcp(0);
            final Path socket = server.listenUnix(dir.resolve("nbd.sock"));
            final int writes = 200;

            long before = server.inlineReplies();
            try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("d")
                .connections(1).connect())
            {
                writeAndCheck(client, writes, 1);
            }
            // QD1, an idle socket and a free send lock: every write's reply goes out from the completing thread.
            assertThat(server.inlineReplies() - before).as("inline replies over TCP").isEqualTo(writes);

            before = server.inlineReplies();
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("d").connections(1).connect())
            {
                writeAndCheck(client, writes, 2);
            }
            assertThat(server.inlineReplies() - before).as("inline replies over a Unix socket").isEqualTo(writes);

            // Turned off (what -Dtidemark.nbd.inlineReply=false does): the reply thread writes every reply.
            server.inlineSender(null);
            before = server.inlineReplies();
            try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("d")
                .connections(1).connect())
            {
                writeAndCheck(client, writes, 3);
            }
            assertThat(server.inlineReplies()).as("inline replies when turned off").isEqualTo(before);
        }
        finally
        {
            ring.shutdownNow();
        }
    }

    @Test
    void tlsConnectionsNeverReplyInline() throws Exception
    {
        final TestPki pki = TestPki.create(dir);
        final ExecutorService ring = Executors.newSingleThreadExecutor();
        try (NbdServer server = new NbdServer(16, Duration.ofSeconds(60)))
        {
            server.requireTls(TlsCredentials.x509(pki.server, TlsCredentials.Endpoint.SERVER, true),
                TestPki.CLIENT_DN::equals);
            server.addExport(new RecordingExport(new BlockStoreExport("d", new HeapStore(SIZE)),
                new BitSetBitmap(BLOCK, SIZE), "d", ring));
            final InetSocketAddress address = server.listenTcp(0);
            try (NbdClient client = NbdClient.builder().tcp("localhost", address.getPort()).exportName("d")
                .connections(1).tls(TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true)).connect())
            {
                writeAndCheck(client, 100, 4);
            }
            assertThat(server.inlineReplies()).as("inline replies over TLS").isZero();
        }
        finally
        {
            ring.shutdownNow();
        }
    }

    private static void writeAndCheck(final NbdClient client, final int writes, final int fill) throws Exception
    {
        for (int i = 0; i < writes; i++)
        {
            final byte[] data = new byte[BLOCK];
            java.util.Arrays.fill(data, (byte)(fill + i));
            client.write((long)i * BLOCK, ByteBuffer.wrap(data));
        }
        for (int i = 0; i < writes; i++)
        {
            final ByteBuffer back = ByteBuffer.allocate(BLOCK);
            client.read((long)i * BLOCK, back);
            assertThat(back.array()).as("block %d", i).containsOnly((byte)(fill + i));
        }
    }

    @Test
    void partialInlineSendsReachTheClientWholeExactlyOnce() throws Exception
    {
        assertThat(NonBlockingSend.AVAILABLE).as("libc send bound").isTrue();
        final long seed = System.nanoTime();
        final AtomicLong calls = new AtomicLong();
        final AtomicInteger partials = new AtomicInteger();
        final AtomicInteger refusals = new AtomicInteger();
        // Per call, from the seed: nothing sent (as EAGAIN), 1-15 bytes sent, or a real attempt at all 16.
        final NbdServer.InlineSender flaky = (fd, buffer, length) ->
        {
            final long pattern = new SplittableRandom(seed + calls.getAndIncrement()).nextLong();
            final int kind = Math.floorMod(pattern, 4);
            if (kind == 0)
            {
                refusals.incrementAndGet();
                return -1;
            }
            if (kind == 1)
            {
                final long sent = NonBlockingSend.sendNow(fd, buffer, 1 + Math.floorMod(pattern >> 8, 15));
                if (sent > 0)
                {
                    partials.incrementAndGet();
                }
                return sent;
            }
            return NonBlockingSend.sendNow(fd, buffer, length);
        };
        // Completions spread over a millisecond: the reply queue is often empty, so many replies try the inline way.
        final ScatteringExport export = new ScatteringExport(seed, 4, 1_000);
        final int requests = 40 * NbdConnection.MAX_IN_FLIGHT;
        final SplittableRandom random = new SplittableRandom(seed + 1);
        final Map<Long, Integer> expected = new HashMap<>();
        final List<long[]> plan = new ArrayList<>();
        for (long cookie = 1; cookie <= requests; cookie++)
        {
            final long offset = (long)random.nextInt(SIZE / BLOCK) * BLOCK;
            // One in ten is empty: the reader completes those itself, inline too.
            final long length = random.nextInt(10) == 0 ? 0 : BLOCK;
            plan.add(new long[] {cookie, offset, length});
            expected.put(cookie, length == 0 ? OK : ScatteringExport.errorAt(offset));
        }
        try (NbdServer server = new NbdServer())
        {
            server.inlineSender(flaky);
            server.addExport(export);
            final InetSocketAddress address = server.listenTcp(0);
            try (RawNbd raw = new RawNbd(address, 30_000))
            {
                raw.open(export.name(), false);
                final AtomicReference<Throwable> senderFailure = new AtomicReference<>();
                final Thread sender = new Thread(() ->
                {
                    try
                    {
                        for (final long[] request : plan)
                        {
                            raw.request(0, CMD_WRITE, request[0], request[1], request[2], new byte[(int)request[2]]);
                        }
                    }
                    catch (final Throwable ex)
                    {
                        senderFailure.set(ex);
                    }
                }, "inline-test-sender");
                sender.setDaemon(true);
                sender.start();
                final Map<Long, Integer> answered = new HashMap<>();
                for (int n = 0; n < requests; n++)
                {
                    // Fails on a torn reply: the next magic would be out of place.
                    final RawNbd.Reply reply = raw.readReply(Map.of());
                    assertThat(answered.put(reply.cookie, reply.error)).as("cookie %d answered twice, seed %d",
                        reply.cookie, seed).isNull();
                }
                sender.join(10_000);
                assertThat(senderFailure.get()).isNull();
                assertThat(answered).as("seed %d", seed).isEqualTo(expected);
                raw.request(0, CMD_FLUSH, requests + 1L, 0, 0, null);
                final RawNbd.Reply last = raw.readReply(Map.of());
                assertThat(last.cookie).as("nothing after the last reply, seed %d", seed).isEqualTo(requests + 1L);
            }
            assertThat(export.unexpected()).as("a completing thread failed").isNull();
            // The seam was used every way (about a quarter of the attempts each; there are hundreds).
            assertThat(partials.get()).as("partial sends handed over, seed %d", seed).isGreaterThanOrEqualTo(10);
            assertThat(refusals.get()).as("sends that went nowhere, seed %d", seed).isGreaterThanOrEqualTo(10);
            assertThat(server.inlineReplies()).as("whole inline replies, seed %d", seed).isGreaterThanOrEqualTo(10);
        }
        finally
        {
            export.close();
        }
    }

    @Test
    void connectionsClosedWhileCompletionsFireNeverReplyOnAnother() throws Exception
    {
        assertThat(NonBlockingSend.AVAILABLE).as("libc send bound").isTrue();
        final long seed = System.nanoTime();
        // Completions come up to 3 ms late, so many fire after their connection closed and while the next opens.
        final ScatteringExport export = new ScatteringExport(seed, 4, 3_000);
        final AtomicReference<Throwable> leaked = new AtomicReference<>();
        final Thread.UncaughtExceptionHandler previous = Thread.getDefaultUncaughtExceptionHandler();
        Thread.setDefaultUncaughtExceptionHandler((thread, ex) -> leaked.compareAndSet(null, ex));
        final SplittableRandom random = new SplittableRandom(seed);
        int rounds = 0;
        try (NbdServer server = new NbdServer())
        {
            server.addExport(export);
            final InetSocketAddress address = server.listenTcp(0);
            final long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(4);
            long cookieBase = 1L << 32;
            while (System.nanoTime() < until || rounds < 40)
            {
                rounds++;
                try
                {
                    final List<RawNbd> victims = new ArrayList<>();
                    for (int v = 0; v < 3; v++)
                    {
                        final RawNbd victim = new RawNbd(address, 30_000);
                        victims.add(victim);
                        victim.open(export.name(), false);
                        for (int i = 0; i < 40; i++)
                        {
                            victim.request(0, CMD_WRITE, cookieBase++, (long)random.nextInt(SIZE / BLOCK) * BLOCK, BLOCK,
                                new byte[BLOCK]);
                        }
                    }
                    if (rounds % 2 == 0)
                    {
                        server.forceCloseConnections();
                    }
                    else
                    {
                        for (final RawNbd victim : victims)
                        {
                            // A reset, not a clean close.
                            victim.socket.setSoLinger(true, 0);
                            victim.close();
                        }
                    }
                    // Likely to get a descriptor number a victim just gave up, while its completions still fire.
                    try (RawNbd witness = new RawNbd(address, 30_000))
                    {
                        witness.open(export.name(), false);
                        final Set<Long> own = new HashSet<>();
                        for (int i = 0; i < 40; i++)
                        {
                            final long cookie = cookieBase++;
                            own.add(cookie);
                            witness.request(0, CMD_WRITE, cookie, (long)random.nextInt(SIZE / BLOCK) * BLOCK, BLOCK,
                                new byte[BLOCK]);
                        }
                        final Set<Long> answered = new HashSet<>();
                        for (int i = 0; i < 40; i++)
                        {
                            final RawNbd.Reply reply = witness.readReply(Map.of());
                            assertThat(own).as("round %d: reply of another connection, seed %d", rounds, seed)
                                .contains(reply.cookie);
                            assertThat(answered.add(reply.cookie)).as("cookie %d twice", reply.cookie).isTrue();
                        }
                        witness.request(0, CMD_DISC, cookieBase++, 0, 0, null);
                        assertThat(witness.in.read()).as("round %d: a byte after the witness's replies, seed %d", rounds,
                            seed).isEqualTo(-1);
                    }
                    for (final RawNbd victim : victims)
                    {
                        victim.close();
                    }
                }
                catch (final java.io.IOException ex)
                {
                    // The test's own sockets share the descriptor numbers: stray reply bytes also break those.
                    throw new AssertionError("round " + rounds + ": a connection broke, seed " + seed, ex);
                }
            }
            // Every connection drains (its permits come back) and ends well before the 30 s drain limit.
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
            while (server.connectionCount() > 0 && System.nanoTime() < deadline)
            {
                Thread.sleep(10);
            }
            assertThat(server.connectionCount()).as("connections still draining after %d rounds", rounds).isZero();
        }
        finally
        {
            Thread.setDefaultUncaughtExceptionHandler(previous);
            export.close();
        }
        assertThat(export.unexpected()).as("a completing thread failed").isNull();
        assertThat(leaked.get()).as("an exception escaped a server thread").isNull();
    }

    /**
     * Completes modifying requests on a pool of threads after random delays, with ENOSPC for some offsets, keeping
     * no data; thread-safe.
     */
    private static final class ScatteringExport extends DiscardingExport
    {
        private final DelayedCompleter completer;

        ScatteringExport(final long seed, final int threads, final int maxDelayMicros)
        {
            super("scatter", SIZE, EnumSet.of(Feature.FLUSH));
            completer = new DelayedCompleter(seed, threads, maxDelayMicros);
        }

        Throwable unexpected()
        {
            return completer.unexpected();
        }

        static int errorAt(final long offset)
        {
            return offset / BLOCK % 7 == 3 ? ENOSPC : OK;
        }

        void close()
        {
            completer.close();
        }

        @Override
        protected void modify(final long offset, final NbdCompletion done)
        {
            completer.later(done, offset < 0 ? OK : errorAt(offset));
        }
    }
}
