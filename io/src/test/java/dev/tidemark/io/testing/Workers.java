package dev.tidemark.io.testing;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Runs a test body on several threads released at once and fails with the first failure; each call is confined to
 * its calling thread, the body runs on the workers.
 */
public final class Workers
{
    /** What each worker runs; called once per worker on its own thread. */
    @FunctionalInterface
    public interface Body
    {
        /**
         * @param index the worker's number, 0 to threads - 1.
         * @param random the worker's own generator, seeded {@code seed + index}.
         * @throws Exception to fail the run.
         */
        void run(int index, SplittableRandom random) throws Exception;
    }

    private Workers()
    {
    }

    /**
     * @param threads how many workers.
     * @param seed the run's seed, named in the failure.
     * @param body what each worker runs.
     * @throws InterruptedException if interrupted while waiting for the workers.
     * @throws AssertionError with the first worker's failure as its cause.
     */
    public static void run(final int threads, final long seed, final Body body) throws InterruptedException
    {
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final CountDownLatch start = new CountDownLatch(1);
        final List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++)
        {
            final int index = t;
            final SplittableRandom random = new SplittableRandom(seed + t);
            final Thread worker = new Thread(() ->
            {
                try
                {
                    start.await();
                    body.run(index, random);
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
            });
            workers.add(worker);
            worker.start();
        }
        start.countDown();
        for (final Thread worker : workers)
        {
            worker.join();
        }
        if (failure.get() != null)
        {
            throw new AssertionError("seed " + seed, failure.get());
        }
    }
}
