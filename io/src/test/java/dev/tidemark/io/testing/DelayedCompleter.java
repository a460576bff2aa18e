package dev.tidemark.io.testing;

import dev.tidemark.io.nbd.NbdCompletion;

import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Completes requests on other threads after seeded random delays, as an asynchronous export would, and keeps the
 * first exception a completion threw; thread-safe.
 */
public final class DelayedCompleter implements AutoCloseable
{
    private final ScheduledExecutorService delays = Executors.newScheduledThreadPool(2);
    private final ExecutorService completers;
    private final SplittableRandom random;
    private final int maxDelayMicros;
    private final AtomicReference<Throwable> unexpected = new AtomicReference<>();

    /**
     * @param seed the delays' seed.
     * @param threads how many threads complete.
     * @param maxDelayMicros the delays are below this.
     */
    public DelayedCompleter(final long seed, final int threads, final int maxDelayMicros)
    {
        this.random = new SplittableRandom(seed);
        this.completers = Executors.newFixedThreadPool(threads);
        this.maxDelayMicros = maxDelayMicros;
    }

    /**
     * Completes {@code done} with {@code error} a random delay from now, on a completing thread.
     *
     * @param done the completion.
     * @param error the NBD error value.
     */
    public void later(final NbdCompletion done, final int error)
    {
        final long micros;
        synchronized (random)
        {
            micros = random.nextInt(maxDelayMicros);
        }
        delays.schedule(() -> completers.execute(() ->
        {
            try
            {
                done.complete(error);
            }
            catch (final Throwable ex)
            {
                unexpected.compareAndSet(null, ex);
            }
        }), micros, TimeUnit.MICROSECONDS);
    }

    /** @return the first exception a completion threw, or null. */
    public Throwable unexpected()
    {
        return unexpected.get();
    }

    @Override
    public void close()
    {
        delays.shutdownNow();
        completers.shutdownNow();
    }
}
