package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.io.tls.TlsChannel;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.io.tls.TlsException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static dev.tidemark.io.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * NBD over TLS between our server and our client, and every refusal of the issue, each followed by a good
 * client to show the server still serves; methods run one at a time on JUnit's thread against servers
 * shared by the class.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(120)
class NbdTlsTest
{
    private static final int SIZE = 4 << 20;

    private TestPki pki;
    private byte[] content;
    private TlsServers servers;
    private InetSocketAddress x509Address;
    private InetSocketAddress pskAddress;

    @BeforeAll
    void start(@TempDir final Path dir) throws Exception
    {
        pki = TestPki.create(dir);
        content = new byte[SIZE];
        new SplittableRandom(12).nextBytes(content);
        servers = new TlsServers(pki, null);
        servers.x509.addExport(new BlockStoreExport("disk", new HeapStore(content, false)));
        x509Address = servers.x509.listenTcp(0);
        servers.psk.addExport(new BlockStoreExport("disk", new HeapStore(content, false)));
        pskAddress = servers.psk.listenTcp(0);
    }

    @AfterAll
    void stop() throws Exception
    {
        servers.close();
    }

    @BeforeEach
    void clearRefusals()
    {
        servers.refusals.clear();
    }

    private NbdClient x509Client(final Path dir) throws IOException
    {
        return NbdClient.builder().tcp("localhost", x509Address.getPort()).exportName("disk").connections(1)
            .tls(TlsCredentials.x509(dir, TlsCredentials.Endpoint.CLIENT, true)).connect();
    }

    private NbdClient pskClient(final Path dir) throws IOException
    {
        return NbdClient.builder().tcp("127.0.0.1", pskAddress.getPort()).exportName("disk").connections(1)
            .tls(TlsCredentials.psk(dir, TlsCredentials.Endpoint.CLIENT, TestPki.PSK_USER)).connect();
    }

    /** Reads 64 KiB at a random offset and compares: the server still serves a good client. */
    private void assertServes(final NbdClient client) throws IOException
    {
        final int at = 4096 * new SplittableRandom().nextInt(SIZE / 4096 - 16);
        final ByteBuffer got = ByteBuffer.allocate(65536);
        client.read(at, got);
        assertThat(got.array()).isEqualTo(java.util.Arrays.copyOfRange(content, at, at + 65536));
    }

    private void assertX509StillServes() throws IOException
    {
        try (NbdClient good = x509Client(pki.client))
        {
            assertServes(good);
        }
    }

    private NbdRefusal nextRefusal() throws InterruptedException
    {
        final NbdRefusal refusal = servers.refusals.poll(10, TimeUnit.SECONDS);
        assertThat(refusal).as("the server reported a refusal").isNotNull();
        return refusal;
    }

