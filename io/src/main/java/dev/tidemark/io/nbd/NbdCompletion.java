package dev.tidemark.io.nbd;

import java.util.function.Function;

/**
 * Completes one asynchronous export operation; {@link #complete} may be called from any thread, exactly once,
 * {@link #adapter} only on the thread the export's operation was called on, before the completion is handed on.
 *
 * <p>The server sends the reply when it is called, so an export calls it only after the operation's
 * effect is visible to later reads on every connection (and durable when FUA was asked for).
 *
 * <p>The server reuses its completion objects once their reply is written: an export must not keep a completion,
 * or anything made from it, after calling {@link #complete}.
 */
@FunctionalInterface
public interface NbdCompletion
{
    /**
     * @param error {@link NbdProtocol#OK} on success, otherwise an NBD error value such as
     *              {@link NbdProtocol#EIO} or {@link NbdProtocol#ENOSPC}.
     */
    void complete(int error);

    /**
     * Returns {@code factory}'s adapter of this completion (say, the completion callback another layer wants),
     * made once for the server's reusable completion objects and kept with it, so that an export need not
     * allocate one per request. The adapter must forward to this completion and hold no per-request state.
     *
     * @param type the adapter's type.
     * @param factory makes the adapter; one instance per export (a constant), as the cache is keyed by it.
     * @param <T> the adapter's type.
     * @return the adapter; a new one from completions that do not cache.
     */
    default <T> T adapter(final Class<T> type, final Function<NbdCompletion, ? extends T> factory)
    {
        return type.cast(factory.apply(this));
    }
}
