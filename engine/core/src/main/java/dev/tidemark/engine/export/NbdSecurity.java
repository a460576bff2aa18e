package dev.tidemark.engine.export;

import dev.tidemark.io.nbd.NbdServer;
import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsCredentials;

import java.util.Objects;

/**
 * How the NBD server protects its exports ({@code tls-creds}, {@code tls-authz} and the insecure override of
 * {@code nbd-server-start}); immutable and safe to share between threads.
 *
 * @param credentials server credentials, or {@code null} to serve in clear.
 * @param authorizer  who may connect after TLS authentication, or {@code null} for any authenticated client.
 * @param insecure    allow a clear-text TCP listener on a non-loopback address (the operator said so).
 * @param listener    hears about refused clients (the daemon logs them).
 */
public record NbdSecurity(TlsCredentials credentials, TlsAuthorizer authorizer, boolean insecure,
    NbdServer.Listener listener)
{
    /** Clear text, loopback or Unix sockets only, refusals not reported. */
    public static final NbdSecurity DEFAULT = new NbdSecurity(null, null, false, (refusal, remote, detail) -> { });

    /** Checks the values. */
    public NbdSecurity
    {
        Objects.requireNonNull(listener, "listener");
        if (authorizer != null && credentials == null)
        {
            throw new IllegalArgumentException("tls-authz needs tls-creds");
        }
    }
}
