package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;

import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicIntegerFieldUpdater;
import java.util.function.Function;

/**
 * Serves one virtqueue of a virtio-blk device on its own thread; {@link #start} and {@link #stop} are for the
 * connection thread, everything else runs on the worker thread, and completions run on whichever thread the
 * export completes on.
 *
 * <p>The worker takes requests from the available ring until it is empty, then waits on the kick eventfd. Reads
 * are served on the worker thread straight into guest memory; writes, flushes, discards and write-zeroes are
 * handed to the export with buffers that are slices of guest memory, and complete from the export's thread. No
 * state is shared with other queues: each queue has its own ring, its own worker and its own completion monitor.
 *
 * <p>The request path allocates only the slices of guest memory an export is handed: the chain is walked into
 * reused arrays, the header, indirect tables and range lists are copied into reused arrays, the status byte is
 * written by address, and each asynchronous request takes a {@link Pending} from this worker's pool. The pool
 * cannot run dry and never overflows: an entry is armed for a request taken from the ring and returned to the pool
 * before that request is handed to {@link Virtqueue#complete}, so the entries in use never exceed the requests
 * taken and not yet used, and the worker takes no request while the ring's size of them are out (a driver keeps
 * at most that many in flight, each holds a descriptor until it is used). The pool fills lazily up to that bound.
 * An entry whose export threw instead of completing may still be held by the export, so it is retired (a later
 * call fails as a second completion) and a new entry takes its place.
 */
final class QueueWorker implements Runnable
{
    /** Longest descriptor chain followed before the request is refused (a loop in a buggy or hostile ring). */
    private static final int MAX_CHAIN = 4096;
    /** Most discard or write-zeroes segments accepted in one request (the config advertises one). */
    private static final int MAX_RANGES = 256;
    private static final short POLLIN = 1;
    /** How long the worker waits for a used entry before it looks at {@link #stopping} again. */
    private static final long ROOM_WAIT_MILLIS = 100;

    private final Virtqueue vq;
    private final NbdExport export;
    private final int kickFd;
    private final byte[] serial;
    private final Memory kickBuffer = new Memory(8);
    private final Memory pollFd = new Memory(8);
    private final Memory wake = new Memory(8);
    /** Made once: a capturing lambda per wait would allocate. */
    private final Libc.Call pollKick = () -> Libc.poll(pollFd, 1, -1);
    private final Thread thread;
    private final AtomicRequestCounter counter;
    private volatile boolean stopping;

    /** Pending requests not in use: the worker takes, the thread completing a request's last part returns. */
    private final ManyToOneConcurrentArrayQueue<Pending> idlePendings;

    // Worker thread only: the request being served, and the arrays it is copied into.
    /** Guest addresses and lengths of the current chain's descriptors. */
    private long[] addrs = new long[16];
    private int[] lengths = new int[16];
    private int chainLength;
    /** Index of the first device-writable descriptor ({@link #chainLength} if none). */
    private int firstWritable;
    /** Index of the first readable descriptor with bytes after the header. */
    private int firstData;
    private final byte[] header = new byte[16];
    private final ByteBuffer headerView = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
    private final byte[] descriptor = new byte[16];
    private final ByteBuffer descriptorView = ByteBuffer.wrap(descriptor).order(ByteOrder.LITTLE_ENDIAN);
    private final byte[] rangeBytes = new byte[16 * MAX_RANGES];
    private final ByteBuffer rangeView = ByteBuffer.wrap(rangeBytes).order(ByteOrder.LITTLE_ENDIAN);

    QueueWorker(final String name, final Virtqueue vq, final NbdExport export, final int kickFd, final byte[] serial,
        final AtomicRequestCounter counter)
    {
        this.vq = vq;
        this.export = export;
        this.kickFd = kickFd;
        this.serial = serial;
        this.counter = counter;
        this.idlePendings = new ManyToOneConcurrentArrayQueue<>(Math.max(2, vq.size));
        wake.setLong(0, 1);
        pollFd.setInt(0, kickFd);
        pollFd.setShort(4, POLLIN);
        this.thread = new Thread(this, name);
        thread.setDaemon(true);
    }

