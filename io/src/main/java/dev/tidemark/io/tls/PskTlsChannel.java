package dev.tidemark.io.tls;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.security.SecureRandom;
import java.util.Map;
import java.util.Vector;
import java.util.concurrent.locks.ReentrantLock;

import org.bouncycastle.tls.AlertDescription;
import org.bouncycastle.tls.BasicTlsPSKExternal;
import org.bouncycastle.tls.CipherSuite;
import org.bouncycastle.tls.PRFAlgorithm;
import org.bouncycastle.tls.PSKTlsClient;
import org.bouncycastle.tls.PSKTlsServer;
import org.bouncycastle.tls.PskIdentity;
import org.bouncycastle.tls.ProtocolVersion;
import org.bouncycastle.tls.TlsClientProtocol;
import org.bouncycastle.tls.TlsFatalAlert;
import org.bouncycastle.tls.TlsFatalAlertReceived;
import org.bouncycastle.tls.TlsPSKExternal;
import org.bouncycastle.tls.TlsPSKIdentityManager;
import org.bouncycastle.tls.TlsProtocol;
import org.bouncycastle.tls.TlsServerProtocol;
import org.bouncycastle.tls.crypto.TlsCrypto;
import org.bouncycastle.tls.crypto.impl.jcajce.JcaTlsCryptoProvider;

/**
 * TLS with pre-shared keys (TLS 1.3 external PSK with (EC)DHE, and TLS 1.2 PSK suites) through Bouncy Castle's
 * TLS API in blocking mode, because JSSE has no PSK; one reader thread and one writer at a time (see
 * {@link TlsChannel}), which Bouncy Castle's record layer allows.
 */
final class PskTlsChannel implements TlsChannel
{
    /** Plain bytes handed to the record layer per call: four full records. */
    private static final int CHUNK = 64 * 1024;

    /**
     * TLS 1.3 suites first (GnuTLS clients prefer 1.3), then PSK suites with forward secrecy, then plain PSK.
     * Only SHA-256 suites for 1.3: an external PSK is bound to SHA-256 (GnuTLS's default), and a SHA-384 suite
     * would derive different keys from it. No ChaCha20: the JCA crypto Bouncy Castle uses here finds no
     * provider for it on the JDK, and AES-GCM has the JDK's hardware intrinsics anyway.
     */
    private static final int[] SUITES = {
        CipherSuite.TLS_AES_128_GCM_SHA256,
        CipherSuite.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
        CipherSuite.TLS_DHE_PSK_WITH_AES_128_GCM_SHA256,
        CipherSuite.TLS_DHE_PSK_WITH_AES_256_GCM_SHA384,
        CipherSuite.TLS_PSK_WITH_AES_128_GCM_SHA256,
        CipherSuite.TLS_PSK_WITH_AES_256_GCM_SHA384,
    };

    private final SocketChannel channel;
    private final TlsProtocol protocol;
    private final String identity;
    private final ReentrantLock writeLock = new ReentrantLock();
    private final byte[] readChunk = new byte[CHUNK];
    private final byte[] writeChunk = new byte[CHUNK];

    private PskTlsChannel(final SocketChannel channel, final TlsProtocol protocol, final String identity)
    {
        this.channel = channel;
        this.protocol = protocol;
        this.identity = identity;
    }

    private static TlsCrypto crypto()
    {
        return new JcaTlsCryptoProvider().create(new SecureRandom());
    }

    /** Server side: accepts any username in {@code keys} with its key. */
    static PskTlsChannel accept(final SocketChannel channel, final Map<String, byte[]> keys) throws TlsException
    {
        final TlsServerProtocol protocol = new TlsServerProtocol(new In(channel), new Out(channel));
        final Server server = new Server(crypto(), keys);
        try
        {
            protocol.accept(server);
        }
        catch (final IOException ex)
        {
            closeQuietly(protocol);
            throw failure(ex);
        }
        return new PskTlsChannel(channel, protocol, server.chosen);
    }

    /** Client side: offers {@code username} with {@code key}. */
    static PskTlsChannel connect(final SocketChannel channel, final String username, final byte[] key)
        throws TlsException
    {
        final TlsClientProtocol protocol = new TlsClientProtocol(new In(channel), new Out(channel));
        try
        {
            protocol.connect(new Client(crypto(), username, key));
        }
        catch (final IOException ex)
        {
            closeQuietly(protocol);
            throw failure(ex);
        }
        return new PskTlsChannel(channel, protocol, username);
    }

    private static TlsException failure(final IOException ex)
    {
        short alert = -1;
        if (ex instanceof TlsFatalAlert)
        {
            alert = ((TlsFatalAlert)ex).getAlertDescription();
        }
        else if (ex instanceof TlsFatalAlertReceived)
        {
            alert = ((TlsFatalAlertReceived)ex).getAlertDescription();
        }
        // A wrong key surfaces as a failed Finished MAC or a record that does not decrypt.
        final boolean mismatch = alert == AlertDescription.unknown_psk_identity || alert == AlertDescription.decrypt_error
            || alert == AlertDescription.bad_record_mac;
        return new TlsException(mismatch ? TlsException.Reason.PSK_MISMATCH : TlsException.Reason.HANDSHAKE,
            "TLS-PSK handshake failed: " + ex.getMessage(), ex);
    }

    private static void closeQuietly(final TlsProtocol protocol)
    {
        try
        {
            protocol.close();
        }
        catch (final IOException | RuntimeException ignored)
        {
            // The handshake already failed; the caller closes the socket.
        }
    }

