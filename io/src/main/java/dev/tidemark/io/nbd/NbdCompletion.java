package dev.tidemark.io.nbd;

/**
 * Completes one asynchronous export operation; may be called from any thread, exactly once.
 *
 * <p>The server sends the reply when it is called, so an export calls it only after the operation's
 * effect is visible to later reads on every connection (and durable when FUA was asked for).
 */
@FunctionalInterface
public interface NbdCompletion
{
    /**
     * @param error {@link NbdProtocol#OK} on success, otherwise an NBD error value such as
     *              {@link NbdProtocol#EIO} or {@link NbdProtocol#ENOSPC}.
     */
    void complete(int error);
}
