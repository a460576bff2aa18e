package dev.tidemark.io;

import org.agrona.BufferUtil;
import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Safe for concurrent use by any number of threads: a pool of aligned direct {@link ByteBuffer}s in
 * fixed power-of-two size classes, for O_DIRECT I/O and copy loops.
 *
 * <p>{@link #acquire(int)} hands out a buffer of the smallest class that holds the request (cleared, its
 * limit set to the request), reusing an idle one when there is one and allocating otherwise; it never
 * blocks. {@link #release(ByteBuffer)} takes it back. The pool is bounded: each class keeps at most
 * {@code maxIdlePerClass} idle buffers and lets the rest go to the garbage collector. Requests above the
 * largest class are refused rather than silently allocated, so callers size their I/O to the pool.
 *
 * <p>Every buffer handed out is remembered by address until released: releasing a foreign buffer or
 * releasing twice is an {@link IllegalArgumentException}, never a corrupted pool.
 */
public final class AlignedBufferPool
{
    private final int alignment;
    private final int minShift;
    private final int maxShift;
    private final int maxIdlePerClass;
    private final List<ManyToManyConcurrentArrayQueue<ByteBuffer>> idle;
    private final Set<Long> outstanding = ConcurrentHashMap.newKeySet();
    private final AtomicLong allocations = new AtomicLong();

    /**
     * @param alignment       address alignment of every buffer, a power of two (4096 suits O_DIRECT).
     * @param minSize         the smallest class, a power of two.
     * @param maxSize         the largest class, a power of two, at least {@code minSize}.
     * @param maxIdlePerClass idle buffers kept per class, at least 1; rounded up to a power of two.
     * @throws IllegalArgumentException on any other value.
     */
    public AlignedBufferPool(final int alignment, final int minSize, final int maxSize, final int maxIdlePerClass)
    {
        if (alignment <= 0 || Integer.bitCount(alignment) != 1)
        {
            throw new IllegalArgumentException("alignment " + alignment + " is not a power of two");
        }
        if (minSize <= 0 || Integer.bitCount(minSize) != 1 || maxSize < minSize || Integer.bitCount(maxSize) != 1)
        {
            throw new IllegalArgumentException("size classes [" + minSize + ", " + maxSize
                + "] are not powers of two with min <= max");
        }
        if (maxIdlePerClass < 1)
        {
            throw new IllegalArgumentException("maxIdlePerClass " + maxIdlePerClass + " < 1");
        }
        this.alignment = alignment;
        this.minShift = Integer.numberOfTrailingZeros(minSize);
        this.maxShift = Integer.numberOfTrailingZeros(maxSize);
        final List<ManyToManyConcurrentArrayQueue<ByteBuffer>> queues = new ArrayList<>();
        for (int shift = minShift; shift <= maxShift; shift++)
        {
            queues.add(new ManyToManyConcurrentArrayQueue<>(maxIdlePerClass));
        }
        this.idle = List.copyOf(queues);
        // Agrona's queue rounds its capacity up to a power of two; that is the real bound.
        this.maxIdlePerClass = idle.get(0).capacity();
    }

    /** @return 4 KiB-aligned classes from 4 KiB to 4 MiB, 8 idle buffers each. */
    public static AlignedBufferPool standard()
    {
        return new AlignedBufferPool(4096, 4096, 4 << 20, 8);
    }

    /**
     * @param capacity bytes needed, {@code 1 <= capacity <= maxSize}.
     * @return a cleared buffer of the class that holds {@code capacity}, limit set to {@code capacity}.
     * @throws IllegalArgumentException if {@code capacity} is outside the classes.
     */
    public ByteBuffer acquire(final int capacity)
    {
        if (capacity < 1 || capacity > (1 << maxShift))
        {
            throw new IllegalArgumentException("buffer of " + capacity + " bytes outside the pool's classes [1, "
                + (1 << maxShift) + "]");
        }
        final int shift = Math.max(minShift, 32 - Integer.numberOfLeadingZeros(capacity - 1));
        ByteBuffer buffer = idle.get(shift - minShift).poll();
        if (buffer == null)
        {
            buffer = BufferUtil.allocateDirectAligned(1 << shift, alignment);
            allocations.incrementAndGet();
        }
        buffer.clear().limit(capacity);
        outstanding.add(BufferUtil.address(buffer));
        return buffer;
    }

    /**
     * Returns a buffer from {@link #acquire(int)}; the caller must not touch it afterwards.
     *
     * @throws IllegalArgumentException if it did not come from this pool or was already released.
     */
    public void release(final ByteBuffer buffer)
    {
        if (!buffer.isDirect() || !outstanding.remove(BufferUtil.address(buffer)))
        {
            throw new IllegalArgumentException("buffer " + buffer + " was not acquired from this pool or was "
                + "already released");
        }
        final int shift = Integer.numberOfTrailingZeros(buffer.capacity());
        // A full class queue drops the buffer: that is the bound on idle memory.
        idle.get(shift - minShift).offer(buffer);
    }

    /** @return the address alignment of every buffer. */
    public int alignment()
    {
        return alignment;
    }

    /** @return the largest request {@link #acquire(int)} accepts. */
    public int maxSize()
    {
        return 1 << maxShift;
    }

    /** @return idle buffers kept per class at most (the constructor's value rounded up to a power of two). */
    public int maxIdlePerClass()
    {
        return maxIdlePerClass;
    }

    /** @return buffers handed out and not yet released. */
    public int outstanding()
    {
        return outstanding.size();
    }

    /** @return idle buffers held now, across classes. */
    public int idle()
    {
        int total = 0;
        for (final ManyToManyConcurrentArrayQueue<ByteBuffer> queue : idle)
        {
            total += queue.size();
        }
        return total;
    }

    /** @return how many buffers the pool has allocated since it was made. */
    public long allocations()
    {
        return allocations.get();
    }
}
