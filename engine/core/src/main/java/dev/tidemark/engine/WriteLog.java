package dev.tidemark.engine;

import java.util.concurrent.atomic.AtomicLong;

/**
 * The extents of the data writes a disk's ring marked while the log was open ({@link TrackedDisk#openWriteLog()});
 * appended to by the ring's mark thread only; read by any thread up to {@link #size()}, which the appender publishes
 * after the entries, and by the mark thread in full.
 *
 * <p>It lets a control action build its new state off the ring thread from a copy of the bitmaps, catch up with the
 * writes logged meanwhile (still off the ring), and at its cut apply only the last few: the log holds every write
 * marked after the open returned, and every write marked before is in the bitmaps. It is exact only if no other cut
 * committed between its opening and the action's cut, which the action checks by comparing {@link #epoch()} with
 * {@link CutContext#epoch()}.
 */
public final class WriteLog
{
    private static final int BLOCK_LONGS = 8192;
    /** Extents logged before the log gives up (the action then works at the cut instead): 16 MiB of longs. */
    private static final int MAX_EXTENTS = 1 << 20;

    private final long[][] blocks = new long[2 * MAX_EXTENTS / BLOCK_LONGS][];
    /** Longs written and published (release store after the entries, acquire load before reading them). */
    private final AtomicLong size = new AtomicLong();
    private long appended;
    private volatile long epoch = -1;
    private volatile boolean overflowed;

    /**
     * Records the epoch the log holds every write of; called once, by the ring's mark thread, in the task that opens
     * the log.
     *
     * @param first the epoch that the opening task's cut opens.
     */
    public void opened(final long first)
    {
        epoch = first;
    }

    /** @return the epoch the log holds every write of from its start, or -1 before it opened. */
    public long epoch()
    {
        return epoch;
    }

    /** @return whether it holds every write marked since it opened (it gives up past a bound). */
    public boolean complete()
    {
        return !overflowed;
    }

    /**
     * @param cut the cut an action runs at, on the mark thread.
     * @return whether the log holds every write since it opened and no other cut committed in between: only then may
     *         the action apply the logged writes to what it built before the cut instead of doing the work itself.
     */
    public boolean isExactAt(final CutContext cut)
    {
        return complete() && epoch == cut.epoch();
    }

    /** @return extents published so far; any thread. */
    public long size()
    {
        return size.get() / 2;
    }

    /**
     * Adds one marked write; the ring's mark thread only.
     *
     * @param offset first byte.
     * @param length bytes.
     */
    public void add(final long offset, final long length)
    {
        if (overflowed)
        {
            return;
        }
        if (appended >= 2L * MAX_EXTENTS)
        {
            overflowed = true;
            return;
        }
        final int block = (int)(appended / BLOCK_LONGS);
        final int at = (int)(appended % BLOCK_LONGS);
        if (blocks[block] == null)
        {
            blocks[block] = new long[BLOCK_LONGS];
        }
        blocks[block][at] = offset;
        blocks[block][at + 1] = length;
        appended += 2;
        size.lazySet(appended);
    }

    /**
     * Calls {@code consumer} with the extents {@code [from, to)} in mark order, until it returns false; any thread
     * for {@code to <= size()}.
     *
     * @param from first extent.
     * @param to end extent.
     * @param consumer receives offset and length.
     */
    public void forEach(final long from, final long to, final Sink consumer)
    {
        for (long i = 2 * from; i < 2 * to; i += 2)
        {
            final long[] block = blocks[(int)(i / BLOCK_LONGS)];
            final int at = (int)(i % BLOCK_LONGS);
            if (!consumer.accept(block[at], block[at + 1]))
            {
                return;
            }
        }
    }

    /** Receives logged extents. */
    @FunctionalInterface
    public interface Sink
    {
        /**
         * @param offset first byte.
         * @param length bytes.
         * @return whether to go on.
         */
        boolean accept(long offset, long length);
    }
}
