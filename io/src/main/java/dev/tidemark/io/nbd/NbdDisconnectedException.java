package dev.tidemark.io.nbd;

/**
 * The connection to the NBD server broke, so the request's outcome is unknown; immutable, safe to share
 * between threads.
 */
public final class NbdDisconnectedException extends NbdException
{
    private static final long serialVersionUID = 1L;

    /**
     * @param message which connection and what was in flight.
     * @param cause   the I/O failure that ended it, may be {@code null}.
     */
    public NbdDisconnectedException(final String message, final Throwable cause)
    {
        super(message, cause);
    }
}
