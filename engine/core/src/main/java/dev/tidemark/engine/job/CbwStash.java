package dev.tidemark.engine.job;

import java.nio.ByteBuffer;

import org.agrona.BufferUtil;
import org.agrona.concurrent.OneToOneConcurrentArrayQueue;

/**
 * Old data of chunks that copy-before-write has read but not yet written to the target; exactly two threads use it:
 * the ring's copy-before-write thread stashes ({@link #take}, {@link #putBack}, {@link #offer}) and the job's worker
 * drains ({@link #poll}, {@link #recycle}).
 *
 * <p>Why it exists: writing a preserved chunk to the target takes the target's lock, which the worker holds while it
 * copies its own runs (a qcow2 target also evicts and writes L2 tables under it), so a guest write that had to
 * preserve a chunk waited for the worker: tens of milliseconds per write during a 64 TiB incremental backup into
 * qcow2, on a machine where the worker competes for the CPU. Reading the old data into memory is enough to let the
 * guest write go. The point in time holds because the worker writes every stashed chunk before the job can succeed;
 * a job that fails loses nothing a failed job would have kept.
 *
 * <p>Bounded: at most {@code slots} chunks, each in its own aligned direct buffer made on first use and reused for
 * the job's life. When every slot is in flight, copy-before-write copies to the target itself, as without a stash.
 * {@link #free} returns the memory at the job's end: left to the garbage collector, which may not run for hours
 * when nothing else allocates, every finished backup would keep up to its whole bound.
 */
final class CbwStash
{
    private static final int ALIGNMENT = 4096;

    /** One stashed chunk: its old data (aligned for O_DIRECT), and which chunk it is. */
    static final class Slot
    {
        final ByteBuffer data;
        /** The allocation {@link #data} is cut from: the one {@link BufferUtil#free} can release. */
        private final ByteBuffer allocation;
        long chunk;

        private Slot(final int bytes)
        {
            allocation = ByteBuffer.allocateDirect(bytes + ALIGNMENT);
            final int pad = (int)(-BufferUtil.address(allocation) & (ALIGNMENT - 1));
            data = allocation.slice(pad, bytes);
        }
    }

    private final int slots;
    private final int slotBytes;
    private final OneToOneConcurrentArrayQueue<Slot> free;
    private final OneToOneConcurrentArrayQueue<Slot> full;
    /** Every slot made, for {@link #free}; written by the stashing thread only. */
    private final Slot[] made;
    /** Stashing thread only. */
    private int madeCount;
    /** Set by {@link #free}: no slot is handed out after it, even by a caller that broke the contract. */
    private volatile boolean freed;
    /** Stashing thread only: a slot taken but not used, handed out again first. */
    private Slot spare;

    /**
     * @param slots at most this many chunks in flight; 0 turns the stash off.
     * @param slotBytes bytes per slot: the chunk size.
     */
    CbwStash(final int slots, final int slotBytes)
    {
        this.slots = slots;
        this.slotBytes = slotBytes;
        final int queueCapacity = Math.max(2, slots);
        this.free = new OneToOneConcurrentArrayQueue<>(queueCapacity);
        this.full = new OneToOneConcurrentArrayQueue<>(queueCapacity);
        this.made = new Slot[slots];
    }

    /** @return the slots the stash may hold, 0 when it is off. */
    int slots()
    {
        return slots;
    }

    /** @return a free slot, cleared, or {@code null} when all are in flight; the stashing thread. */
    Slot take()
    {
        if (freed)
        {
            return null;
        }
        Slot slot = spare;
        spare = null;
        if (slot == null)
        {
            slot = free.poll();
        }
        if (slot == null && madeCount < slots)
        {
            slot = new Slot(slotBytes);
            made[madeCount++] = slot;
        }
        if (slot != null)
        {
            slot.data.clear();
        }
        return slot;
    }

    /** Returns a slot that {@link #take} gave but that holds nothing; the stashing thread. */
    void putBack(final Slot slot)
    {
        spare = slot;
    }

    /** Hands a filled slot to the worker; the stashing thread. */
    void offer(final Slot slot)
    {
        if (!full.offer(slot))
        {
            // Cannot happen: the queue holds every slot there is.
            throw new IllegalStateException("copy-before-write stash overflow");
        }
    }

    /** @return the oldest filled slot, or {@code null}; the worker. */
    Slot poll()
    {
        return full.poll();
    }

    /** Returns a drained slot to the free list; the worker. */
    void recycle(final Slot slot)
    {
        free.offer(slot);
    }

    /**
     * Releases every slot's memory now. Only once neither thread can touch a slot again: the worker has ended and no
     * copy-before-write call is running or can start (the job's interceptor is removed and drained), which also
     * orders the stashing thread's writes to {@link #made} before this read.
     */
    void free()
    {
        freed = true;
        for (int i = 0; i < madeCount; i++)
        {
            BufferUtil.free(made[i].allocation);
            made[i] = null;
        }
        madeCount = 0;
    }
}
