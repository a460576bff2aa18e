package dev.tidemark.io;

import java.io.IOException;

/**
 * Why an I/O request failed, as far as its callers act on it; immutable and safe to share between threads.
 *
 * <p>The NBD layer turns it into an error value ({@code NbdProtocol.errorOf}), the job layer decides from it
 * whether a failure means a full device, and the engine's errors carry one through their own reason. Failures
 * say their reason by implementing {@link Carrier}; {@link #of(Throwable)} classifies the others by type.
 */
public enum IoReason
{
    /** The request itself is wrong: outside the device, misaligned, malformed. */
    INVALID_ARGUMENT,
    /** The device refuses writes. */
    READ_ONLY,
    /** The device, or the user's quota on it, is full. */
    NO_SPACE,
    /** The device does not offer the operation. */
    NOT_SUPPORTED,
    /** Any other failure. */
    IO_ERROR;

    /** A failure that knows its reason, as thread-safe as the exception that implements it. */
    public interface Carrier
    {
        /** @return why the request failed. */
        IoReason ioReason();
    }

    /**
     * @param error a failure.
     * @return its reason: the carrier's own, {@link #INVALID_ARGUMENT} for an {@link IllegalArgumentException},
     *         {@link #NO_SPACE} for a JDK {@link IOException} that reports a full device, else {@link #IO_ERROR}.
     */
    public static IoReason of(final Throwable error)
    {
        if (error instanceof Carrier carrier)
        {
            return carrier.ioReason();
        }
        if (error instanceof IllegalArgumentException)
        {
            return INVALID_ARGUMENT;
        }
        if (error instanceof IOException io && isDiskFull(io))
        {
            return NO_SPACE;
        }
        return IO_ERROR;
    }

    /** The JDK reports ENOSPC and EDQUOT only as the OS's text in a plain IOException: the one place that reads it. */
    private static boolean isDiskFull(final IOException error)
    {
        final String message = error.getMessage();
        return message != null && (message.contains("No space left") || message.contains("Disk quota"));
    }
}
