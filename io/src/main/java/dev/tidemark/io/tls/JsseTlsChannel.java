package dev.tidemark.io.tls;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.concurrent.locks.ReentrantLock;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.security.auth.x500.X500Principal;

/**
 * A JSSE {@link SSLEngine} driven over a blocking socket channel; one reader thread and one writer at a time
 * (see {@link TlsChannel}), which SSLEngine allows because wrap and unwrap may run concurrently.
 *
 * <p>Reads unwrap straight into the caller's buffer when it can hold a whole record, so large NBD payloads are
 * not copied twice; writes gather the caller's buffers into several records per socket write.
 */
final class JsseTlsChannel implements TlsChannel
{
    /** Records batched per socket write: fewer system calls for 32 MiB reads. */
    private static final int RECORDS_PER_WRITE = 8;
    private static final ByteBuffer[] NOTHING = {ByteBuffer.allocate(0)};

    private final SocketChannel channel;
    private final SSLEngine engine;
    private final ReentrantLock writeLock = new ReentrantLock();
    private final int packetSize;
    private final int appSize;
    /** Network bytes received and not yet unwrapped (reader thread, or the handshake). */
    private ByteBuffer netIn;
    /** Plain bytes unwrapped and not yet returned (reader thread). */
    private ByteBuffer appIn;
    /** Records waiting to be written (under the write lock). */
    private final ByteBuffer netOut;

    private JsseTlsChannel(final SocketChannel channel, final SSLEngine engine)
    {
        this.channel = channel;
        this.engine = engine;
        this.packetSize = engine.getSession().getPacketBufferSize();
        this.appSize = engine.getSession().getApplicationBufferSize();
        this.netIn = ByteBuffer.allocateDirect(packetSize * 2);
        this.appIn = ByteBuffer.allocateDirect(appSize);
        this.netOut = ByteBuffer.allocateDirect(packetSize * RECORDS_PER_WRITE);
    }

    /**
     * Runs the handshake on the calling thread and returns the established channel.
     *
     * @param requirePeerCertificate refuse a peer that presented no certificate. The engine only <em>wants</em>
     *                               client certificates, so that this case is told apart from a bad one.
     */
    static JsseTlsChannel handshake(final SocketChannel channel, final SSLEngine engine,
        final boolean requirePeerCertificate) throws TlsException
    {
        final JsseTlsChannel tls = new JsseTlsChannel(channel, engine);
        try
        {
            tls.runHandshake();
        }
        catch (final SSLException ex)
        {
            throw new TlsException(trustFailure(ex) ? TlsException.Reason.PEER_NOT_TRUSTED : TlsException.Reason.HANDSHAKE,
                "TLS handshake failed: " + ex.getMessage(), ex);
        }
        catch (final IOException ex)
        {
            throw new TlsException(TlsException.Reason.HANDSHAKE, "TLS handshake failed: " + ex.getMessage(), ex);
        }
        if (requirePeerCertificate && tls.peerIdentity() == null)
        {
            throw new TlsException(TlsException.Reason.PEER_NOT_TRUSTED,
                "the client presented no certificate this server's CA signed (verify-peer=on)", null);
        }
        return tls;
    }

    /** A certificate problem shows as a CertificateException somewhere in the cause chain. */
    private static boolean trustFailure(final Throwable failure)
    {
        for (Throwable at = failure; at != null; at = at.getCause())
        {
            if (at instanceof CertificateException)
            {
                return true;
            }
        }
        return false;
    }

    private void runHandshake() throws IOException
    {
        engine.beginHandshake();
        SSLEngineResult.HandshakeStatus status = engine.getHandshakeStatus();
        while (status != SSLEngineResult.HandshakeStatus.FINISHED
            && status != SSLEngineResult.HandshakeStatus.NOT_HANDSHAKING)
        {
            switch (status)
            {
                case NEED_WRAP:
                    status = wrapAndFlush(NOTHING);
                    break;
                case NEED_UNWRAP:
                case NEED_UNWRAP_AGAIN:
                    status = unwrapHandshake();
                    break;
                case NEED_TASK:
                    runTasks();
                    status = engine.getHandshakeStatus();
                    break;
                default:
                    throw new SSLException("unexpected handshake status " + status);
            }
        }
    }

    private SSLEngineResult.HandshakeStatus unwrapHandshake() throws IOException
    {
        while (true)
        {
            final SSLEngineResult result = unwrapInto(appIn);
            switch (result.getStatus())
            {
                case OK:
                    return result.getHandshakeStatus();
                case BUFFER_UNDERFLOW:
                    receive();
                    break;
                case BUFFER_OVERFLOW:
                    appIn = grow(appIn, appSize);
                    break;
                case CLOSED:
                default:
                    throw new EOFException("peer closed the TLS session during the handshake");
            }
        }
    }

    /** Unwraps what {@link #netIn} holds into {@code target}, leaving the rest of {@link #netIn} for more bytes. */
    private SSLEngineResult unwrapInto(final ByteBuffer target) throws SSLException
    {
        netIn.flip();
        try
        {
            return engine.unwrap(netIn, target);
        }
        finally
        {
            netIn.compact();
        }
    }