    @Test
    void x509ClientReadsAndWritesOverTls13() throws Exception
    {
        try (NbdClient client = x509Client(pki.client))
        {
            assertServes(client);
            final byte[] block = new byte[1 << 20];
            new SplittableRandom(3).nextBytes(block);
            client.write(SIZE - block.length, ByteBuffer.wrap(block));
            client.flush();
            final ByteBuffer back = ByteBuffer.allocate(block.length);
            client.read(SIZE - block.length, back);
            assertThat(back.array()).isEqualTo(block);
            // Put the original back: other tests compare against it.
            client.write(SIZE - block.length, ByteBuffer.wrap(content, SIZE - block.length, block.length));
            client.flush();
        }
        // The protocol: GnuTLS clients prefer TLS 1.3, and so does JSSE; the server must offer it.
        try (SocketChannel channel = SocketChannel.open(x509Address))
        {
            startTls(channel);
            final TlsChannel tls = TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true)
                .connect(channel, "localhost");
            assertThat(tls.describe()).startsWith("TLSv1.3");
            tls.close();
        }
    }

    @Test
    void pskClientReadsOverTls() throws Exception
    {
        try (NbdClient client = pskClient(pki.pskClient))
        {
            assertServes(client);
        }
    }

    @Test
    void plaintextClientIsRefusedWithTlsRequired() throws Exception
    {
        assertThatThrownBy(() -> NbdClient.builder().tcp("127.0.0.1", x509Address.getPort()).exportName("disk").connect())
            .isInstanceOf(NbdException.class).hasMessageContaining("requires TLS");
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_REQUIRED);
        assertX509StillServes();
    }

    @Test
    void everyOptionBeforeStartTlsGetsTlsRequiredAndNothingIsListed() throws Exception
    {
        try (RawNbd raw = new RawNbd(x509Address, 5000))
        {
            raw.greeting();
            raw.send(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).array());
            for (final int option : new int[] {OPT_LIST, OPT_STRUCTURED_REPLY, OPT_INFO, OPT_GO, OPT_LIST_META_CONTEXT,
                OPT_SET_META_CONTEXT, 99})
            {
                final byte[] data = option == OPT_INFO || option == OPT_GO ? RawNbd.goData("disk")
                    : option == OPT_LIST_META_CONTEXT || option == OPT_SET_META_CONTEXT
                        ? RawNbd.metaData("disk", "base:allocation") : new byte[0];
                raw.sendOption(IHAVEOPT, option, data.length, data);
                final List<RawNbd.OptionReply> replies = raw.readOptionReplies(option);
                assertThat(replies).as("option %d gets one reply and no export data", option).hasSize(1);
                assertThat(replies.get(0).type).isEqualTo(REP_ERR_TLS_REQD);
            }
            raw.sendOption(IHAVEOPT, OPT_ABORT, 0, new byte[0]);
            assertThat(raw.readOptionReply().type).isEqualTo(REP_ACK);
        }
        try (RawNbd raw = new RawNbd(x509Address, 5000))
        {
            // EXPORT_NAME has no error reply: the server closes instead of opening the export in clear.
            raw.greeting();
            raw.send(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).array());
            final byte[] name = "disk".getBytes(java.nio.charset.StandardCharsets.UTF_8);
            raw.sendOption(IHAVEOPT, OPT_EXPORT_NAME, name.length, name);
            assertThat(raw.socket.getInputStream().read()).isEqualTo(-1);
        }
        assertX509StillServes();
    }

    @Test
    void clientSignedByAnotherCaIsRefused() throws Exception
    {
        assertThatThrownBy(() -> x509Client(pki.otherClient)).isInstanceOf(NbdException.class);
        // JSSE's client withholds a certificate the server's CA list does not name, so the server sees none.
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_PEER_NOT_TRUSTED);
        assertX509StillServes();
    }

    @Test
    void expiredClientCertificateIsRefused() throws Exception
    {
        assertThatThrownBy(() -> x509Client(pki.expiredClient)).isInstanceOf(NbdException.class);
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_PEER_NOT_TRUSTED);
        assertX509StillServes();
    }

    @Test
    void clientWithoutCertificateIsRefused() throws Exception
    {
        final Path noCert = pki.root.resolve("ca-only");
        java.nio.file.Files.createDirectories(noCert);
        java.nio.file.Files.copy(pki.client.resolve("ca-cert.pem"), noCert.resolve("ca-cert.pem"));
        assertThatThrownBy(() -> x509Client(noCert)).isInstanceOf(NbdException.class);
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_PEER_NOT_TRUSTED);
        assertX509StillServes();
    }

    @Test
    void clientNotInAuthzIsRefusedWithAReason() throws Exception
    {
        assertThatThrownBy(() -> x509Client(pki.intruder)).isInstanceOf(NbdException.class)
            .hasMessageContaining("not authorized");
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_NOT_AUTHORIZED);
        assertX509StillServes();
    }

    @Test
    void wrongPskIsRefused() throws Exception
    {
        assertThatThrownBy(() -> pskClient(pki.pskWrong)).isInstanceOf(NbdException.class)
            .hasCauseInstanceOf(TlsException.class);
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_PSK_MISMATCH);
        try (NbdClient good = pskClient(pki.pskClient))
        {
            assertServes(good);
        }
    }

    @Test
    void garbageInTheTlsHandshakeIsRefused() throws Exception
    {
        try (SocketChannel channel = SocketChannel.open(x509Address))
        {
            startTls(channel);
            final byte[] garbage = new byte[300];
            new SplittableRandom(5).nextBytes(garbage);
            garbage[0] = 0x16; // looks like a handshake record, then nonsense
            channel.write(ByteBuffer.wrap(garbage));
            assertThat(readUntilClosed(channel)).as("server closed the connection").isTrue();
        }
        assertThat(nextRefusal()).isEqualTo(NbdRefusal.TLS_HANDSHAKE);
        assertX509StillServes();
    }

    @Test
    void clientThatNeverFinishesTheHandshakeIsDroppedAtTheTimeout() throws Exception
    {
        try (NbdServer strict = new NbdServer(16, Duration.ofSeconds(2)))
        {
            strict.requireTls(TlsCredentials.x509(pki.server, TlsCredentials.Endpoint.SERVER, true), null);
            strict.setListener((refusal, remote, detail) -> servers.refusals.add(refusal));
            strict.addExport(new BlockStoreExport("disk", new HeapStore(content, true)));
            final InetSocketAddress address = strict.listenTcp(0);
            try (SocketChannel channel = SocketChannel.open(address))
            {
                startTls(channel);
                final long started = System.nanoTime();
                assertThat(readUntilClosed(channel)).isTrue();
                final long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
                assertThat(waited).as("dropped after the 2 s handshake timeout").isBetween(1000L, 15000L);
            }
            assertThat(nextRefusal()).isEqualTo(NbdRefusal.HANDSHAKE_TIMEOUT);
        }
        assertX509StillServes();
    }

    @Test
    void startTlsOnAServerWithoutTlsIsRefusedWithPolicy() throws Exception
    {
        try (NbdServer plain = new NbdServer())
        {
            plain.addExport(new BlockStoreExport("disk", new HeapStore(new byte[4096], true)));
            final InetSocketAddress address = plain.listenTcp(0);
            try (RawNbd raw = new RawNbd(address, 5000))
            {
                raw.greeting();
                raw.send(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).array());
                raw.sendOption(IHAVEOPT, OPT_STARTTLS, 0, new byte[0]);
                assertThat(raw.readOptionReply().type).isEqualTo(REP_ERR_POLICY);
            }
            assertThatThrownBy(() -> NbdClient.builder().tcp("localhost", address.getPort()).exportName("disk")
                .tls(TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true)).connect())
                .isInstanceOf(NbdException.class).hasMessageContaining("refused STARTTLS");
        }
    }

    /** Greeting, flags and STARTTLS in clear; returns once the server acknowledged STARTTLS. */
    private static void startTls(final SocketChannel channel) throws IOException
    {
        final ByteBuffer greeting = ByteBuffer.allocate(18);
        while (greeting.hasRemaining())
        {
            assertThat(channel.read(greeting)).isNotNegative();
        }
        channel.write(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).flip());
        channel.write(ByteBuffer.allocate(16).putLong(IHAVEOPT).putInt(OPT_STARTTLS).putInt(0).flip());
        final ByteBuffer reply = ByteBuffer.allocate(20);
        while (reply.hasRemaining())
        {
            assertThat(channel.read(reply)).isNotNegative();
        }
        assertThat(reply.getInt(12)).isEqualTo(REP_ACK);
    }

    /** @return true once the server closed the connection (bytes it sends before, such as an alert, are skipped). */
    private static boolean readUntilClosed(final SocketChannel channel) throws IOException
    {
        final ByteBuffer sink = ByteBuffer.allocate(4096);
        try
        {
            while (channel.read(sink.clear()) >= 0)
            {
                // Skip alerts.
            }
        }
        catch (final IOException reset)
        {
            // A reset is a close too.
        }
        return true;
    }
}
