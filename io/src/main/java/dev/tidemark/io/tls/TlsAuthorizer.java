package dev.tidemark.io.tls;

/**
 * Decides whether an authenticated TLS peer may use the server, as QEMU's {@code tls-authz} objects do;
 * implementations must be safe to call from any connection's thread.
 */
@FunctionalInterface
public interface TlsAuthorizer
{
    /**
     * @param identity the peer's certificate distinguished name (RFC 4514) or PSK username; {@code null}
     *                 when the peer presented no certificate.
     * @return whether the peer may continue.
     */
    boolean isAllowed(String identity);
}