    Virtqueue queue()
    {
        return vq;
    }

    void start()
    {
        thread.start();
    }

    /**
     * Stops taking requests and waits for the ones taken to be published as used.
     *
     * @return whether every request taken completed within the wait.
     */
    boolean stop(final long millis) throws InterruptedException
    {
        stopping = true;
        try
        {
            Libc.write(kickFd, wake, 8);
        }
        catch (final LastErrorException ex)
        {
            // A saturated counter wakes the worker as well.
        }
        vq.wakeWorker();
        thread.join(millis);
        return !thread.isAlive() && vq.awaitDrained(millis);
    }

    @Override
    public void run()
    {
        try
        {
            while (!stopping)
            {
                int head;
                while (!stopping && vq.hasRoom() && (head = vq.pop()) >= 0)
                {
                    serve(head, vq.ticketOfLastPop());
                }
                if (stopping)
                {
                    return;
                }
                if (vq.hasRoom())
                {
                    awaitKick();
                }
                else
                {
                    // Only a driver breaking virtio's rule has more requests out than the ring has descriptors.
                    vq.awaitRoom(ROOM_WAIT_MILLIS);
                }
            }
        }
        catch (final IOException ex)
        {
            // The kick descriptor is gone: the connection is ending, and its thread stops this worker.
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Waits for a kick: asks for one, looks at the ring again, then polls and drains the eventfd. Polling before
     * reading spares the failed non-blocking read (an exception with its message) on every wait.
     */
    private void awaitKick() throws IOException
    {
        if (!vq.armKick() || stopping)
        {
            return;
        }
        Libc.retry(pollKick, "poll");
        try
        {
            // QEMU's eventfds are non-blocking (the flag belongs to the shared file description).
            Libc.read(kickFd, kickBuffer, 8);
        }
        catch (final LastErrorException ex)
        {
            if (ex.getErrorCode() != Libc.EINTR && ex.getErrorCode() != Libc.EAGAIN)
            {
                throw new IOException("read of kick eventfd failed: errno " + ex.getErrorCode(), ex);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ requests

    private void serve(final int head, final int ticket)
    {
        counter.requests.increment();
        if (!walk(head) || chainLength == firstWritable || lengths[chainLength - 1] == 0)
        {
            // No status byte to report through: give the buffers back untouched.
            counter.malformed.increment();
            vq.complete(ticket, head, 0);
            return;
        }
        // The status is the last byte of the last device-writable descriptor; the data lies between.
        final long status = addrs[chainLength - 1] + lengths[chainLength - 1] - 1;
        lengths[chainLength - 1]--;
        if (!takeHeader())
        {
            counter.malformed.increment();
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        final int type = headerView.getInt(0);
        final long sector = headerView.getLong(8);
        switch (type)
        {
            case VhostUser.VIRTIO_BLK_T_IN -> read(ticket, head, status, sector);
            case VhostUser.VIRTIO_BLK_T_OUT -> write(ticket, head, status, sector);
            case VhostUser.VIRTIO_BLK_T_FLUSH -> flush(ticket, head, status);
            case VhostUser.VIRTIO_BLK_T_GET_ID -> getId(ticket, head, status);
            case VhostUser.VIRTIO_BLK_T_DISCARD, VhostUser.VIRTIO_BLK_T_WRITE_ZEROES ->
                ranges(ticket, head, status, type);
            default -> finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_UNSUPP, 1);
        }
    }

    /**
     * Records the chain from {@code head} in {@link #addrs} and {@link #lengths}: the driver-readable descriptors
     * first, then from {@link #firstWritable} on the device-writable ones, each checked to lie in guest memory.
     *
     * @return whether the chain is well formed.
     */
    private boolean walk(final int head)
    {
        final GuestMemory memory = vq.memory();
        chainLength = 0;
        firstWritable = -1;
        long table = -1;
        int tableSize = vq.size;
        int i = head;
        for (int steps = 0; steps < MAX_CHAIN; steps++)
        {
            if (i >= tableSize)
            {
                return false;
            }
            final long addr;
            final int length;
            final int flags;
            final int next;
            if (table < 0)
            {
                addr = vq.descAddr(i);
                length = vq.descLength(i);
                flags = vq.descFlags(i);
                next = vq.descNext(i);
            }
            else
            {
                if (!memory.get(table + 16L * i, descriptor, 0, 16))
                {
                    return false;
                }
                addr = descriptorView.getLong(0);
                length = descriptorView.getInt(8);
                flags = descriptorView.getShort(12) & 0xffff;
                next = descriptorView.getShort(14) & 0xffff;
            }
            if ((flags & VhostUser.VRING_DESC_F_INDIRECT) != 0)
            {
                if (table >= 0 || length < 16 || length % 16 != 0 || !memory.contains(addr, length))
                {
                    return false;
                }
                table = addr;
                tableSize = length / 16;
                i = 0;
                continue;
            }
            if (length < 0 || !memory.contains(addr, length))
            {
                return false;
            }
            if ((flags & VhostUser.VRING_DESC_F_WRITE) != 0)
            {
                if (firstWritable < 0)
                {
                    firstWritable = chainLength;
                }
            }
            else if (firstWritable >= 0)
            {
                return false;
            }
            if (chainLength == addrs.length)
            {
                // Grows to the longest chain seen, at most MAX_CHAIN: no allocation once warm.
                addrs = Arrays.copyOf(addrs, Math.min(MAX_CHAIN, 2 * chainLength));
                lengths = Arrays.copyOf(lengths, addrs.length);
            }
            addrs[chainLength] = addr;
            lengths[chainLength] = length;
            chainLength++;
            if ((flags & VhostUser.VRING_DESC_F_NEXT) == 0)
            {
                if (firstWritable < 0)
                {
                    firstWritable = chainLength;
                }
                return true;
            }
            i = next;
        }
        return false;
    }

    /** Consumes the 16-byte request header from the front of the readable descriptors into {@link #header}. */
    private boolean takeHeader()
    {
        firstData = 0;
        return take(header, header.length);
    }

    /**
     * Consumes {@code count} bytes of the readable descriptors from {@link #firstData} on into {@code out},
     * advancing {@link #firstData} and {@link #addrs}/{@link #lengths} past them.
     */
    private boolean take(final byte[] out, final int count)
    {
        final GuestMemory memory = vq.memory();
        int done = 0;
        while (done < count && firstData < firstWritable)
        {
            final int n = Math.min(lengths[firstData], count - done);
            memory.get(addrs[firstData], out, done, n);
            done += n;
            addrs[firstData] += n;
            lengths[firstData] -= n;
            if (lengths[firstData] == 0)
            {
                firstData++;
            }
        }
        return done == count;
    }

    /** @return the bytes of descriptors {@code from} (inclusive) to {@code to} (exclusive). */
    private long total(final int from, final int to)
    {
        long sum = 0;
        for (int d = from; d < to; d++)
        {
            sum += lengths[d];
        }
        return sum;
    }

    private boolean inside(final long sector, final long bytes)
    {
        if (sector < 0 || sector > Long.MAX_VALUE / VhostUser.SECTOR)
        {
            return false;
        }
        final long offset = sector * VhostUser.SECTOR;
        return offset <= export.size() && bytes <= export.size() - offset;
    }

    private void read(final int ticket, final int head, final long status, final long sector)
    {
        final long bytes = total(firstWritable, chainLength);
        if (!inside(sector, bytes))
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        long offset = sector * VhostUser.SECTOR;
        int code = VhostUser.VIRTIO_BLK_S_OK;
        try
        {
            for (int d = firstWritable; d < chainLength; d++)
            {
                final int n = lengths[d];
                if (n > 0 && export.read(offset, vq.memory().guest(addrs[d], n)) != NbdProtocol.OK)
                {
                    code = VhostUser.VIRTIO_BLK_S_IOERR;
                    break;
                }
                offset += n;
            }
        }
        catch (final RuntimeException ex)
        {
            code = VhostUser.VIRTIO_BLK_S_IOERR;
        }
        counter.readBytes.add(bytes);
        finish(ticket, head, status, code, (int)Math.min(Integer.MAX_VALUE, bytes + 1));
    }

    private void write(final int ticket, final int head, final long status, final long sector)
    {
        final long bytes = total(firstData, firstWritable);
        if (export.isReadOnly() || !inside(sector, bytes))
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        int parts = 0;
        for (int d = firstData; d < firstWritable; d++)
        {
            if (lengths[d] > 0)
            {
                parts++;
            }
        }
        if (parts == 0)
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_OK, 1);
            return;
        }
        counter.writtenBytes.add(bytes);
        final Pending pending = takePending(ticket, head, status, parts);
        long offset = sector * VhostUser.SECTOR;
        for (int d = firstData; d < firstWritable; d++)
        {
            final int n = lengths[d];
            if (n == 0)
            {
                continue;
            }
            try
            {
                // The export keeps the buffer until it completes: a slice per part (see the class comment).
                export.write(offset, vq.memory().guest(addrs[d], n), 0, pending);
            }
            catch (final RuntimeException ex)
            {
                pending.failThrown();
            }
            offset += n;
        }
    }

    private void flush(final int ticket, final int head, final long status)
    {
        final Pending pending = takePending(ticket, head, status, 1);
        try
        {
            export.flush(pending);
        }
        catch (final RuntimeException ex)
        {
            pending.failThrown();
        }
    }

    private void getId(final int ticket, final int head, final long status)
    {
        int written = 0;
        for (int d = firstWritable; d < chainLength && written < serial.length; d++)
        {
            final int n = Math.min(lengths[d], serial.length - written);
            vq.memory().put(addrs[d], serial, written, n);
            written += n;
        }
        finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_OK, written + 1);
    }

    private void ranges(final int ticket, final int head, final long status, final int type)
    {
        final long bytes = total(firstData, firstWritable);
        if (export.isReadOnly() || bytes == 0 || bytes % 16 != 0 || bytes > rangeBytes.length)
        {
            finish(ticket, head, status, export.isReadOnly() ? VhostUser.VIRTIO_BLK_S_IOERR
                : VhostUser.VIRTIO_BLK_S_UNSUPP, 1);
            return;
        }
        take(rangeBytes, (int)bytes);
        final ByteBuffer entries = rangeView;
        final int count = (int)bytes / 16;
        for (int i = 0; i < count; i++)
        {
            final long sector = entries.getLong(16 * i);
            final long sectors = entries.getInt(16 * i + 8) & 0xffffffffL;
            final int flags = entries.getInt(16 * i + 12);
            final boolean unmapFlag = (flags & 1) != 0;
            if ((flags & ~1) != 0 || type == VhostUser.VIRTIO_BLK_T_DISCARD && unmapFlag)
            {
                finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_UNSUPP, 1);
                return;
            }
            if (!inside(sector, sectors * VhostUser.SECTOR))
            {
                finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
                return;
            }
        }
        final Pending pending = takePending(ticket, head, status, count);
        for (int i = 0; i < count; i++)
        {
            final long offset = entries.getLong(16 * i) * VhostUser.SECTOR;
            final long length = (entries.getInt(16 * i + 8) & 0xffffffffL) * VhostUser.SECTOR;
            final boolean unmap = (entries.getInt(16 * i + 12) & 1) != 0;
            if (length == 0)
            {
                pending.complete(NbdProtocol.OK);
                continue;
            }
            try
            {
                if (type == VhostUser.VIRTIO_BLK_T_DISCARD)
                {
                    export.trim(offset, length, 0, pending);
                }
                else
                {
                    // Without the unmap flag the range must stay allocated.
                    export.writeZeroes(offset, length, unmap ? 0 : NbdProtocol.CMD_FLAG_NO_HOLE, pending);
                }
            }
            catch (final RuntimeException ex)
            {
                pending.failThrown();
            }
        }
    }

    /** Any thread: writes the status byte and hands the request back to the driver. */
    private void finish(final int ticket, final int head, final long status, final int code, final int written)
    {
        vq.memory().put(status, (byte)code);
        if (code != VhostUser.VIRTIO_BLK_S_OK)
        {
            counter.errors.increment();
        }
        vq.complete(ticket, head, written);
    }

    static int statusOf(final int nbdError)
    {
        if (nbdError == NbdProtocol.OK)
        {
            return VhostUser.VIRTIO_BLK_S_OK;
        }
        return nbdError == NbdProtocol.ENOTSUP ? VhostUser.VIRTIO_BLK_S_UNSUPP : VhostUser.VIRTIO_BLK_S_IOERR;
    }

    /** Worker thread: an idle pending request armed for one request (see the class comment for the bound). */
    private Pending takePending(final int ticket, final int head, final long status, final int parts)
    {
        Pending pending = idlePendings.poll();
        if (pending == null)
        {
            // The pool fills lazily up to the ring size; it holds every entry not armed, so this is warm-up only.
            pending = new Pending();
        }
        pending.arm(ticket, head, status, parts);
        return pending;
    }

    /**
     * A request split into parts (one export call each), completed from any thread, exactly once per part;
     * finishes once every part has, with an error if any. Reused for later requests of this queue: the worker
     * arms it, the completing thread of the last part returns it to the pool (see the class comment).
     */
    private final class Pending implements NbdCompletion
    {
        private static final AtomicIntegerFieldUpdater<Pending> PARTS_LEFT =
            AtomicIntegerFieldUpdater.newUpdater(Pending.class, "partsLeft");

        /** Parts not yet completed; 0 while idle and after the last part, so a further call fails. */
        private volatile int partsLeft;
        private int ticket;
        private int head;
        private long status;
        private volatile int error;
        /** Set when the export threw: it may still hold this, so this is never reused. */
        private volatile boolean retired;
        private Function<NbdCompletion, ?> adapterFactory;
        private Object adapter;

        /** Worker thread, on an entry just taken from the pool. */
        void arm(final int requestTicket, final int requestHead, final long requestStatus, final int parts)
        {
            ticket = requestTicket;
            head = requestHead;
            status = requestStatus;
            error = NbdProtocol.OK;
            // Volatile: orders the fields above before the export, and any thread it hands this to, sees them.
            partsLeft = parts;
        }

        @Override
        public void complete(final int nbdError)
        {
            if (nbdError != NbdProtocol.OK && error == NbdProtocol.OK)
            {
                error = nbdError;
            }
            int left;
            do
            {
                left = partsLeft;
                if (left <= 0)
                {
                    throw new IllegalStateException("vhost-user request " + ticket + " completed twice");
                }
            }
            while (!PARTS_LEFT.compareAndSet(this, left, left - 1));
            if (left == 1)
            {
                finishAndFree();
            }
        }

        /** Worker thread: the export threw instead of completing a part, so it answers EIO for it. */
        void failThrown()
        {
            retired = true;
            try
            {
                complete(NbdProtocol.EIO);
            }
            catch (final IllegalStateException ex)
            {
                // The export completed the part and then threw: the request is answered already.
            }
        }

        private void finishAndFree()
        {
            final int doneTicket = ticket;
            final int doneHead = head;
            final long doneStatus = status;
            final int code = statusOf(error);
            // From the offer on, the worker may arm this again: touch no field after it.
            // Never full: the pool holds at most the ring size (see the class comment).
            idlePendings.offer(retired ? new Pending() : this);
            finish(doneTicket, doneHead, doneStatus, code, 1);
        }

        @Override
        public <T> T adapter(final Class<T> adapterType, final Function<NbdCompletion, ? extends T> factory)
        {
            if (adapterFactory != factory)
            {
                adapter = factory.apply(this);
                adapterFactory = factory;
            }
            return adapterType.cast(adapter);
        }
    }

    /** Counters of one export, shared by its queues (each is a striped or atomic counter, never a lock). */
    static final class AtomicRequestCounter
    {
        final java.util.concurrent.atomic.LongAdder requests = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.LongAdder malformed = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.LongAdder errors = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.LongAdder readBytes = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.LongAdder writtenBytes = new java.util.concurrent.atomic.LongAdder();
    }
}
