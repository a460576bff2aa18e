package dev.tidemark.engine.job;

/**
 * A token bucket for a job's speed limit in bytes per second; safe for concurrent use by any number of threads.
 *
 * <p>A rate of 0 means unlimited. The bucket holds at most {@link #SLICE_NANOS} worth of tokens, as QEMU's
 * 100 ms rate-limit slice, so an idle job cannot save up a large burst.
 */
public final class RateLimiter
{
    /** Longest burst, in nanoseconds of the current rate. */
    public static final long SLICE_NANOS = 100_000_000L;

    private long bytesPerSecond;
    private long nextFreeNanos;

    /** @param bytesPerSecond the initial rate, {@code >= 0}; 0 = unlimited. */
    public RateLimiter(final long bytesPerSecond)
    {
        if (bytesPerSecond < 0)
        {
            throw new IllegalArgumentException("speed must not be negative: " + bytesPerSecond);
        }
        this.bytesPerSecond = bytesPerSecond;
    }

    /** @return the current rate in bytes per second, 0 = unlimited. */
    public synchronized long rate()
    {
        return bytesPerSecond;
    }

    /**
     * Changes the rate; takes effect for the next {@link #reserve}.
     *
     * @param newBytesPerSecond the rate, {@code >= 0}.
     */
    public synchronized void setRate(final long newBytesPerSecond)
    {
        if (newBytesPerSecond < 0)
        {
            throw new IllegalArgumentException("speed must not be negative: " + newBytesPerSecond);
        }
        bytesPerSecond = newBytesPerSecond;
        nextFreeNanos = 0;
    }

    /**
     * Takes {@code bytes} tokens.
     *
     * @param bytes bytes about to be transferred.
     * @param nowNanos {@link System#nanoTime()}.
     * @return how long the caller must wait before transferring, in nanoseconds (0 = at once).
     */
    public synchronized long reserve(final long bytes, final long nowNanos)
    {
        if (bytesPerSecond == 0)
        {
            return 0;
        }
        if (nextFreeNanos == 0 || nextFreeNanos - (nowNanos - SLICE_NANOS) < 0)
        {
            nextFreeNanos = nowNanos - SLICE_NANOS;
        }
        final double cost = (double)bytes * 1_000_000_000.0 / bytesPerSecond;
        nextFreeNanos += (long)Math.ceil(cost);
        return Math.max(0, nextFreeNanos - nowNanos);
    }
}
