package dev.tidemark.bench.nbd;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * A daemon thread that sleeps 1 ms at a time and records how late it woke; any thread may read or reset it.
 *
 * <p>It does no work, so its worst lateness is the machine's own scheduling delay in the window: what any
 * thread, of any server, could at best have seen. On a virtual machine whose host takes the virtual CPUs away
 * when the guest uses them all (steal), this is the floor under every write latency a harness measures.
 */
final class SchedulingProbe
{
    private static final long PERIOD_NANOS = 1_000_000;

    private final AtomicLong worstLatenessNanos = new AtomicLong();

    void start()
    {
        final Thread thread = new Thread(this::loop, "scheduling-probe");
        thread.setDaemon(true);
        thread.start();
    }

    void reset()
    {
        worstLatenessNanos.set(0);
    }

    double worstMillis()
    {
        return worstLatenessNanos.get() / 1e6;
    }

    private void loop()
    {
        while (true)
        {
            final long before = System.nanoTime();
            LockSupport.parkNanos(PERIOD_NANOS);
            final long lateness = System.nanoTime() - before - PERIOD_NANOS;
            worstLatenessNanos.accumulateAndGet(lateness, Math::max);
        }
    }
}
