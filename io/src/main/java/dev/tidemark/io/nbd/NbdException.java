package dev.tidemark.io.nbd;

import dev.tidemark.io.IoReason;
import java.io.IOException;

/**
 * An NBD failure: an error reply from the server, a failed handshake or a broken connection; immutable,
 * safe to share between threads.
 *
 * <p>Its {@link #ioReason()} follows from the server's error value, so a full or read-only target is told apart
 * from other failures by type, not by text.
 */
public class NbdException extends IOException implements IoReason.Carrier
{
    private static final long serialVersionUID = 1L;

    private final int error;

    /**
     * @param message what failed and where.
     * @param error   the NBD error value the server sent, or 0 when the failure is not a server reply.
     */
    public NbdException(final String message, final int error)
    {
        super(message);
        this.error = error;
    }

    /**
     * @param message what failed and where.
     * @param cause   the underlying failure.
     */
    public NbdException(final String message, final Throwable cause)
    {
        super(message, cause);
        this.error = 0;
    }

    /** @return the NBD error value from the server ({@link NbdProtocol#EIO} etc.), 0 if none. */
    public int error()
    {
        return error;
    }

    /** @return the reason the server's error value stands for; {@link IoReason#IO_ERROR} for other failures. */
    @Override
    public IoReason ioReason()
    {
        return NbdProtocol.reasonOf(error);
    }
}
