package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.ExternalTools;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.tls.TlsCredentials;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * NBD over TLS against the real GnuTLS-based programs, with certificates made at test time by certtool:
 * nbdinfo (x509 and PSK), nbdcopy both ways, qemu-img info/convert/compare, and pushes from our client to
 * qemu-nbd with x509 and PSK; methods run one at a time on JUnit's thread.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(180)
class NbdTlsInteropTest
{
    private static final long SIZE = 8L << 20;

    private Path dir;
    private TestPki pki;
    private Path image;
    private RawFileStore roStore;
    private RawFileStore rwStore;
    private TlsServers servers;
    private int x509Port;
    private int pskPort;

    @BeforeAll
    void start(@TempDir final Path tempDir) throws Exception
    {
        dir = tempDir;
        pki = TestPki.create(dir.resolve("pki"));
        image = dir.resolve("image.raw");
        final byte[] bytes = new byte[(int)SIZE];
        new SplittableRandom(77).nextBytes(bytes);
        java.util.Arrays.fill(bytes, 1 << 20, 3 << 20, (byte)0);
        Files.write(image, bytes);
        roStore = RawFileStore.open(image, RawFileStore.Option.READ_ONLY);
        rwStore = RawFileStore.create(dir.resolve("rw.raw"), SIZE);
        servers = new TlsServers(pki, TestPki.PSK_USER::equals);
        servers.x509.addExport(new BlockStoreExport("disk", "test image", roStore, true, java.util.List.of()));
        servers.x509.addExport(new BlockStoreExport("rw", rwStore));
        x509Port = servers.x509.listenTcp(0).getPort();
        servers.psk.addExport(new BlockStoreExport("disk", "test image", roStore, true, java.util.List.of()));
        pskPort = servers.psk.listenTcp(0).getPort();
    }

    @AfterAll
    void stop() throws Exception
    {
        servers.close();
        roStore.close();
        rwStore.close();
    }

    @BeforeEach
    void clear()
    {
        servers.refusals.clear();
    }

    private String x509Uri(final String export, final Path clientDir)
    {
        return "nbds://localhost:" + x509Port + "/" + export + "?tls-certificates=" + clientDir;
    }

    private String qemuObject()
    {
        return "tls-creds-x509,id=tls0,endpoint=client,dir=" + pki.client;
    }

    private String qemuImage(final String export)
    {
        return "driver=nbd,host=localhost,port=" + x509Port + ",export=" + export + ",tls-creds=tls0";
    }

    @Test
    void nbdinfoOverX509() throws Exception
    {
        final String out = ExternalTools.run(60, "nbdinfo", "--json", x509Uri("disk", pki.client));
        assertThat(out).contains("\"export-size\": " + SIZE).contains("\"protocol\": \"newstyle-fixed\"")
            .contains("\"TLS\": true");
    }

    @Test
    void nbdinfoOverPsk() throws Exception
    {
        final String out = ExternalTools.run(60, "nbdinfo", "--json", "nbds://" + TestPki.PSK_USER + "@127.0.0.1:" + pskPort
            + "/disk?tls-psk-file=" + pki.pskClient.resolve("keys.psk"));
        assertThat(out).contains("\"export-size\": " + SIZE).contains("\"TLS\": true");
    }

    @Test
    void nbdcopyReadsAndWritesOverTls() throws Exception
    {
        final Path copy = dir.resolve("copy.raw");
        ExternalTools.run(120, "nbdcopy", x509Uri("disk", pki.client), copy.toString());
        assertThat(Files.mismatch(copy, image)).isEqualTo(-1L);
        ExternalTools.run(120, "nbdcopy", image.toString(), x509Uri("rw", pki.client));
        final ByteBuffer back = ByteBuffer.allocate((int)SIZE);
        rwStore.read(0, back);
        assertThat(back.array()).isEqualTo(Files.readAllBytes(image));
    }

    @Test
    void qemuImgInfoConvertCompareOverTls() throws Exception
    {
        final String info = ExternalTools.run(60, "qemu-img", "info", "--object", qemuObject(), "--image-opts", qemuImage("disk"));
        assertThat(info).contains("virtual size: 8 MiB");
        final Path converted = dir.resolve("converted.raw");
        ExternalTools.run(120, "qemu-img", "convert", "--object", qemuObject(), "--image-opts", qemuImage("disk"),
            "-O", "raw", converted.toString());
        assertThat(Files.mismatch(converted, image)).isEqualTo(-1L);
        ExternalTools.run(120, "qemu-img", "compare", "--object", qemuObject(), "--image-opts", qemuImage("disk"),
            "driver=file,filename=" + image);
    }

