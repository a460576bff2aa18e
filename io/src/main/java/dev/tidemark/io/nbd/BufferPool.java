package dev.tidemark.io.nbd;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;

/**
 * A pool of direct buffers in power-of-two size classes from 4 KiB to 32 MiB; safe for concurrent use
 * by any number of threads.
 *
 * <p>Each class keeps at most about 32 MiB worth of idle buffers (and at least two), so idle memory stays
 * bounded. Buffers handed out are bounded too: {@link #acquire} blocks while the buffers out (counted by
 * capacity) would exceed the budget, which is how many pipelined 32 MiB writes from many clients are
 * kept from exhausting direct memory. Every holder releases without needing another acquire, so the
 * wait always ends.
 *
 * <p>The idle buffers of a class wait in a bounded Agrona array queue, so a release on the write path
 * allocates nothing (a linked queue allocated a node per release: 4.5 MB in 12 s of 4 KiB writes, which made
 * the young collections that paused writes).
 */
final class BufferPool
{
    private static final int MIN_SHIFT = 12;
    private static final int MAX_SHIFT = 25;
    private static final int KEEP_BYTES_PER_CLASS = 32 * 1024 * 1024;

    private final List<ManyToManyConcurrentArrayQueue<ByteBuffer>> free;
    private final java.util.concurrent.Semaphore budget;

    /** @param budgetBytes most bytes of buffers out at once; at least 32 MiB. */
    BufferPool(final int budgetBytes)
    {
        if (budgetBytes < 1 << MAX_SHIFT)
        {
            throw new IllegalArgumentException("buffer budget must be at least 32 MiB, was " + budgetBytes);
        }
        budget = new java.util.concurrent.Semaphore(budgetBytes);
        final List<ManyToManyConcurrentArrayQueue<ByteBuffer>> queues = new ArrayList<>();
        for (int shift = MIN_SHIFT; shift <= MAX_SHIFT; shift++)
        {
            queues.add(new ManyToManyConcurrentArrayQueue<>(Math.max(2, KEEP_BYTES_PER_CLASS >> shift)));
        }
        free = List.copyOf(queues);
    }

    /**
     * @param length bytes needed, 0..32 MiB.
     * @return a cleared buffer whose limit is {@code length}.
     */
    ByteBuffer acquire(final int length)
    {
        final int index = classIndex(length);
        budget.acquireUninterruptibly(1 << (index + MIN_SHIFT));
        ByteBuffer buffer = free.get(index).poll();
        if (buffer == null)
        {
            buffer = ByteBuffer.allocateDirect(1 << (index + MIN_SHIFT));
        }
        buffer.clear().limit(length);
        return buffer;
    }

    /** Returns a buffer obtained from {@link #acquire}; the caller must not use it afterwards. */
    void release(final ByteBuffer buffer)
    {
        final int index = classIndex(buffer.capacity());
        budget.release(buffer.capacity());
        // A full queue keeps enough idle buffers of this class: the garbage collector frees this one.
        free.get(index).offer(buffer);
    }

    private static int classIndex(final int length)
    {
        if (length > 1 << MAX_SHIFT)
        {
            throw new IllegalArgumentException("buffer of " + length + " bytes exceeds the 32 MiB limit");
        }
        final int shift = Math.max(MIN_SHIFT, 32 - Integer.numberOfLeadingZeros(Math.max(1, length) - 1));
        return shift - MIN_SHIFT;
    }
}
