package dev.tidemark.io.tls;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;

import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.ASN1Sequence;
import org.bouncycastle.asn1.DERNull;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.pkcs.RSAPrivateKey;
import org.bouncycastle.asn1.sec.ECPrivateKey;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x9.X9ObjectIdentifiers;

/**
 * TLS credentials as QEMU's {@code tls-creds-x509} and {@code tls-creds-psk} objects define them, loaded
 * from a directory of QEMU's file names; immutable once built and safe to use from any number of threads.
 *
 * <p>x509 runs on JSSE; PSK on Bouncy Castle's TLS API (JSSE has none). Files are read when the object is
 * made, so a missing or malformed file is reported at {@code object-add} time, not at the first client.
 */
public final class TlsCredentials
{
    /** Which side of the connection these credentials are for. */
    public enum Endpoint
    {
        /** Accepts connections ({@code endpoint=server}, QEMU's default). */
        SERVER,
        /** Makes connections ({@code endpoint=client}). */
        CLIENT
    }

    /** The kind of credentials. */
    public enum Kind
    {
        /** Certificates ({@code tls-creds-x509}). */
        X509,
        /** Pre-shared keys ({@code tls-creds-psk}). */
        PSK
    }

    /** QEMU's default PSK username for clients. */
    public static final String DEFAULT_PSK_USERNAME = "qemu";

    private final Kind kind;
    private final Endpoint endpoint;
    private final boolean verifyPeer;
    private final SSLContext context;
    private final Map<String, byte[]> pskKeys;
    private final String pskUsername;

    private TlsCredentials(final Kind kind, final Endpoint endpoint, final boolean verifyPeer, final SSLContext context,
        final Map<String, byte[]> pskKeys, final String pskUsername)
    {
        this.kind = kind;
        this.endpoint = endpoint;
        this.verifyPeer = verifyPeer;
        this.context = context;
        this.pskKeys = pskKeys;
        this.pskUsername = pskUsername;
    }

    /**
     * Certificates from {@code dir}: {@code ca-cert.pem}, and {@code server-cert.pem}/{@code server-key.pem}
     * (server) or {@code client-cert.pem}/{@code client-key.pem} (client, optional unless the server asks).
     *
     * @param verifyPeer server: require and verify a client certificate (QEMU's default {@code on});
     *                   client: verify the server's certificate and name.
     */
    public static TlsCredentials x509(final Path dir, final Endpoint endpoint, final boolean verifyPeer)
        throws TlsException
    {
        final String prefix = endpoint == Endpoint.SERVER ? "server" : "client";
        final Path caFile = dir.resolve("ca-cert.pem");
        final Path certFile = dir.resolve(prefix + "-cert.pem");
        final Path keyFile = dir.resolve(prefix + "-key.pem");
        try
        {
            final KeyStore trust = KeyStore.getInstance("PKCS12");
            trust.load(null, null);
            if (verifyPeer || Files.exists(caFile))
            {
                int index = 0;
                for (final X509Certificate ca : readCertificates(caFile))
                {
                    trust.setCertificateEntry("ca" + index++, ca);
                }
            }
            final KeyStore identity = KeyStore.getInstance("PKCS12");
            identity.load(null, null);
            final boolean haveIdentity = endpoint == Endpoint.SERVER || Files.exists(certFile) && Files.exists(keyFile);
            if (haveIdentity)
            {
                final List<X509Certificate> chain = readCertificates(certFile);
                final PrivateKey key = readPrivateKey(keyFile);
                identity.setKeyEntry("identity", key, new char[0], chain.toArray(new Certificate[0]));
            }
            final KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            keys.init(identity, new char[0]);
            final TrustManagerFactory trusts = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trusts.init(trust);
            final SSLContext context = SSLContext.getInstance("TLS");
            context.init(keys.getKeyManagers(), trusts.getTrustManagers(), new SecureRandom());
            return new TlsCredentials(Kind.X509, endpoint, verifyPeer, context, Map.of(), null);
        }
        catch (final GeneralSecurityException | IOException | RuntimeException ex)
        {
            if (ex instanceof TlsException)
            {
                throw (TlsException)ex;
            }
            throw new TlsException(TlsException.Reason.CREDENTIALS, "cannot load x509 credentials from " + dir + ": " + ex, ex);
        }
    }

