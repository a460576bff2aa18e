package dev.tidemark.engine.job;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Per-chunk copy state of one point-in-time copy (a backup job or a fleecing view); safe for concurrent use by the
 * copying pump, the ring thread that runs copy-before-write and readers.
 *
 * <p>Each chunk is in one of four states: not needed (nothing to preserve), needed (old data must still be
 * preserved), claimed (one thread is copying it now) and done (preserved). {@link #tryClaim} moves a needed chunk
 * to claimed with one CAS, so exactly one thread copies each chunk; {@link #markDone} publishes the copy and wakes
 * threads in {@link #awaitDone}; {@link #release} hands a claim back after a failed copy. {@link #abandon} ends
 * the copy for good (the job failed or the view broke): every waiter returns and nothing more is claimed.
 *
 * <p>The needed set is filled before the copy starts (at the cut, on the mark thread, or before the pump starts)
 * and only shrinks afterwards (through claims), so readers need no lock to consult it.
 */
public final class ChunkClaims
{
    private static final int STRIPES = 64;

    private final long chunkSize;
    private final int chunkShift;
    private final long diskSize;
    private final long chunkCount;
    private final AtomicLongArray needed;
    private final AtomicLongArray claimed;
    private final AtomicLongArray done;
    private final Object[] stripes = new Object[STRIPES];
    private volatile boolean abandoned;

    /**
     * @param diskSize bytes of the disk.
     * @param chunkSize bytes per chunk, a power of two.
     */
    public ChunkClaims(final long diskSize, final long chunkSize)
    {
        if (Long.bitCount(chunkSize) != 1 || chunkSize < 512)
        {
            throw new IllegalArgumentException("chunk size must be a power of two >= 512: " + chunkSize);
        }
        if (diskSize <= 0)
        {
            throw new IllegalArgumentException("disk size must be positive: " + diskSize);
        }
        this.chunkSize = chunkSize;
        this.chunkShift = Long.numberOfTrailingZeros(chunkSize);
        this.diskSize = diskSize;
        this.chunkCount = (diskSize + chunkSize - 1) >>> chunkShift;
        final int words = Math.toIntExact((chunkCount + 63) >>> 6);
        this.needed = new AtomicLongArray(words);
        this.claimed = new AtomicLongArray(words);
        this.done = new AtomicLongArray(words);
        for (int i = 0; i < STRIPES; i++)
        {
            stripes[i] = new Object();
        }
    }

    /** @return bytes per chunk. */
    public long chunkSize()
    {
        return chunkSize;
    }

    /** @return number of chunks. */
    public long chunkCount()
    {
        return chunkCount;
    }

    /** @return bytes of the disk. */
    public long diskSize()
    {
        return diskSize;
    }

    /** @param offset a byte. @return the chunk that holds it. */
    public long chunkOf(final long offset)
    {
        return offset >>> chunkShift;
    }

    /** @param chunk a chunk. @return its first byte. */
    public long offsetOf(final long chunk)
    {
        return chunk << chunkShift;
    }

    /** @param chunk a chunk. @return its length (the last chunk may be short). */
    public long lengthOf(final long chunk)
    {
        return Math.min(chunkSize, diskSize - (chunk << chunkShift));
    }

    /**
     * Marks every chunk touching {@code [offset, offset + length)} as needed; before the copy starts.
     *
     * @param offset first byte.
     * @param length bytes, {@code > 0}.
     */
    public void need(final long offset, final long length)
    {
        if (offset < 0 || length <= 0 || offset + length > diskSize)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside disk of " + diskSize);
        }
        final long first = chunkOf(offset);
        final long last = chunkOf(offset + length - 1);
        for (long c = first; c <= last; c++)
        {
            set(needed, c);
        }
    }

    /** Marks every chunk as needed. */
    public void needAll()
    {
        final int words = needed.length();
        for (int i = 0; i < words; i++)
        {
            final long first = (long)i << 6;
            final long count = Math.min(64, chunkCount - first);
            needed.set(i, count == 64 ? -1L : (1L << count) - 1);
        }
    }

    /** @return how many chunks are needed in total (claimed and done ones included). */
    public long neededCount()
    {
        long n = 0;
        for (int i = 0; i < needed.length(); i++)
        {
            n += Long.bitCount(needed.get(i));
        }
        return n;
    }

    /** @return bytes of the needed chunks. */
    public long neededBytes()
    {
        long bytes = 0;
        for (long c = nextNeeded(0); c >= 0; c = nextNeeded(c + 1))
        {
            bytes += lengthOf(c);
        }
        return bytes;
    }

    /**
     * @param from first chunk to look at.
     * @return the first needed chunk at or after {@code from} (claimed or not), or -1.
     */
    public long nextNeeded(final long from)
    {
        if (from >= chunkCount)
        {
            return -1;
        }
        int word = (int)(from >>> 6);
        long bits = needed.get(word) & (-1L << (from & 63));
        while (bits == 0)
        {
            word++;
            if (word >= needed.length())
            {
                return -1;
            }
            bits = needed.get(word);
        }
        final long c = ((long)word << 6) + Long.numberOfTrailingZeros(bits);
        return c < chunkCount ? c : -1;
    }

    /**
     * @param from first chunk to look at.
     * @return the first chunk at or after {@code from} that is needed but not yet done, or -1.
     */
    public long nextPending(final long from)
    {
        if (from >= chunkCount)
        {
            return -1;
        }
        int word = (int)(from >>> 6);
        long bits = needed.get(word) & ~done.get(word) & (-1L << (from & 63));
        while (bits == 0)
        {
            word++;
            if (word >= needed.length())
            {
                return -1;
            }
            bits = needed.get(word) & ~done.get(word);
        }
        final long c = ((long)word << 6) + Long.numberOfTrailingZeros(bits);
        return c < chunkCount ? c : -1;
    }

    /** @param chunk a chunk. @return whether it must be preserved (in any of the states needed/claimed/done). */
    public boolean isNeeded(final long chunk)
    {
        return get(needed, chunk);
    }

    /** @param chunk a chunk. @return whether it was preserved. */
    public boolean isDone(final long chunk)
    {
        return get(done, chunk);
    }

    /** @param chunk a chunk. @return whether someone claimed it (it may be done since). */
    public boolean isClaimed(final long chunk)
    {
        return get(claimed, chunk);
    }

    /**
     * Claims a needed, unclaimed chunk.
     *
     * @param chunk a chunk.
     * @return {@code true} if the caller now owns it and must copy it, then {@link #markDone} or {@link #release}.
     */
    public boolean tryClaim(final long chunk)
    {
        if (abandoned || !get(needed, chunk))
        {
            return false;
        }
        final int word = (int)(chunk >>> 6);
        final long bit = 1L << (chunk & 63);
        while (true)
        {
            final long current = claimed.get(word);
            if ((current & bit) != 0)
            {
                return false;
            }
            if (claimed.compareAndSet(word, current, current | bit))
            {
                return true;
            }
        }
    }

    /** @param chunk a chunk the caller claimed and copied. */
    public void markDone(final long chunk)
    {
        set(done, chunk);
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            stripe.notifyAll();
        }
    }

    /** @param chunk a chunk the caller claimed but could not copy; it becomes claimable again. */
    public void release(final long chunk)
    {
        clear(claimed, chunk);
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            stripe.notifyAll();
        }
    }

    /**
     * Waits until a claimed chunk is done, released or the copy was abandoned.
     *
     * @param chunk a chunk.
     * @return {@code true} when it is done.
     * @throws InterruptedException when interrupted.
     */
    public boolean awaitDone(final long chunk) throws InterruptedException
    {
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            while (!get(done, chunk) && get(claimed, chunk) && !abandoned)
            {
                stripe.wait();
            }
        }
        return get(done, chunk);
    }

    /** Ends the copy: nothing more is claimed and every waiter returns. */
    public void abandon()
    {
        abandoned = true;
        for (final Object stripe : stripes)
        {
            synchronized (stripe)
            {
                stripe.notifyAll();
            }
        }
    }

    /** @return whether {@link #abandon()} was called. */
    public boolean isAbandoned()
    {
        return abandoned;
    }

    /** @return how many chunks are done. */
    public long doneCount()
    {
        long n = 0;
        for (int i = 0; i < done.length(); i++)
        {
            n += Long.bitCount(done.get(i));
        }
        return n;
    }

    /**
     * Walks the done chunks as coalesced byte extents.
     *
     * @param consumer receives {@code (offset, length)}; {@code false} stops.
     */
    public void forEachDoneExtent(final dev.tidemark.bitmap.ExtentConsumer consumer)
    {
        long c = 0;
        while (c < chunkCount)
        {
            if (!get(done, c))
            {
                c++;
                continue;
            }
            final long start = c;
            while (c < chunkCount && get(done, c))
            {
                c++;
            }
            final long offset = offsetOf(start);
            final long end = Math.min(diskSize, offsetOf(c));
            if (!consumer.accept(offset, end - offset))
            {
                return;
            }
        }
    }

    private Object stripe(final long chunk)
    {
        return stripes[(int)(chunk & (STRIPES - 1))];
    }

    private static boolean get(final AtomicLongArray bits, final long chunk)
    {
        return (bits.get((int)(chunk >>> 6)) & (1L << (chunk & 63))) != 0;
    }

    private static void set(final AtomicLongArray bits, final long chunk)
    {
        final int word = (int)(chunk >>> 6);
        final long bit = 1L << (chunk & 63);
        long current = bits.get(word);
        while ((current & bit) == 0 && !bits.compareAndSet(word, current, current | bit))
        {
            current = bits.get(word);
        }
    }

    private static void clear(final AtomicLongArray bits, final long chunk)
    {
        final int word = (int)(chunk >>> 6);
        final long bit = 1L << (chunk & 63);
        long current = bits.get(word);
        while ((current & bit) != 0 && !bits.compareAndSet(word, current, current & ~bit))
        {
            current = bits.get(word);
        }
    }
}
