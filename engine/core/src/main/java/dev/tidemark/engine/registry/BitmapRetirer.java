package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.io.BackgroundPriority;
import org.agrona.concurrent.ManyToOneConcurrentLinkedQueue;

import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * Closes retired bitmaps on one thread of its own; {@link #retire} is lock-free and may be called from any thread,
 * the write ring's included, and {@link #close} from any thread but that one.
 *
 * <p>The ring retires a bitmap at the cut of a clear, a remove or a backup's end, so handing one over must cost the
 * ring a queue offer and nothing more: no wake-up (the thread polls, {@link #POLL_NANOS}), no lock (a query holding
 * the registry's monitor would hold the ring), no executor (its queue takes a lock, and a capturing task came through
 * a method handle the ring's cold code paid for), no path built from strings. Unmapping 2 GiB, waiting for readers
 * that pin the bitmap and deleting its file all happen here, on the retiring thread.
 */
final class BitmapRetirer
{
    /**
     * How often the retiring thread looks for work. It is never woken: a wake-up from the ring let the scheduler run
     * it in the ring's place, and a backup's finish held the ring 0.5-1.8 ms longer in the wake-up than in the rest
     * of its work (docs/benchmarks.md, "Stop 15"). A bitmap waits this long at most before it is unmapped.
     */
    private static final long POLL_NANOS = 20_000_000L;

    /** One bitmap to close, and its file's id (0: none to delete). */
    record Retired(DirtyBitmap bitmap, long fileId)
    {
    }

    private final ManyToOneConcurrentLinkedQueue<Retired> queue = new ManyToOneConcurrentLinkedQueue<>();
    private final Consumer<Retired> closer;
    private final String threadName;
    private volatile Thread thread;
    private volatile boolean stopping;

    /**
     * @param closer closes one bitmap (waits for its readers, unmaps, deletes its file); runs on the retiring thread.
     * @param threadName the retiring thread's name.
     */
    BitmapRetirer(final Consumer<Retired> closer, final String threadName)
    {
        this.closer = closer;
        this.threadName = threadName;
    }

    /** Starts the retiring thread if it is not running, so that a later {@link #retire} on the ring does not. */
    void start()
    {
        if (thread == null)
        {
            startThread();
        }
    }

    private synchronized void startThread()
    {
        if (thread != null || stopping)
        {
            return;
        }
        final Thread started = new Thread(this::run, threadName);
        started.setDaemon(true);
        started.start();
        thread = started;
    }

    /**
     * Hands a bitmap over to be closed once nobody reads it; any thread, never blocks, wakes nobody.
     *
     * @param bitmap the bits that left the registry.
     * @param fileId the id of its file to delete after closing it, or 0.
     */
    void retire(final DirtyBitmap bitmap, final long fileId)
    {
        queue.offer(new Retired(bitmap, fileId));
        if (stopping)
        {
            // Closed: nobody else will take it (the ring is stopped by then, so this is not the ring).
            drainAfterStop();
            return;
        }
        if (thread == null)
        {
            startThread();
        }
    }

    private void run()
    {
        // Unmapping and deleting can wait for a core the guest's writes need.
        BackgroundPriority.applyToCurrentThread();
        while (true)
        {
            final Retired next = queue.poll();
            if (next != null)
            {
                closer.accept(next);
                continue;
            }
            if (stopping)
            {
                return;
            }
            LockSupport.parkNanos(this, POLL_NANOS);
        }
    }

    /**
     * Closes every bitmap handed over so far, then stops the retiring thread; waits as long as that takes (a reader
     * may still pin a retired bitmap). Later calls to {@link #retire} close on the caller's thread.
     */
    void close()
    {
        stopping = true;
        final Thread retiring = thread;
        if (retiring != null)
        {
            LockSupport.unpark(retiring);
        }
        drainAfterStop();
    }

    /** After {@link #stopping} is set: waits for the thread to end, then is the queue's one consumer. */
    private synchronized void drainAfterStop()
    {
        final Thread retiring = thread;
        if (retiring != null)
        {
            boolean interrupted = false;
            while (true)
            {
                try
                {
                    retiring.join();
                    break;
                }
                catch (final InterruptedException ex)
                {
                    interrupted = true;
                }
            }
            if (interrupted)
            {
                Thread.currentThread().interrupt();
            }
        }
        Retired left;
        while ((left = queue.poll()) != null)
        {
            closer.accept(left);
        }
    }
}