    private void runTasks()
    {
        Runnable task;
        while ((task = engine.getDelegatedTask()) != null)
        {
            task.run();
        }
    }

    /** Reads more network bytes into {@link #netIn}, growing it when a record does not fit. */
    private void receive() throws IOException
    {
        if (!netIn.hasRemaining())
        {
            netIn = grow(netIn, packetSize);
        }
        if (channel.read(netIn) < 0)
        {
            throw new EOFException("peer closed the connection");
        }
    }

    private static ByteBuffer grow(final ByteBuffer buffer, final int by)
    {
        final ByteBuffer bigger = ByteBuffer.allocateDirect(buffer.capacity() + by);
        buffer.flip();
        bigger.put(buffer);
        return bigger;
    }

    @Override
    public int read(final ByteBuffer dst) throws IOException
    {
        if (!dst.hasRemaining())
        {
            return 0;
        }
        while (true)
        {
            if (appIn.position() > 0)
            {
                appIn.flip();
                final int count = Math.min(appIn.remaining(), dst.remaining());
                final ByteBuffer slice = appIn.slice().limit(count);
                dst.put(slice);
                appIn.position(appIn.position() + count);
                appIn.compact();
                return count;
            }
            if (netIn.position() > 0)
            {
                // A whole record fits in the caller's buffer: decrypt straight into it.
                final boolean direct = dst.remaining() >= appSize;
                final ByteBuffer target = direct ? dst : appIn;
                final int before = dst.position();
                final SSLEngineResult result = unwrapInto(target);
                afterUnwrap(result);
                switch (result.getStatus())
                {
                    case OK:
                        if (direct && result.bytesProduced() > 0)
                        {
                            return dst.position() - before;
                        }
                        continue;
                    case CLOSED:
                        return -1;
                    case BUFFER_OVERFLOW:
                        appIn = grow(appIn, appSize);
                        continue;
                    case BUFFER_UNDERFLOW:
                    default:
                        break;
                }
            }
            if (!netIn.hasRemaining())
            {
                netIn = grow(netIn, packetSize);
            }
            if (channel.read(netIn) < 0)
            {
                return -1;
            }
        }
    }

    /** Post-handshake messages (TLS 1.3 key update, tickets) may need tasks run or a record sent back. */
    private void afterUnwrap(final SSLEngineResult result) throws IOException
    {
        SSLEngineResult.HandshakeStatus status = result.getHandshakeStatus();
        while (status == SSLEngineResult.HandshakeStatus.NEED_TASK || status == SSLEngineResult.HandshakeStatus.NEED_WRAP)
        {
            if (status == SSLEngineResult.HandshakeStatus.NEED_TASK)
            {
                runTasks();
                status = engine.getHandshakeStatus();
            }
            else
            {
                writeLock.lock();
                try
                {
                    status = wrapAndFlush(NOTHING);
                }
                finally
                {
                    writeLock.unlock();
                }
            }
        }
    }

    @Override
    public void write(final ByteBuffer... srcs) throws IOException
    {
        writeLock.lock();
        try
        {
            while (hasRemaining(srcs))
            {
                wrapAndFlush(srcs);
            }
        }
        finally
        {
            writeLock.unlock();
        }
    }

    /** Wraps as many records as fit in {@link #netOut} and writes them; returns the last handshake status. */
    private SSLEngineResult.HandshakeStatus wrapAndFlush(final ByteBuffer[] srcs) throws IOException
    {
        netOut.clear();
        SSLEngineResult.HandshakeStatus status;
        do
        {
            final SSLEngineResult result = engine.wrap(srcs, netOut);
            status = result.getHandshakeStatus();
            if (result.getStatus() == SSLEngineResult.Status.CLOSED)
            {
                if (result.bytesProduced() > 0)
                {
                    break;
                }
                throw new EOFException("TLS session is closed");
            }
            if (result.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW || result.bytesProduced() == 0)
            {
                break;
            }
            if (status == SSLEngineResult.HandshakeStatus.NEED_TASK)
            {
                runTasks();
                status = engine.getHandshakeStatus();
            }
        }
        while (netOut.remaining() >= packetSize && hasRemaining(srcs));
        netOut.flip();
        while (netOut.hasRemaining())
        {
            channel.write(netOut);
        }
        return status;
    }

    private static boolean hasRemaining(final ByteBuffer[] buffers)
    {
        for (final ByteBuffer buffer : buffers)
        {
            if (buffer.hasRemaining())
            {
                return true;
            }
        }
        return false;
    }

    @Override
    public String peerIdentity()
    {
        try
        {
            final java.security.cert.Certificate[] chain = engine.getSession().getPeerCertificates();
            if (chain.length > 0 && chain[0] instanceof X509Certificate)
            {
                return ((X509Certificate)chain[0]).getSubjectX500Principal().getName(X500Principal.RFC2253);
            }
            return null;
        }
        catch (final SSLPeerUnverifiedException ex)
        {
            return null;
        }
    }

    @Override
    public String describe()
    {
        return engine.getSession().getProtocol() + " " + engine.getSession().getCipherSuite();
    }

    @Override
    public void close()
    {
        TlsClose.close(writeLock, () ->
        {
            engine.closeOutbound();
            wrapAndFlush(NOTHING);
        }, channel);
    }
}
