package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.io.tls.TlsChannel;
import dev.tidemark.io.tls.TlsCredentials;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;

import static dev.tidemark.io.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

/**
 * A client that stops reading its replies must delay only itself: the replies of a disk's writes are completed
 * on one "ring" thread shared by every connection (as the engine's write ring does), and that thread must never
 * wait for a socket. Runs on JUnit's thread plus client A's sender thread, client B's writer thread and the ring
 * thread; A's socket is read by JUnit's thread and written by the sender, never by two threads at once each way.
 */
@Timeout(120)
class NbdReplyIsolationTest
{
    private static final int MIB = 1 << 20;
    private static final int PAIRS = 64;
    private static final int SIZE = 48 * MIB;
    /** Any B write slower than this fails the test (a watchdog, not a performance goal). */
    private static final long BOUND_MILLIS = 2_000;

    @TempDir
    Path dir;

    @Test
    void aPlainClientThatStopsReadingDelaysNoOtherConnectionOfTheSameDisk() throws Exception
    {
        final Fixture fixture = new Fixture();
        try (NbdServer server = new NbdServer())
        {
            final InetSocketAddress address = fixture.serve(server);
            fixture.run(() -> Transport.plain(address),
                () -> NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("d").connections(1).connect());
        }
        finally
        {
            fixture.close();
        }
    }