    /**
     * Pre-shared keys from {@code dir/keys.psk}, lines {@code username:hexkey}.
     *
     * @param username client: the identity to offer (QEMU's default {@value #DEFAULT_PSK_USERNAME}); server:
     *                 ignored, every line is accepted.
     */
    public static TlsCredentials psk(final Path dir, final Endpoint endpoint, final String username) throws TlsException
    {
        final Path file = dir.resolve("keys.psk");
        final Map<String, byte[]> keys = new LinkedHashMap<>();
        try
        {
            int number = 0;
            for (final String line : Files.readAllLines(file, StandardCharsets.UTF_8))
            {
                number++;
                final String trimmed = line.strip();
                if (trimmed.isEmpty() || trimmed.startsWith("#"))
                {
                    continue;
                }
                final int colon = trimmed.indexOf(':');
                if (colon <= 0)
                {
                    throw new TlsException(TlsException.Reason.CREDENTIALS, file + " line " + number
                        + ": expected username:hexkey", null);
                }
                final byte[] key;
                try
                {
                    key = HexFormat.of().parseHex(trimmed.substring(colon + 1));
                }
                catch (final IllegalArgumentException ex)
                {
                    throw new TlsException(TlsException.Reason.CREDENTIALS, file + " line " + number
                        + ": the key is not hexadecimal", ex);
                }
                if (key.length == 0)
                {
                    throw new TlsException(TlsException.Reason.CREDENTIALS, file + " line " + number + ": empty key", null);
                }
                keys.put(trimmed.substring(0, colon), key);
            }
        }
        catch (final NoSuchFileException ex)
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "PSK file " + file + " does not exist", ex);
        }
        catch (final TlsException ex)
        {
            throw ex;
        }
        catch (final IOException ex)
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "cannot read PSK file " + file + ": " + ex, ex);
        }
        if (keys.isEmpty())
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "PSK file " + file + " holds no keys", null);
        }
        final String user = username == null ? DEFAULT_PSK_USERNAME : username;
        if (endpoint == Endpoint.CLIENT && !keys.containsKey(user))
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "PSK file " + file + " has no key for username '"
                + user + "'", null);
        }
        return new TlsCredentials(Kind.PSK, endpoint, true, null, Map.copyOf(keys), user);
    }

    /** @return x509 or PSK. */
    public Kind kind()
    {
        return kind;
    }

    /** @return server or client. */
    public Endpoint endpoint()
    {
        return endpoint;
    }

    /** @return whether the peer must authenticate (x509 {@code verify-peer}; always for PSK). */
    public boolean verifyPeer()
    {
        return verifyPeer;
    }

    /**
     * Runs the server side of the handshake on an accepted, connected blocking channel.
     *
     * @throws TlsException with the reason the handshake failed; the caller closes the channel.
     */
    public TlsChannel accept(final SocketChannel channel) throws TlsException
    {
        if (endpoint != Endpoint.SERVER)
        {
            throw new IllegalStateException("credentials for a client endpoint cannot accept connections");
        }
        if (kind == Kind.PSK)
        {
            return PskTlsChannel.accept(channel, pskKeys);
        }
        final SSLEngine engine = context.createSSLEngine();
        engine.setUseClientMode(false);
        // Want, not need: a client without a certificate then completes the handshake and is refused as
        // untrusted, instead of failing indistinguishably from garbage.
        engine.setWantClientAuth(verifyPeer);
        return JsseTlsChannel.handshake(channel, engine, verifyPeer);
    }

    /**
     * Runs the client side of the handshake on a connected blocking channel.
     *
     * @param hostname the name the server's certificate must carry (x509 with verify-peer), or {@code null}.
     * @throws TlsException with the reason the handshake failed; the caller closes the channel.
     */
    public TlsChannel connect(final SocketChannel channel, final String hostname) throws TlsException
    {
        if (endpoint != Endpoint.CLIENT)
        {
            throw new IllegalStateException("credentials for a server endpoint cannot make connections");
        }
        if (kind == Kind.PSK)
        {
            return PskTlsChannel.connect(channel, pskUsername, pskKeys.get(pskUsername));
        }
        final SSLEngine engine = hostname == null ? context.createSSLEngine() : context.createSSLEngine(hostname, 0);
        engine.setUseClientMode(true);
        if (verifyPeer && hostname != null)
        {
            final SSLParameters parameters = engine.getSSLParameters();
            parameters.setEndpointIdentificationAlgorithm("HTTPS");
            if (!isAddressLiteral(hostname))
            {
                parameters.setServerNames(List.of(new SNIHostName(hostname)));
            }
            engine.setSSLParameters(parameters);
        }
        return JsseTlsChannel.handshake(channel, engine, false);
    }

    private static boolean isAddressLiteral(final String host)
    {
        return host.indexOf(':') >= 0 || host.chars().allMatch(c -> c == '.' || Character.isDigit(c));
    }

    // ------------------------------------------------------------------------------------------------
    // PEM

    private static List<X509Certificate> readCertificates(final Path file) throws IOException, GeneralSecurityException
    {
        if (!Files.exists(file))
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "certificate file " + file + " does not exist", null);
        }
        final CertificateFactory factory = CertificateFactory.getInstance("X.509");
        final Collection<? extends Certificate> certificates;
        try (InputStream in = Files.newInputStream(file))
        {
            certificates = factory.generateCertificates(in);
        }
        final List<X509Certificate> out = new ArrayList<>();
        for (final Certificate each : certificates)
        {
            out.add((X509Certificate)each);
        }
        if (out.isEmpty())
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, file + " holds no certificate", null);
        }
        return out;
    }

    /** Reads PKCS#8 ({@code PRIVATE KEY}), PKCS#1 ({@code RSA PRIVATE KEY}) or SEC1 ({@code EC PRIVATE KEY}). */
    static PrivateKey readPrivateKey(final Path file) throws IOException, GeneralSecurityException
    {
        if (!Files.exists(file))
        {
            throw new TlsException(TlsException.Reason.CREDENTIALS, "key file " + file + " does not exist", null);
        }
        final String text = Files.readString(file, StandardCharsets.US_ASCII);
        for (final String type : List.of("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"))
        {
            final String begin = "-----BEGIN " + type + "-----";
            final int start = text.indexOf(begin);
            if (start < 0)
            {
                continue;
            }
            final int end = text.indexOf("-----END " + type + "-----", start);
            if (end < 0)
            {
                break;
            }
            final byte[] der = Base64.getMimeDecoder().decode(text.substring(start + begin.length(), end));
            final PrivateKeyInfo info;
            switch (type)
            {
                case "RSA PRIVATE KEY":
                    info = new PrivateKeyInfo(new AlgorithmIdentifier(PKCSObjectIdentifiers.rsaEncryption, DERNull.INSTANCE),
                        RSAPrivateKey.getInstance(ASN1Sequence.getInstance(der)));
                    break;
                case "EC PRIVATE KEY":
                    final ECPrivateKey ec = ECPrivateKey.getInstance(ASN1Sequence.getInstance(der));
                    final ASN1ObjectIdentifier curve = (ASN1ObjectIdentifier)ec.getParametersObject();
                    info = new PrivateKeyInfo(new AlgorithmIdentifier(X9ObjectIdentifiers.id_ecPublicKey, curve), ec);
                    break;
                default:
                    info = PrivateKeyInfo.getInstance(der);
                    break;
            }
            final String algorithm = X9ObjectIdentifiers.id_ecPublicKey.equals(info.getPrivateKeyAlgorithm().getAlgorithm())
                ? "EC" : PKCSObjectIdentifiers.rsaEncryption.equals(info.getPrivateKeyAlgorithm().getAlgorithm()) ? "RSA"
                : info.getPrivateKeyAlgorithm().getAlgorithm().getId();
            return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(info.getEncoded()));
        }
        throw new TlsException(TlsException.Reason.CREDENTIALS, file + " holds no unencrypted PEM private key", null);
    }
}
