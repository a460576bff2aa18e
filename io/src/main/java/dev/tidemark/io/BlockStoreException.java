package dev.tidemark.io;

import java.util.Objects;

/**
 * An I/O failure that says why it happened ({@link IoReason}); immutable and safe to share between threads.
 */
public class BlockStoreException extends java.io.IOException implements IoReason.Carrier
{
    private static final long serialVersionUID = 1L;

    private final IoReason reason;

    /**
     * @param reason why the request failed.
     * @param message what failed and where.
     */
    public BlockStoreException(final IoReason reason, final String message)
    {
        super(message);
        this.reason = Objects.requireNonNull(reason, "reason");
    }

    @Override
    public IoReason ioReason()
    {
        return reason;
    }
}