    @Test
    void aTlsClientThatStopsReadingDelaysNoOtherConnectionOfTheSameDisk() throws Exception
    {
        final TestPki pki = TestPki.create(dir);
        final Fixture fixture = new Fixture();
        try (NbdServer server = new NbdServer(16, Duration.ofSeconds(60)))
        {
            server.requireTls(TlsCredentials.x509(pki.server, TlsCredentials.Endpoint.SERVER, true),
                TestPki.CLIENT_DN::equals);
            final InetSocketAddress address = fixture.serve(server);
            fixture.run(() -> Transport.tls(address, TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true)),
                () -> NbdClient.builder().tcp("localhost", address.getPort()).exportName("d").connections(1)
                    .tls(TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true)).connect());
        }
        finally
        {
            fixture.close();
        }
    }

    private interface Opener<T>
    {
        T open() throws Exception;
    }

    /** The disk, its ring thread and the two clients of one test. */
    private static final class Fixture
    {
        final long seed = System.nanoTime();
        final byte[] initial = new byte[SIZE];
        // One thread completes every write of the disk, a little later, as the ring's group commit does.
        final ScheduledExecutorService ring = Executors.newSingleThreadScheduledExecutor();
        final ExecutorService bThread = Executors.newSingleThreadExecutor();

        InetSocketAddress serve(final NbdServer server) throws IOException
        {
            new SplittableRandom(seed).nextBytes(initial);
            server.addExport(new RecordingExport(new BlockStoreExport("d", new HeapStore(initial.clone(), false)),
                new BitSetBitmap(4096, SIZE), "d", command -> ring.schedule(command, 2, TimeUnit.MILLISECONDS)));
            return server.listenTcp(0);
        }

        void close()
        {
            bThread.shutdownNow();
            ring.shutdownNow();
        }

        void run(final Opener<Transport> openA, final Opener<NbdClient> openB) throws Exception
        {
            final AtomicReference<Throwable> senderFailure = new AtomicReference<>();
            try (Transport a = openA.open(); NbdClient b = openB.open())
            {
                // A pipelines 64 MiB of reads with writes between them and reads no reply until B is done: its
                // socket buffers fill while the ring is completing its writes.
                final Thread sender = new Thread(() ->
                {
                    try
                    {
                        for (int i = 0; i < PAIRS; i++)
                        {
                            a.request(CMD_READ, 2L * i, (long)(i % 32) * MIB, MIB, null);
                            a.request(CMD_WRITE, 2L * i + 1, 40L * MIB + 4096L * i, 4096, new byte[4096]);
                        }
                    }
                    catch (final Throwable ex)
                    {
                        senderFailure.set(ex);
                    }
                }, "client-a-sender");
                sender.setDaemon(true);
                sender.start();
                Thread.sleep(300);

                // B keeps writing to the same disk; every write must complete within the bound.
                long worst = 0;
                int writes = 0;
                final long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(1_500);
                while (System.nanoTime() < until || writes < 100)
                {
                    final long at = 44L * MIB + 4096L * (writes % 512);
                    final long start = System.nanoTime();
                    final Future<?> write = bThread.submit(() ->
                    {
                        b.write(at, ByteBuffer.wrap(new byte[4096]));
                        return null;
                    });
                    try
                    {
                        write.get(BOUND_MILLIS, TimeUnit.MILLISECONDS);
                    }
                    catch (final TimeoutException ex)
                    {
                        fail("B's write %d did not complete within %d ms while A was not reading (seed %d)", writes,
                            BOUND_MILLIS, seed);
                    }
                    worst = Math.max(worst, System.nanoTime() - start);
                    writes++;
                }
                assertThat(TimeUnit.NANOSECONDS.toMillis(worst)).as("worst of %d B writes", writes)
                    .isLessThan(BOUND_MILLIS);

                // A resumes reading and gets every reply exactly once, with the right data.
                final Set<Long> answered = new HashSet<>();
                for (int n = 0; n < 2 * PAIRS; n++)
                {
                    final ByteBuffer header = a.readFully(ByteBuffer.allocate(16));
                    assertThat(header.getInt()).isEqualTo(SIMPLE_REPLY_MAGIC);
                    final int error = header.getInt();
                    final long cookie = header.getLong();
                    assertThat(error).as("cookie %d", cookie).isZero();
                    assertThat(answered.add(cookie)).as("cookie %d answered twice", cookie).isTrue();
                    if (cookie % 2 == 0)
                    {
                        final byte[] data = a.readFully(ByteBuffer.allocate(MIB)).array();
                        final int offset = (int)(cookie / 2 % 32) * MIB;
                        assertThat(Arrays.mismatch(data, Arrays.copyOfRange(initial, offset, offset + MIB)))
                            .as("read %d, seed %d", cookie, seed).isEqualTo(-1);
                    }
                }
                sender.join(10_000);
                assertThat(senderFailure.get()).isNull();
                assertThat(answered).hasSize(2 * PAIRS);
            }
        }
    }

    /** A raw NBD client's byte stream, in clear or over TLS; one reading and one writing thread at most. */
    private abstract static class Transport implements AutoCloseable
    {
        final SocketChannel channel;

        Transport(final SocketChannel channel)
        {
            this.channel = channel;
        }

        abstract int read(ByteBuffer dst) throws IOException;

        abstract void write(ByteBuffer src) throws IOException;

        @Override
        public abstract void close() throws IOException;

        static Transport plain(final InetSocketAddress address) throws IOException
        {
            final Transport transport = new Clear(SocketChannel.open(address));
            transport.greetAndSendFlags();
            transport.go();
            return transport;
        }

        static Transport tls(final InetSocketAddress address, final TlsCredentials credentials) throws IOException
        {
            final Clear clear = new Clear(SocketChannel.open(address));
            clear.greetAndSendFlags();
            clear.option(OPT_STARTTLS, new byte[0]);
            final ByteBuffer reply = clear.readFully(ByteBuffer.allocate(20));
            assertThat(reply.getInt(12)).isEqualTo(REP_ACK);
            final Transport transport = new Secure(clear.channel, credentials.connect(clear.channel, "localhost"));
            transport.go();
            return transport;
        }

        ByteBuffer readFully(final ByteBuffer dst) throws IOException
        {
            while (dst.hasRemaining())
            {
                if (read(dst) < 0)
                {
                    throw new EOFException("server closed the connection");
                }
            }
            return dst.flip();
        }

        void greetAndSendFlags() throws IOException
        {
            final ByteBuffer greeting = readFully(ByteBuffer.allocate(18));
            assertThat(greeting.getLong(8)).isEqualTo(IHAVEOPT);
            write(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).flip());
        }

        void option(final int option, final byte[] data) throws IOException
        {
            write(ByteBuffer.allocate(16 + data.length).putLong(IHAVEOPT).putInt(option).putInt(data.length)
                .put(data).flip());
        }

        /** OPT_GO for export "d"; returns once the server acknowledged it. */
        void go() throws IOException
        {
            final byte[] name = "d".getBytes(StandardCharsets.UTF_8);
            option(OPT_GO, ByteBuffer.allocate(4 + name.length + 2).putInt(name.length).put(name).putShort((short)0)
                .array());
            while (true)
            {
                final ByteBuffer header = readFully(ByteBuffer.allocate(20));
                final int type = header.getInt(12);
                readFully(ByteBuffer.allocate(header.getInt(16)));
                if (type == REP_ACK)
                {
                    return;
                }
                assertThat(type).as("GO reply type").isEqualTo(REP_INFO);
            }
        }

        void request(final int type, final long cookie, final long offset, final int length, final byte[] payload)
            throws IOException
        {
            final ByteBuffer request = ByteBuffer.allocate(28 + (payload == null ? 0 : payload.length));
            request.putInt(REQUEST_MAGIC).putShort((short)0).putShort((short)type).putLong(cookie).putLong(offset)
                .putInt(length);
            if (payload != null)
            {
                request.put(payload);
            }
            write(request.flip());
        }
    }

    /** The stream in clear. */
    private static final class Clear extends Transport
    {
        Clear(final SocketChannel channel)
        {
            super(channel);
        }

        @Override
        int read(final ByteBuffer dst) throws IOException
        {
            return channel.read(dst);
        }

        @Override
        void write(final ByteBuffer src) throws IOException
        {
            while (src.hasRemaining())
            {
                channel.write(src);
            }
        }

        @Override
        public void close() throws IOException
        {
            channel.close();
        }
    }

    /** The stream over TLS. */
    private static final class Secure extends Transport
    {
        private final TlsChannel tls;

        Secure(final SocketChannel channel, final TlsChannel tls)
        {
            super(channel);
            this.tls = tls;
        }

        @Override
        int read(final ByteBuffer dst) throws IOException
        {
            return tls.read(dst);
        }

        @Override
        void write(final ByteBuffer src) throws IOException
        {
            tls.write(src);
        }

        @Override
        public void close()
        {
            tls.close();
        }
    }
}
