package dev.tidemark.io.tls;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * An established TLS session over a connected blocking socket: one thread may read while another writes,
 * but reads must not overlap each other and neither may writes (callers serialise writes under their send
 * lock).
 */
public interface TlsChannel extends AutoCloseable
{
    /**
     * Reads application bytes, blocking until at least one is available.
     *
     * @return bytes read, or -1 when the peer closed the session or the socket.
     */
    int read(ByteBuffer dst) throws IOException;

    /** Writes every remaining byte of {@code srcs}, in order. */
    void write(ByteBuffer... srcs) throws IOException;

    /**
     * @return the authenticated peer: the RFC 4514 distinguished name of its certificate (x509) or its PSK
     *         username; {@code null} when the peer presented no certificate.
     */
    String peerIdentity();

    /** @return the negotiated protocol and cipher suite, e.g. {@code TLSv1.3 TLS_AES_128_GCM_SHA256}. */
    String describe();

    /** Sends close_notify (best effort) and closes the socket. */
    @Override
    void close();
}
