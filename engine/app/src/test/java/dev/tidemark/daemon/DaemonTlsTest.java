package dev.tidemark.daemon;

import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.testing.ExternalTools;
import dev.tidemark.qmp.QmpError;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static dev.tidemark.daemon.DaemonTesting.exec;
import static dev.tidemark.daemon.DaemonTesting.error;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Methods run on JUnit's thread, each with its own in-process daemon: {@code object-add} of TLS credentials and
 * authz objects, a TLS-only {@code nbd-server-start} pulled by nbdinfo and qemu-img, push backups to qemu-nbd
 * over x509 and PSK, the clear-text network refusal and its override, and {@code block-export-del} right after
 * a client left. Certificates are made by certtool at test time.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class DaemonTlsTest
{
    private static final long SIZE = 16L << 20;
    private static final String CLIENT_DN = "CN=client1,O=Tidemark Test,C=GB";

    private Path dir;
    private Daemon daemon;
    private Path image;

    @BeforeEach
    void setUp() throws Exception
    {
        for (final String tool : List.of("certtool", "qemu-img", "qemu-nbd", "nbdinfo"))
        {
            DaemonEndToEndTest.require(tool);
        }
        dir = Files.createTempDirectory("tidemark-tls");
        image = dir.resolve("a.raw");
        final byte[] bytes = new byte[(int)SIZE];
        new SplittableRandom(9).nextBytes(bytes);
        java.util.Arrays.fill(bytes, 4 << 20, 9 << 20, (byte)0);
        Files.write(image, bytes);
        makePki(dir.resolve("pki"));
        daemon = Daemon.create(dir.resolve("bitmaps"), false, false);
        exec(daemon, "blockdev-add", "{'driver':'file','node-name':'fa','filename':'" + image + "'}");
        exec(daemon, "blockdev-add", "{'driver':'raw','node-name':'a','file':'fa'}");
    }

    @AfterEach
    void tearDown() throws IOException
    {
        DaemonTesting.closeAndDelete(daemon, dir);
    }

    private Path pki(final String sub)
    {
        return dir.resolve("pki").resolve(sub);
    }

    @Test
    void clearTextNbdOnANonLoopbackAddressNeedsTheExplicitOverride() throws Exception
    {
        assertThat(error(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'0.0.0.0','port':'0'}}}"))
            .startsWith("Refusing to serve NBD in clear text on 0.0.0.0").contains("tls-creds").contains("--nbd-insecure");
        exec(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'0.0.0.0','port':'0'}},"
            + "'__dev.tidemark_insecure':true}");
        exec(daemon, "nbd-server-stop", "{}");
        exec(daemon, "object-add",
            "{'qom-type':'tls-creds-x509','id':'tls0','endpoint':'server','dir':'" + pki("server") + "'}");
        exec(daemon, "nbd-server-start",
            "{'addr':{'type':'inet','data':{'host':'0.0.0.0','port':'0'}},'tls-creds':'tls0'}");
        exec(daemon, "nbd-server-stop", "{}");
        exec(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'127.0.0.1','port':'0'}}}");
    }

    @Test
    void objectsAreCheckedAsQemuChecksThem() throws Exception
    {
        assertThat(error(daemon, "object-add", "{'qom-type':'tls-creds-x509','id':'t','endpoint':'server','dir':'"
            + dir.resolve("nowhere") + "'}")).contains("does not exist");
        exec(daemon, "object-add",
            "{'qom-type':'tls-creds-x509','id':'tc','endpoint':'client','dir':'" + pki("client") + "'}");
        assertThat(error(daemon, "object-add", "{'qom-type':'authz-simple','id':'tc','identity':'x'}"))
            .isEqualTo("attempt to add duplicate property 'tc' to object (type 'container')");
        assertThat(error(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'127.0.0.1','port':'0'}},"
            + "'tls-creds':'tc'}")).isEqualTo("Expecting TLS credentials with a server endpoint");
        assertThat(error(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'127.0.0.1','port':'0'}},"
            + "'tls-creds':'nosuch'}")).isEqualTo("No TLS credentials with id 'nosuch'");
        assertThat(error(daemon, "object-add",
            "{'qom-type':'tls-creds-psk','id':'p','endpoint':'client','username':'nobody',"
            + "'dir':'" + pki("psk-client") + "'}")).contains("no key for username 'nobody'");
        exec(daemon, "object-del", "{'id':'tc'}");
        assertThat(error(daemon, "object-del", "{'id':'tc'}")).isEqualTo("object 'tc' not found");
    }

    @Test
    void tlsPullBackupWithAuthzServesTheRightClientOnly() throws Exception
    {
        exec(daemon, "object-add",
            "{'qom-type':'tls-creds-x509','id':'tls0','endpoint':'server','dir':'" + pki("server") + "'}");
        exec(daemon, "object-add",
            "{'qom-type':'authz-list','id':'authz0','policy':'deny','rules':[{'match':'CN=client1,*',"
            + "'policy':'allow','format':'glob'}]}");
        final int port = ExternalTools.freePort();
        exec(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'127.0.0.1','port':'" + port + "'}},"
            + "'tls-creds':'tls0','tls-authz':'authz0'}");
        exec(daemon, "block-export-add", "{'type':'nbd','id':'e','node-name':'a','name':'disk'}");
        final String uri = "nbds://localhost:" + port + "/disk?tls-certificates=";
        assertThat(run("nbdinfo", "--size", uri + pki("client")).trim()).isEqualTo(Long.toString(SIZE));
        assertThat(runFailing("nbdinfo", "--size", uri + pki("intruder"))).isNotEmpty();
        assertThat(runFailing("nbdinfo", "--size", "nbd://localhost:" + port + "/disk")).isNotEmpty();
        final Path pulled = dir.resolve("pulled.raw");
        run("qemu-img", "convert", "--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + pki("client"),
            "--image-opts", "driver=nbd,host=localhost,port=" + port + ",export=disk,tls-creds=tls0", "-O", "raw",
            pulled.toString());
        assertThat(Files.mismatch(pulled, image)).isEqualTo(-1L);
    }

    @Test
    void pushBackupToQemuNbdOverX509() throws Exception
    {
        push("tls-creds-x509,id=tls0,endpoint=server,dir=" + pki("server"),
            "{'qom-type':'tls-creds-x509','id':'tlsc','endpoint':'client','dir':'" + pki("client") + "'}");
    }

    @Test
    void pushBackupToQemuNbdOverPsk() throws Exception
    {
        push("tls-creds-psk,id=tls0,endpoint=server,dir=" + pki("psk-server"),
            "{'qom-type':'tls-creds-psk','id':'tlsc','endpoint':'client','username':'backup','dir':'"
                + pki("psk-client") + "'}");
    }

    private void push(final String serverObject, final String clientObject) throws Exception
    {
        final Path target = dir.resolve("target.raw");
        try (RandomAccessFile file = new RandomAccessFile(target.toFile(), "rw"))
        {
            file.setLength(SIZE);
        }
        final int port = ExternalTools.freePort();
        final Path log = dir.resolve("qemu-nbd.log");
        final Process qemuNbd = new ProcessBuilder("qemu-nbd", "--object", serverObject, "--tls-creds", "tls0", "-f",
            "raw", "-x", "backup", "-b", "127.0.0.1", "-p", Integer.toString(port), "-t", target.toString())
            .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try
        {
            ExternalTools.awaitTcp(port, qemuNbd, log);
            exec(daemon, "object-add", clientObject);
            exec(daemon, "blockdev-add",
                "{'driver':'nbd','node-name':'remote','server':{'type':'inet','host':'localhost',"
                + "'port':'" + port + "'},'export':'backup','tls-creds':'tlsc'}");
            exec(daemon, "blockdev-backup", "{'device':'a','target':'remote','sync':'full','job-id':'j'}");
            DaemonTesting.awaitNoJobs(daemon);
            exec(daemon, "blockdev-del", "{'node-name':'remote'}");
        }
        finally
        {
            qemuNbd.destroy();
            qemuNbd.waitFor(10, TimeUnit.SECONDS);
        }
        assertThat(Files.mismatch(target, image)).as(Files.readString(log)).isEqualTo(-1L);
    }

    @Test
    void blockExportDelInSafeModeSucceedsRightAfterTheLastClientLeft() throws Exception
    {
        final int port = ExternalTools.freePort();
        exec(daemon, "nbd-server-start", "{'addr':{'type':'inet','data':{'host':'127.0.0.1','port':'" + port + "'}}}");
        final List<String> refused = new ArrayList<>();
        for (int round = 0; round < 500; round++)
        {
            final String id = "e" + round;
            exec(daemon, "block-export-add", "{'type':'nbd','id':'" + id + "','node-name':'a','name':'" + id + "'}");
            try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", port).exportName(id).connections(1).connect())
            {
                client.read(65536L * (round % 64), ByteBuffer.allocate(65536));
            }
            try
            {
                exec(daemon, "block-export-del", "{'id':'" + id + "','mode':'safe'}");
            }
            catch (final QmpError ex)
            {
                refused.add(id + ": " + ex.desc());
            }
        }
        assertThat(refused).isEmpty();
        // A client that is still connected keeps the export, as before.
        exec(daemon, "block-export-add", "{'type':'nbd','id':'held','node-name':'a','name':'held'}");
        try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", port).exportName("held").connections(1).connect())
        {
            client.read(0, ByteBuffer.allocate(4096));
            assertThat(error(daemon, "block-export-del",
                "{'id':'held','mode':'safe'}")).isEqualTo("export 'held' still in use");
        }
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private static String run(final String... command) throws Exception
    {
        return ExternalTools.run(120, command);
    }

    /** @return the output of a command that must fail. */
    private static String runFailing(final String... command) throws Exception
    {
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(120, command);
        assertThat(result.exit()).as(String.join(" ", command) + "\n" + result.out() + result.err()).isNotZero();
        return result.out() + result.err();
    }

    /** QEMU's layout: server/, client/ (DN {@value #CLIENT_DN}), intruder/ (same CA, other DN), psk-*. */
    private static void makePki(final Path root) throws Exception
    {
        final Path work = Files.createDirectories(root.resolve("work"));
        certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", work.resolve("ca-key.pem").toString());
        Files.writeString(work.resolve("ca.info"), "cn = Tidemark Test CA\nca\ncert_signing_key\nexpiration_days = 30\n");
        certtool("--generate-self-signed", "--load-privkey", work.resolve("ca-key.pem").toString(), "--template",
            work.resolve("ca.info").toString(), "--outfile", work.resolve("ca-cert.pem").toString());
        issue(root, "server", "server", "organization = Tidemark Test\ncn = localhost\ndns_name = localhost\n"
            + "ip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30\n");
        issue(root, "client", "client", "country = GB\norganization = Tidemark Test\ncn = client1\ntls_www_client\n"
            + "signing_key\nexpiration_days = 30\n");
        issue(root, "intruder", "client", "country = GB\norganization = Elsewhere\ncn = intruder\ntls_www_client\n"
            + "signing_key\nexpiration_days = 30\n");
        final String key = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
        Files.createDirectories(root.resolve("psk-server"));
        Files.createDirectories(root.resolve("psk-client"));
        Files.writeString(root.resolve("psk-server").resolve("keys.psk"), "backup:" + key + "\n");
        Files.writeString(root.resolve("psk-client").resolve("keys.psk"), "backup:" + key + "\n");
    }

    private static void issue(final Path root, final String name, final String prefix, final String template)
        throws Exception
    {
        final Path work = root.resolve("work");
        final Path out = Files.createDirectories(root.resolve(name));
        Files.copy(work.resolve("ca-cert.pem"), out.resolve("ca-cert.pem"));
        certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", out.resolve(prefix + "-key.pem").toString());
        final Path info = work.resolve(name + ".info");
        Files.writeString(info, template);
        certtool("--generate-certificate", "--load-privkey", out.resolve(prefix + "-key.pem").toString(),
            "--load-ca-certificate", work.resolve("ca-cert.pem").toString(), "--load-ca-privkey",
            work.resolve("ca-key.pem").toString(), "--template", info.toString(), "--outfile",
            out.resolve(prefix + "-cert.pem").toString());
    }

    private static void certtool(final String... args) throws Exception
    {
        final List<String> command = new ArrayList<>(List.of("certtool"));
        command.addAll(List.of(args));
        run(command.toArray(new String[0]));
    }
}
