package dev.tidemark.io.nbd;

/**
 * Why the server refused or dropped a client before transmission; immutable constants, safe to share.
 * Reported through {@link NbdServer.Listener} so the daemon can log them.
 */
public enum NbdRefusal
{
    /** A client sent options in clear to a TLS-only server. */
    TLS_REQUIRED,
    /** The TLS handshake failed (not TLS, no common protocol or cipher, closed mid-handshake). */
    TLS_HANDSHAKE,
    /** The client's certificate did not verify (another CA, expired, not yet valid). */
    TLS_PEER_NOT_TRUSTED,
    /** The client authenticated but tls-authz does not allow its identity. */
    TLS_NOT_AUTHORIZED,
    /** The client offered an unknown PSK username or a wrong key. */
    TLS_PSK_MISMATCH,
    /** The client did not finish the NBD (or TLS) handshake within the handshake timeout. */
    HANDSHAKE_TIMEOUT
}
