package dev.tidemark.io.testing;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;
import java.util.function.Supplier;

/** Small waits for tests; stateless, any thread (each call blocks only its caller). */
public final class Waits
{
    private Waits()
    {
    }

    /**
     * Parks until at least {@code nanos} have passed, however often the park returns early.
     *
     * @param nanos how long.
     */
    public static void sleepAtLeast(final long nanos)
    {
        final long end = System.nanoTime() + nanos;
        for (long left = nanos; left > 0; left = end - System.nanoTime())
        {
            LockSupport.parkNanos(left);
        }
    }

    /**
     * Takes values until one is {@code found}, for a figure another thread publishes a moment after the event the
     * test waited for (a statistics window that each take restarts: an early, empty take loses nothing).
     *
     * @param take reads (and restarts) the value.
     * @param found whether the value is there.
     * @param timeoutSeconds how long to keep taking.
     * @param <T> the value's type.
     * @return the first value found, or the last one taken when the time ran out.
     */
    public static <T> T firstFound(final Supplier<T> take, final Predicate<T> found, final long timeoutSeconds)
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        T value = take.get();
        while (!found.test(value) && System.nanoTime() - deadline < 0)
        {
            Thread.onSpinWait();
            value = take.get();
        }
        return value;
    }
}
