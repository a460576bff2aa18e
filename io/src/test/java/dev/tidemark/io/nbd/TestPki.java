package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.ExternalTools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Makes certificates and keys at test time with GnuTLS's {@code certtool}, in QEMU's directory layout;
 * stateless, each call writes only under the directory it is given.
 *
 * <p>Layout under the root: {@code server/} (ca-cert, server-cert, server-key), {@code client/} (ca-cert,
 * client-cert, client-key, DN {@link #CLIENT_DN}), {@code other-client/} (a client signed by another CA),
 * {@code expired-client/} (valid in 2020 only), {@code intruder/} (a client whose DN is not in the authz
 * list, signed by the right CA), {@code psk-server/} and {@code psk-client/} (keys.psk), {@code psk-wrong/}.
 */
final class TestPki
{
    /** The distinguished name of the good client, as QEMU's tls-authz identity spells it. */
    static final String CLIENT_DN = "CN=client1,O=Tidemark Test,C=GB";
    /** The PSK username. */
    static final String PSK_USER = "backup";

    final Path root;
    final Path server;
    final Path client;
    final Path otherClient;
    final Path expiredClient;
    final Path intruder;
    final Path pskServer;
    final Path pskClient;
    final Path pskWrong;

    private TestPki(final Path root)
    {
        this.root = root;
        this.server = root.resolve("server");
        this.client = root.resolve("client");
        this.otherClient = root.resolve("other-client");
        this.expiredClient = root.resolve("expired-client");
        this.intruder = root.resolve("intruder");
        this.pskServer = root.resolve("psk-server");
        this.pskClient = root.resolve("psk-client");
        this.pskWrong = root.resolve("psk-wrong");
    }

    static TestPki create(final Path root) throws Exception
    {
        final TestPki pki = new TestPki(root);
        final Path work = Files.createDirectories(root.resolve("work"));
        final Path ca = ca(work, "ca", "Tidemark Test CA");
        final Path otherCa = ca(work, "other-ca", "Some Other CA");
        for (final Path dir : new Path[] {pki.server, pki.client, pki.otherClient, pki.expiredClient, pki.intruder,
            pki.pskServer, pki.pskClient, pki.pskWrong})
        {
            Files.createDirectories(dir);
        }
        final String goodClient =
            "country = GB\norganization = Tidemark Test\ncn = client1\ntls_www_client\nsigning_key\n";
        final String month = "expiration_days = 30\n";
        issue(work, ca, ca, pki.server, "server", "rsa", "organization = Tidemark Test\ncn = localhost\n"
            + "dns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\n" + month);
        issue(work, ca, ca, pki.client, "client", "ecdsa", goodClient + month);
        issue(work, otherCa, ca, pki.otherClient, "client", "ecdsa", goodClient + month);
        issue(work, ca, ca, pki.expiredClient, "client", "ecdsa", goodClient
            + "activation_date = \"2020-01-01 00:00:00 UTC\"\nexpiration_date = \"2020-01-02 00:00:00 UTC\"\n");
        issue(work, ca, ca, pki.intruder, "client", "ecdsa",
            "country = GB\norganization = Elsewhere\ncn = intruder\ntls_www_client\nsigning_key\n" + month);
        final String key = "9f1c0d6a4e2b7c3d5a8e1f0b6c2d4e7a9b3c5d1e8f0a2b4c6d8e0f1a3b5c7d9e";
        Files.writeString(pki.pskServer.resolve("keys.psk"), "other:00112233445566778899aabbccddeeff\n" + PSK_USER + ":" + key + "\n");
        Files.writeString(pki.pskClient.resolve("keys.psk"), PSK_USER + ":" + key + "\n");
        Files.writeString(pki.pskWrong.resolve("keys.psk"), PSK_USER + ":" + key.replace('9', '7') + "\n");
        return pki;
    }

    private static Path ca(final Path work, final String name, final String cn) throws Exception
    {
        final Path dir = Files.createDirectories(work.resolve(name));
        certtool("--generate-privkey", "--key-type=ecdsa", "--outfile", dir.resolve("key.pem").toString());
        final Path template = dir.resolve("ca.info");
        Files.writeString(template, "cn = " + cn + "\nca\ncert_signing_key\nexpiration_days = 30\n");
        certtool("--generate-self-signed", "--load-privkey", dir.resolve("key.pem").toString(), "--template",
            template.toString(), "--outfile", dir.resolve("cert.pem").toString());
        return dir;
    }

    /** Issues {@code dir}'s certificate signed by {@code signer}, and puts {@code trusted}'s certificate beside it. */
    private static void issue(final Path work, final Path signer, final Path trusted, final Path dir, final String prefix,
        final String keyType, final String template) throws Exception
    {
        Files.copy(trusted.resolve("cert.pem"), dir.resolve("ca-cert.pem"));
        final Path key = dir.resolve(prefix + "-key.pem");
        certtool("--generate-privkey", "--key-type=" + keyType, "--outfile", key.toString());
        final Path info = Files.createTempFile(work, prefix, ".info");
        Files.writeString(info, template);
        certtool("--generate-certificate", "--load-privkey", key.toString(), "--load-ca-certificate",
            signer.resolve("cert.pem").toString(), "--load-ca-privkey", signer.resolve("key.pem").toString(),
            "--template", info.toString(), "--outfile", dir.resolve(prefix + "-cert.pem").toString());
    }

    private static void certtool(final String... args) throws IOException, InterruptedException
    {
        final String[] command = new String[args.length + 1];
        command[0] = "certtool";
        System.arraycopy(args, 0, command, 1, args.length);
        ExternalTools.run(60, command);
    }
}
