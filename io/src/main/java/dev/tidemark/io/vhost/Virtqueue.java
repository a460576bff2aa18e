package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One split virtqueue in guest memory; {@link #pop} belongs to the queue's worker thread, {@link #complete} may
 * be called from any thread and serialises on this queue's own monitor, which no other queue shares.
 *
 * <p>Completions are published to the used ring in the order the requests were taken from the available ring,
 * whatever order they finish in. So the used index always equals the number of requests fully done, in order: when
 * the back end dies, QEMU sets the next available index to the used index (it cannot ask a dead back end) and the
 * restarted back end re-runs exactly the requests that had not completed, which for block I/O is idempotent.
 * Without that rule a request finished out of order would be run twice and an earlier one never.
 */
final class Virtqueue
{
    private static final VarHandle SHORT = MethodHandles.byteBufferViewVarHandle(short[].class,
        ByteOrder.LITTLE_ENDIAN);

    final int index;
    final int size;
    private final boolean eventIdx;
    private final GuestMemory memory;
    private final ByteBuffer descs;
    private final ByteBuffer avail;
    private final ByteBuffer used;
    private final Memory one = new Memory(8);

    // Worker thread only.
    private int lastAvail;

    // Written under this; volatile so the worker's room check needs no lock.
    private volatile int usedIdx;
    // Guarded by this.
    private final int[] doneHead;
    private final int[] doneLength;
    private final boolean[] done;
    private volatile int callFd;

    /**
     * @param base the first available index to serve (SET_VRING_BASE), which is also the used index.
     */
    Virtqueue(final int index, final int size, final GuestMemory memory, final long descUva, final long availUva,
        final long usedUva, final int base, final int callFd, final boolean eventIdx) throws IOException
    {
        this.index = index;
        this.size = size;
        this.eventIdx = eventIdx;
        this.memory = memory;
        this.descs = memory.frontEnd(descUva, 16 * size);
        this.avail = memory.frontEnd(availUva, 6 + 2 * size);
        this.used = memory.frontEnd(usedUva, 6 + 8 * size);
        if (descs == null || avail == null || used == null)
        {
            throw new IOException("vring " + index + " addresses are outside guest memory");
        }
        this.lastAvail = base & 0xffff;
        this.usedIdx = base & 0xffff;
        this.doneHead = new int[size];
        this.doneLength = new int[size];
        this.done = new boolean[size];
        this.callFd = callFd;
        one.setLong(0, 1);
    }

    GuestMemory memory()
    {
        return memory;
    }

    /** @return the next available index (GET_VRING_BASE). */
    int lastAvail()
    {
        return lastAvail;
    }

    /** @return whether the driver published requests not yet taken. */
    boolean hasAvail()
    {
        return ((short)SHORT.getAcquire(avail, 2) & 0xffff) != lastAvail;
    }

    /**
     * Before the worker waits for a kick: with {@code VIRTIO_RING_F_EVENT_IDX}, asks the driver to kick when it
     * publishes the next request (avail_event), then looks again, so a request published meanwhile is not missed.
     *
     * @return whether the ring is still empty, so the worker may wait.
     */
    boolean armKick()
    {
        if (eventIdx)
        {
            used.putShort(4 + 8 * size, (short)lastAvail);
            VarHandle.fullFence();
        }
        return !hasAvail();
    }

    /**
     * Worker thread: whether fewer than {@link #size} requests are taken and not yet used. A driver cannot have
     * more out (each holds a descriptor until it is used), so only one that breaks the rules ever finds no room.
     */
    boolean hasRoom()
    {
        return ((lastAvail - usedIdx) & 0xffff) < size;
    }

    /** Worker thread: waits up to {@code millis} for a used entry while there is no room. */
    synchronized void awaitRoom(final long millis) throws InterruptedException
    {
        if (!hasRoom())
        {
            wait(millis);
        }
    }

    /** Wakes a worker waiting in {@link #awaitRoom}, so that it sees it is stopping. */
    synchronized void wakeWorker()
    {
        notifyAll();
    }

    /** @return the head descriptor of the next available request, or -1 if none. */
    int pop()
    {
        final int availIdx = (short)SHORT.getAcquire(avail, 2) & 0xffff;
        if (availIdx == lastAvail)
        {
            return -1;
        }
        final int head = avail.getShort(4 + 2 * (lastAvail & (size - 1))) & 0xffff;
        lastAvail = (lastAvail + 1) & 0xffff;
        return head;
    }

    /** @return the ticket of the request {@link #pop} returned last: its place in available-ring order. */
    int ticketOfLastPop()
    {
        return (lastAvail - 1) & 0xffff;
    }

    long descAddr(final int i)
    {
        return descs.getLong(16 * i);
    }

    int descLength(final int i)
    {
        return descs.getInt(16 * i + 8);
    }

    int descFlags(final int i)
    {
        return descs.getShort(16 * i + 12) & 0xffff;
    }

    int descNext(final int i)
    {
        return descs.getShort(16 * i + 14) & 0xffff;
    }

    /**
     * Marks a request done and publishes every done request that is next in order, then signals the driver.
     *
     * @param ticket the request's place in available-ring order.
     * @param head its head descriptor.
     * @param written bytes written into its device-writable buffers.
     */
    void complete(final int ticket, final int head, final int written)
    {
        synchronized (this)
        {
            final int before = usedIdx;
            boolean published = false;
            final int slot = ticket & (size - 1);
            doneHead[slot] = head;
            doneLength[slot] = written;
            done[slot] = true;
            while (done[usedIdx & (size - 1)])
            {
                final int at = usedIdx & (size - 1);
                done[at] = false;
                used.putInt(4 + 8 * at, doneHead[at]);
                used.putInt(8 + 8 * at, doneLength[at]);
                usedIdx = (usedIdx + 1) & 0xffff;
                published = true;
            }
            if (published)
            {
                SHORT.setRelease(used, 2, (short)usedIdx);
                // Signal inside the monitor: once a drain sees the queue empty, nothing touches the ring any more.
                signal(before, usedIdx);
                notifyAll();
            }
        }
    }

    /**
     * Waits until every request taken from the ring is published as used (the worker must have stopped taking).
     *
     * @return whether it drained within {@code millis}.
     */
    synchronized boolean awaitDrained(final long millis) throws InterruptedException
    {
        final long deadline = System.nanoTime() + millis * 1_000_000L;
        while (usedIdx != lastAvail)
        {
            final long left = (deadline - System.nanoTime()) / 1_000_000L;
            if (left <= 0)
            {
                return false;
            }
            wait(left);
        }
        return true;
    }

    void setCallFd(final int fd)
    {
        callFd = fd;
    }

    private void signal(final int before, final int after)
    {
        // The driver's wish (flag or used_event) is read after the used index is visible to it.
        VarHandle.fullFence();
        if (eventIdx)
        {
            // vring_need_event: interrupt only if used_event lies in [before, after).
            final int usedEvent = avail.getShort(4 + 2 * size) & 0xffff;
            if (((after - usedEvent - 1) & 0xffff) >= ((after - before) & 0xffff))
            {
                return;
            }
        }
        else if ((avail.getShort(0) & VhostUser.VRING_AVAIL_F_NO_INTERRUPT) != 0)
        {
            return;
        }
        final int fd = callFd;
        if (fd < 0)
        {
            return;
        }
        try
        {
            Libc.write(fd, one, 8);
        }
        catch (final LastErrorException ex)
        {
            // EAGAIN: the counter is saturated, the driver will see the used index anyway.
        }
    }
}