    @Test
    void gnutlsClientSignedByAnotherCaIsRefusedAsUntrusted() throws Exception
    {
        assertRefusedAsUntrustedWhileGoodClientsStillConnect(pki.otherClient);
    }

    @Test
    void gnutlsClientWithExpiredCertificateIsRefused() throws Exception
    {
        assertRefusedAsUntrustedWhileGoodClientsStillConnect(pki.expiredClient);
    }

    /** nbdinfo with the certificate in {@code clientDir} fails as untrusted; the right one still connects after. */
    private void assertRefusedAsUntrustedWhileGoodClientsStillConnect(final Path clientDir) throws Exception
    {
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(60, "nbdinfo", x509Uri("disk", clientDir));
        assertThat(result.exit()).isNotZero();
        assertThat(servers.refusals.poll(10, TimeUnit.SECONDS)).isEqualTo(NbdRefusal.TLS_PEER_NOT_TRUSTED);
        ExternalTools.run(60, "nbdinfo", "--size", x509Uri("disk", pki.client));
    }

    @Test
    void gnutlsClientNotInAuthzSeesWhy() throws Exception
    {
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(60, "nbdinfo", x509Uri("disk", pki.intruder));
        // libnbd reports ERR_POLICY as "Operation not supported"; the server's log names the identity.
        assertThat(result.exit()).isNotZero();
        assertThat(result.err()).contains("server replied with error");
        assertThat(servers.refusals.poll(10, TimeUnit.SECONDS)).isEqualTo(NbdRefusal.TLS_NOT_AUTHORIZED);
    }

    @Test
    void gnutlsClientWithWrongPskIsRefused() throws Exception
    {
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(60, "nbdinfo", "nbds://" + TestPki.PSK_USER + "@127.0.0.1:"
            + pskPort + "/disk?tls-psk-file=" + pki.pskWrong.resolve("keys.psk"));
        assertThat(result.exit()).isNotZero();
        assertThat(servers.refusals.poll(10, TimeUnit.SECONDS)).isIn(NbdRefusal.TLS_PSK_MISMATCH);
        ExternalTools.run(60, "nbdinfo", "--size", "nbds://" + TestPki.PSK_USER + "@127.0.0.1:" + pskPort
            + "/disk?tls-psk-file=" + pki.pskClient.resolve("keys.psk"));
    }

    @Test
    void plaintextNbdinfoIsRefused() throws Exception
    {
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(60, "nbdinfo", "nbd://localhost:" + x509Port + "/disk");
        assertThat(result.exit()).isNotZero();
        assertThat(servers.refusals.poll(10, TimeUnit.SECONDS)).isEqualTo(NbdRefusal.TLS_REQUIRED);
    }

    @Test
    void pushToQemuNbdOverX509() throws Exception
    {
        push("tls-creds-x509,id=tls0,endpoint=server,dir=" + pki.server,
            TlsCredentials.x509(pki.client, TlsCredentials.Endpoint.CLIENT, true), "push-x509.raw");
    }

    @Test
    void pushToQemuNbdOverPsk() throws Exception
    {
        push("tls-creds-psk,id=tls0,endpoint=server,dir=" + pki.pskServer,
            TlsCredentials.psk(pki.pskClient, TlsCredentials.Endpoint.CLIENT, TestPki.PSK_USER), "push-psk.raw");
    }

    /** Our NBD client (what push backups write through) sends the image to qemu-nbd over TLS. */
    private void push(final String object, final TlsCredentials credentials, final String name) throws Exception
    {
        final Path target = dir.resolve(name);
        try (java.io.RandomAccessFile file = new java.io.RandomAccessFile(target.toFile(), "rw"))
        {
            file.setLength(SIZE);
        }
        final int port = ExternalTools.freePort();
        final Path log = dir.resolve(name + ".log");
        final Process qemuNbd = ExternalTools.start(log, "qemu-nbd", "--object", object, "--tls-creds", "tls0", "-f", "raw",
            "-x", "backup", "-b", "127.0.0.1", "-p", String.valueOf(port), "-t", target.toString());
        try
        {
            ExternalTools.awaitTcp(port, qemuNbd, log);
            try (NbdClient client = NbdClient.builder().tcp("localhost", port).exportName("backup")
                .tls(credentials).connect())
            {
                final ByteBuffer all = ByteBuffer.wrap(Files.readAllBytes(image));
                client.write(0, all);
                client.flush();
            }
        }
        finally
        {
            qemuNbd.destroy();
            qemuNbd.waitFor(10, TimeUnit.SECONDS);
        }
        assertThat(Files.mismatch(target, image)).as("qemu-nbd log: %s", Files.readString(log)).isEqualTo(-1L);
    }
}
