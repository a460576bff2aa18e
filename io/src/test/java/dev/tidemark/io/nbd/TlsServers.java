package dev.tidemark.io.nbd;

import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsCredentials;

import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * Set up and closed on the test's thread, refusals queued from the servers' threads: an x509 and a PSK NBD server
 * over one {@link TestPki}, both requiring TLS, without exports or listeners yet.
 */
final class TlsServers implements AutoCloseable
{
    /** What either server refused, in order. */
    final BlockingQueue<NbdRefusal> refusals = new LinkedBlockingQueue<>();
    /** Requires a client certificate of the test CA whose DN is {@link TestPki#CLIENT_DN}. */
    final NbdServer x509;
    /** Requires a key of {@code keys.psk} in {@link TestPki#pskServer}, its username allowed by the given authz. */
    final NbdServer psk;

    TlsServers(final TestPki pki, final TlsAuthorizer pskAuthz) throws IOException
    {
        x509 = server(TlsCredentials.x509(pki.server, TlsCredentials.Endpoint.SERVER, true), TestPki.CLIENT_DN::equals);
        psk = server(TlsCredentials.psk(pki.pskServer, TlsCredentials.Endpoint.SERVER, null), pskAuthz);
    }

    private NbdServer server(final TlsCredentials credentials, final TlsAuthorizer authz)
    {
        // A generous timeout: a cold JVM on a loaded machine can take seconds for a TLS handshake.
        final NbdServer server = new NbdServer(16, Duration.ofSeconds(60));
        server.requireTls(credentials, authz);
        server.setListener((refusal, remote, detail) -> refusals.add(refusal));
        return server;
    }

    @Override
    public void close() throws IOException
    {
        x509.close();
        psk.close();
    }
}
