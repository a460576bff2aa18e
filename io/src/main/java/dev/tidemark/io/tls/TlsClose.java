package dev.tidemark.io.tls;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.util.concurrent.locks.ReentrantLock;

/** Stateless, any thread: the close both TLS channels share, best-effort close_notify and then the socket. */
final class TlsClose
{
    /** Runs on the closing thread under the channel's write lock: queues and sends close_notify. */
    @FunctionalInterface
    interface CloseNotify
    {
        void send() throws IOException;
    }

    private TlsClose()
    {
    }

    /** Sends close_notify when no writer holds {@code writeLock}, then closes {@code channel}; never throws. */
    static void close(final ReentrantLock writeLock, final CloseNotify closeNotify, final SocketChannel channel)
    {
        // close_notify only when no writer holds the lock: a stuck peer must not block closing.
        if (writeLock.tryLock())
        {
            try
            {
                closeNotify.send();
            }
            catch (final IOException | RuntimeException ex)
            {
                // Best effort: the socket closes regardless.
            }
            finally
            {
                writeLock.unlock();
            }
        }
        try
        {
            channel.close();
        }
        catch (final IOException ex)
        {
            // Nothing left to release.
        }
    }
}
