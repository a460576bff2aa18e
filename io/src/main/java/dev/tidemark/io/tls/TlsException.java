package dev.tidemark.io.tls;

import java.io.IOException;

/**
 * A TLS setup or session failure with a machine-readable {@link Reason}; immutable, safe to share between
 * threads.
 *
 * <p>Callers decide on {@link #reason()}, never on the message, which is for people.
 */
public final class TlsException extends IOException
{
    private static final long serialVersionUID = 1L;

    /** Why TLS failed. */
    public enum Reason
    {
        /** Credentials could not be loaded: a file is missing, unreadable or malformed. */
        CREDENTIALS,
        /** The peer's certificate chain did not verify (another CA, expired, not yet valid, wrong name). */
        PEER_NOT_TRUSTED,
        /** The peer authenticated but its identity is not allowed by the authorisation list. */
        PEER_NOT_AUTHORIZED,
        /** The peer presented an unknown PSK identity or a wrong key. */
        PSK_MISMATCH,
        /** The handshake failed otherwise: not TLS, no common protocol or cipher, closed mid-handshake. */
        HANDSHAKE
    }

    private final Reason reason;

    /**
     * @param reason  why.
     * @param message for people.
     * @param cause   the underlying failure, or {@code null}.
     */
    public TlsException(final Reason reason, final String message, final Throwable cause)
    {
        super(message, cause);
        this.reason = reason;
    }

    /** @return why TLS failed. */
    public Reason reason()
    {
        return reason;
    }
}
