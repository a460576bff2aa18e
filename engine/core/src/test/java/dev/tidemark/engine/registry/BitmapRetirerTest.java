package dev.tidemark.engine.registry;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The retiring thread closes each bitmap handed to it exactly once, wakes for one handed over while it sleeps, never
 * makes the handing thread wait for a slow close, and leaves nothing unclosed after {@link BitmapRetirer#close}.
 * Runs on JUnit's thread, producer threads and the retirer's own thread; bitmaps are stood in for by file ids.
 */
@Timeout(60)
class BitmapRetirerTest
{
    private static final String THREAD = "retirer-under-test";

    @Test
    void everyRetiredBitmapIsClosedOnceOnTheRetiringThreadAndCloseWaitsForAll() throws Exception
    {
        final Map<Long, String> closedBy = new ConcurrentHashMap<>();
        final AtomicInteger twice = new AtomicInteger();
        final BitmapRetirer retirer = new BitmapRetirer(retired ->
        {
            if (closedBy.putIfAbsent(retired.fileId(), Thread.currentThread().getName()) != null)
            {
                twice.incrementAndGet();
            }
        }, THREAD);
        final int producers = 4;
        final int each = 5_000;
        final Thread[] threads = new Thread[producers];
        for (int p = 0; p < producers; p++)
        {
            final long base = 1 + (long)p * each;
            threads[p] = new Thread(() ->
            {
                for (int i = 0; i < each; i++)
                {
                    retirer.retire(null, base + i);
                    if (i % 500 == 0)
                    {
                        // Let the retiring thread drain and park now and then, so wake-ups are exercised too.
                        sleepMillis(1);
                    }
                }
            });
            threads[p].start();
        }
        for (final Thread thread : threads)
        {
            thread.join();
        }
        retirer.close();
        assertThat(twice).hasValue(0);
        assertThat(closedBy).hasSize(producers * each);
        assertThat(closedBy.values()).containsOnly(THREAD);
    }

    @Test
    void aBitmapRetiredWhileTheThreadSleepsIsClosedPromptly() throws Exception
    {
        final AtomicReference<CountDownLatch> closed = new AtomicReference<>();
        final BitmapRetirer retirer = new BitmapRetirer(retired -> closed.get().countDown(), THREAD);
        retirer.start();
        try
        {
            for (int round = 0; round < 10; round++)
            {
                // Long enough for the thread to find the queue empty and park (it looks again every 20 ms).
                sleepMillis(30);
                final CountDownLatch latch = new CountDownLatch(1);
                closed.set(latch);
                retirer.retire(null, round + 1);
                assertThat(latch.await(400, TimeUnit.MILLISECONDS))
                    .as("round %d: the parked retiring thread did not find it", round).isTrue();
            }
        }
        finally
        {
            retirer.close();
        }
    }

    @Test
    void aSlowCloseNeverHoldsTheThreadThatRetires() throws Exception
    {
        final CountDownLatch release = new CountDownLatch(1);
        final AtomicInteger closed = new AtomicInteger();
        final BitmapRetirer retirer = new BitmapRetirer(retired ->
        {
            awaitQuietly(release);
            closed.incrementAndGet();
        }, THREAD);
        final long start = System.nanoTime();
        for (int i = 1; i <= 100; i++)
        {
            retirer.retire(null, i);
        }
        final long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        assertThat(closed).hasValue(0);
        // A watchdog, not a speed goal: retire only queues, while every close is stuck.
        assertThat(millis).isLessThan(5_000);
        release.countDown();
        retirer.close();
        assertThat(closed).hasValue(100);
    }

    @Test
    void afterCloseARetiredBitmapIsClosedOnTheCallersThread()
    {
        final Map<Long, String> closedBy = new ConcurrentHashMap<>();
        final BitmapRetirer retirer = new BitmapRetirer(
            retired -> closedBy.put(retired.fileId(), Thread.currentThread().getName()), THREAD);
        retirer.retire(null, 1);
        retirer.close();
        retirer.retire(null, 2);
        assertThat(closedBy).containsEntry(1L, THREAD).containsEntry(2L, Thread.currentThread().getName());
    }

    private static void sleepMillis(final long millis)
    {
        try
        {
            Thread.sleep(millis);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }

    private static void awaitQuietly(final CountDownLatch latch)
    {
        try
        {
            latch.await();
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }
}