    @Override
    public int read(final ByteBuffer dst) throws IOException
    {
        final int count = protocol.readApplicationData(readChunk, 0, Math.min(readChunk.length, dst.remaining()));
        if (count > 0)
        {
            dst.put(readChunk, 0, count);
        }
        return count;
    }

    @Override
    public void write(final ByteBuffer... srcs) throws IOException
    {
        writeLock.lock();
        try
        {
            for (final ByteBuffer src : srcs)
            {
                while (src.hasRemaining())
                {
                    final int count = Math.min(src.remaining(), writeChunk.length);
                    src.get(writeChunk, 0, count);
                    protocol.writeApplicationData(writeChunk, 0, count);
                }
            }
        }
        finally
        {
            writeLock.unlock();
        }
    }

    @Override
    public String peerIdentity()
    {
        return identity;
    }

    @Override
    public String describe()
    {
        return "TLS-PSK (Bouncy Castle)";
    }

    @Override
    public void close()
    {
        TlsClose.close(writeLock, protocol::close, channel);
    }

    /** The server's policy: 1.3 and 1.2, and the usernames of keys.psk; runs on the handshaking thread. */
    private static final class Server extends PSKTlsServer
    {
        private final Map<String, byte[]> keys;
        private volatile String chosen;

        Server(final TlsCrypto crypto, final Map<String, byte[]> keys)
        {
            super(crypto, new Identities(keys));
            this.keys = keys;
        }

        @Override
        protected ProtocolVersion[] getSupportedVersions()
        {
            return ProtocolVersion.TLSv13.downTo(ProtocolVersion.TLSv12);
        }

        @Override
        protected int[] getSupportedCipherSuites()
        {
            return SUITES.clone();
        }

        // Bouncy Castle's API takes a raw Vector of PskIdentity.
        @Override
        @SuppressWarnings("rawtypes")
        public TlsPSKExternal getExternalPSK(final Vector identities)
        {
            for (final Object each : identities)
            {
                final byte[] wire = ((PskIdentity)each).getIdentity();
                final String name = new String(wire, java.nio.charset.StandardCharsets.UTF_8);
                final byte[] key = keys.get(name);
                if (key != null)
                {
                    chosen = name;
                    return new BasicTlsPSKExternal(wire, getCrypto().createSecret(key), PRFAlgorithm.tls13_hkdf_sha256);
                }
            }
            return null;
        }

        @Override
        public void notifyHandshakeComplete() throws IOException
        {
            super.notifyHandshakeComplete();
            final byte[] tls12 = context.getSecurityParametersConnection().getPSKIdentity();
            if (tls12 != null)
            {
                chosen = new String(tls12, java.nio.charset.StandardCharsets.UTF_8);
            }
        }
    }

    /** TLS 1.2 identity lookup; called on the handshaking thread. */
    private static final class Identities implements TlsPSKIdentityManager
    {
        private final Map<String, byte[]> keys;

        Identities(final Map<String, byte[]> keys)
        {
            this.keys = keys;
        }

        @Override
        public byte[] getHint()
        {
            return null;
        }

        @Override
        public byte[] getPSK(final byte[] identity)
        {
            final byte[] key = keys.get(new String(identity, java.nio.charset.StandardCharsets.UTF_8));
            return key == null ? null : key.clone();
        }
    }

    /** The client's offer: one external PSK for 1.3, the same identity for 1.2 suites. */
    private static final class Client extends PSKTlsClient
    {
        private final String username;
        private final byte[] key;

        Client(final TlsCrypto crypto, final String username, final byte[] key)
        {
            super(crypto, username.getBytes(java.nio.charset.StandardCharsets.UTF_8), key);
            this.username = username;
            this.key = key;
        }

        @Override
        protected ProtocolVersion[] getSupportedVersions()
        {
            return ProtocolVersion.TLSv13.downTo(ProtocolVersion.TLSv12);
        }

        @Override
        protected int[] getSupportedCipherSuites()
        {
            return SUITES.clone();
        }

        // Bouncy Castle's API returns a raw Vector of TlsPSKExternal.
        @Override
        @SuppressWarnings({"rawtypes", "unchecked"})
        public Vector getExternalPSKs()
        {
            final Vector psks = new Vector();
            psks.add(new BasicTlsPSKExternal(username.getBytes(java.nio.charset.StandardCharsets.UTF_8),
                getCrypto().createSecret(key), PRFAlgorithm.tls13_hkdf_sha256));
            return psks;
        }
    }

    /** Blocking reads from the socket channel without the stream adapters' channel-wide lock. */
    private static final class In extends InputStream
    {
        private final SocketChannel channel;

        In(final SocketChannel channel)
        {
            this.channel = channel;
        }

        @Override
        public int read() throws IOException
        {
            final byte[] one = new byte[1];
            final int count = read(one, 0, 1);
            return count < 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(final byte[] buffer, final int offset, final int length) throws IOException
        {
            if (length == 0)
            {
                return 0;
            }
            return channel.read(ByteBuffer.wrap(buffer, offset, length));
        }
    }

    /** Blocking writes to the socket channel. */
    private static final class Out extends OutputStream
    {
        private final SocketChannel channel;

        Out(final SocketChannel channel)
        {
            this.channel = channel;
        }

        @Override
        public void write(final int b) throws IOException
        {
            write(new byte[] {(byte)b}, 0, 1);
        }

        @Override
        public void write(final byte[] buffer, final int offset, final int length) throws IOException
        {
            final ByteBuffer src = ByteBuffer.wrap(buffer, offset, length);
            while (src.hasRemaining())
            {
                if (channel.write(src) < 0)
                {
                    throw new EOFException("peer closed the connection");
                }
            }
        }
    }
}
