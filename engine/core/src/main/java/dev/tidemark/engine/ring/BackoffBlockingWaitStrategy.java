package dev.tidemark.engine.ring;

import com.lmax.disruptor.AlertException;
import com.lmax.disruptor.Sequence;
import com.lmax.disruptor.SequenceBarrier;
import com.lmax.disruptor.WaitStrategy;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * The write ring's wait strategy; safe for the ring's handler threads and any number of producers.
 *
 * <p>A handler that runs out of work spins briefly (a few microseconds), then: if nothing new was published it blocks
 * until a producer signals (as Disruptor's {@code LiteBlockingWaitStrategy}: a producer pays one volatile read
 * per publish unless someone is blocked), and if new requests were published but an upstream handler is still
 * busy with them (a group commit's force, a copy-before-write waiting for a slow target) it parks for
 * {@value #PARK_NANOS} ns at a time. Disruptor's own blocking strategies busy-spin in that second case, which
 * burns a core for as long as the upstream handler is slow.
 *
 * <p>There is no {@code Thread.yield} phase: on a two-core machine at queue depth 1 (a request every ~80 us) the
 * ring thread then never parked and burned 90 % of a core between requests, for no measurable gain in IOPS
 * (docs/benchmarks.md, "Ring idle CPU"); a guest whose host caps the CPU time of its virtual machine pays that
 * burn as 100 ms stalls once both cores are busy.
 */
public final class BackoffBlockingWaitStrategy implements WaitStrategy
{
    private static final int SPINS = 200;
    private static final long PARK_NANOS = 50_000;

    private final Object mutex = new Object();
    private final AtomicBoolean signalNeeded = new AtomicBoolean();

    @Override
    public long waitFor(final long sequence, final Sequence cursor, final Sequence dependentSequence,
        final SequenceBarrier barrier) throws AlertException, InterruptedException
    {
        long available;
        int counter = 0;
        while ((available = dependentSequence.get()) < sequence)
        {
            barrier.checkAlert();
            if (counter < SPINS)
            {
                counter++;
                Thread.onSpinWait();
            }
            else if (cursor.get() < sequence)
            {
                synchronized (mutex)
                {
                    do
                    {
                        // Announce before the re-check: a producer that publishes after it sees the flag.
                        signalNeeded.set(true);
                        if (cursor.get() >= sequence)
                        {
                            break;
                        }
                        barrier.checkAlert();
                        mutex.wait();
                    }
                    while (cursor.get() < sequence);
                }
            }
            else
            {
                LockSupport.parkNanos(PARK_NANOS);
            }
        }
        return available;
    }

    @Override
    public void signalAllWhenBlocking()
    {
        if (signalNeeded.get() && signalNeeded.getAndSet(false))
        {
            synchronized (mutex)
            {
                mutex.notifyAll();
            }
        }
    }

    @Override
    public String toString()
    {
        return "BackoffBlockingWaitStrategy{spins=" + SPINS + ", parkNanos=" + PARK_NANOS + "}";
    }
}
