package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Serves one virtqueue of a virtio-blk device on its own thread; {@link #start} and {@link #stop} are for the
 * connection thread, everything else runs on the worker thread, and completions run on whichever thread the
 * export completes on.
 *
 * <p>The worker takes requests from the available ring until it is empty, then waits on the kick eventfd. Reads
 * are served on the worker thread straight into guest memory; writes, flushes, discards and write-zeroes are
 * handed to the export with buffers that are slices of guest memory, and complete from the export's thread. No
 * state is shared with other queues: each queue has its own ring, its own worker and its own completion monitor.
 */
final class QueueWorker implements Runnable
{
    /** Longest descriptor chain followed before the request is refused (a loop in a buggy or hostile ring). */
    private static final int MAX_CHAIN = 4096;
    private static final short POLLIN = 1;

    private final Virtqueue vq;
    private final NbdExport export;
    private final int kickFd;
    private final byte[] serial;
    private final Memory kickBuffer = new Memory(8);
    private final Memory pollFd = new Memory(8);
    private final Memory wake = new Memory(8);
    private final Thread thread;
    private final AtomicRequestCounter counter;
    private volatile boolean stopping;

    QueueWorker(final String name, final Virtqueue vq, final NbdExport export, final int kickFd, final byte[] serial,
        final AtomicRequestCounter counter)
    {
        this.vq = vq;
        this.export = export;
        this.kickFd = kickFd;
        this.serial = serial;
        this.counter = counter;
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
                while (!stopping && (head = vq.pop()) >= 0)
                {
                    serve(head, vq.ticketOfLastPop());
                }
                if (!stopping)
                {
                    awaitKick();
                }
            }
        }
        catch (final IOException ex)
        {
            // The kick descriptor is gone: the connection is ending, and its thread stops this worker.
        }
    }

    private void awaitKick() throws IOException
    {
        while (true)
        {
            try
            {
                // QEMU's eventfds are non-blocking (the flag belongs to the shared file description).
                Libc.read(kickFd, kickBuffer, 8);
                return;
            }
            catch (final LastErrorException ex)
            {
                if (ex.getErrorCode() == Libc.EINTR)
                {
                    continue;
                }
                if (ex.getErrorCode() != Libc.EAGAIN)
                {
                    throw new IOException("read of kick eventfd failed: errno " + ex.getErrorCode(), ex);
                }
            }
            if (!vq.armKick() || stopping)
            {
                return;
            }
            Libc.retry(() -> Libc.poll(pollFd, 1, -1), "poll");
        }
    }

    // ------------------------------------------------------------------------------------------ requests

    private void serve(final int head, final int ticket)
    {
        counter.requests.increment();
        final List<ByteBuffer> readable = new ArrayList<>(4);
        final List<ByteBuffer> writable = new ArrayList<>(4);
        if (!walk(head, readable, writable) || writable.isEmpty())
        {
            // No status byte to report through: give the buffers back untouched.
            counter.malformed.increment();
            vq.complete(ticket, head, 0);
            return;
        }
        final ByteBuffer last = writable.get(writable.size() - 1);
        final ByteBuffer status = last.slice(last.limit() - 1, 1);
        last.limit(last.limit() - 1);
        if (!last.hasRemaining())
        {
            writable.remove(writable.size() - 1);
        }
        final byte[] header = new byte[16];
        if (!take(readable, header))
        {
            counter.malformed.increment();
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        final ByteBuffer h = ByteBuffer.wrap(header).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        final int type = h.getInt(0);
        final long sector = h.getLong(8);
        switch (type)
        {
            case VhostUser.VIRTIO_BLK_T_IN -> read(ticket, head, status, sector, writable);
            case VhostUser.VIRTIO_BLK_T_OUT -> write(ticket, head, status, sector, readable);
            case VhostUser.VIRTIO_BLK_T_FLUSH -> flush(ticket, head, status);
            case VhostUser.VIRTIO_BLK_T_GET_ID -> getId(ticket, head, status, writable);
            case VhostUser.VIRTIO_BLK_T_DISCARD, VhostUser.VIRTIO_BLK_T_WRITE_ZEROES ->
                ranges(ticket, head, status, type, readable);
            default -> finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_UNSUPP, 1);
        }
    }

    private boolean walk(final int head, final List<ByteBuffer> readable, final List<ByteBuffer> writable)
    {
        final GuestMemory memory = vq.memory();
        ByteBuffer table = null;
        int tableSize = vq.size;
        int i = head;
        for (int steps = 0; steps < MAX_CHAIN; steps++)
        {
            if (i >= tableSize)
            {
                return false;
            }
            final long addr = table == null ? vq.descAddr(i) : table.getLong(16 * i);
            final int length = table == null ? vq.descLength(i) : table.getInt(16 * i + 8);
            final int flags = table == null ? vq.descFlags(i) : table.getShort(16 * i + 12) & 0xffff;
            final int next = table == null ? vq.descNext(i) : table.getShort(16 * i + 14) & 0xffff;
            if ((flags & VhostUser.VRING_DESC_F_INDIRECT) != 0)
            {
                if (table != null || length < 16 || length % 16 != 0)
                {
                    return false;
                }
                table = memory.guest(addr, length);
                if (table == null)
                {
                    return false;
                }
                tableSize = length / 16;
                i = 0;
                continue;
            }
            if (length < 0)
            {
                return false;
            }
            final ByteBuffer buffer = memory.guest(addr, length);
            if (buffer == null)
            {
                return false;
            }
            if ((flags & VhostUser.VRING_DESC_F_WRITE) != 0)
            {
                writable.add(buffer);
            }
            else
            {
                if (!writable.isEmpty())
                {
                    return false;
                }
                readable.add(buffer);
            }
            if ((flags & VhostUser.VRING_DESC_F_NEXT) == 0)
            {
                return true;
            }
            i = next;
        }
        return false;
    }

    /** Consumes {@code out.length} bytes from the front of {@code buffers}. */
    private static boolean take(final List<ByteBuffer> buffers, final byte[] out)
    {
        int done = 0;
        while (done < out.length && !buffers.isEmpty())
        {
            final ByteBuffer first = buffers.get(0);
            final int n = Math.min(first.remaining(), out.length - done);
            first.get(out, done, n);
            done += n;
            if (!first.hasRemaining())
            {
                buffers.remove(0);
            }
        }
        return done == out.length;
    }

    private static long total(final List<ByteBuffer> buffers)
    {
        long sum = 0;
        for (final ByteBuffer b : buffers)
        {
            sum += b.remaining();
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

    private void read(final int ticket, final int head, final ByteBuffer status, final long sector,
        final List<ByteBuffer> data)
    {
        final long bytes = total(data);
        if (!inside(sector, bytes))
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        long offset = sector * VhostUser.SECTOR;
        int code = VhostUser.VIRTIO_BLK_S_OK;
        try
        {
            for (final ByteBuffer b : data)
            {
                final int n = b.remaining();
                if (export.read(offset, b) != NbdProtocol.OK)
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

    private void write(final int ticket, final int head, final ByteBuffer status, final long sector,
        final List<ByteBuffer> data)
    {
        final long bytes = total(data);
        if (export.isReadOnly() || !inside(sector, bytes))
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_IOERR, 1);
            return;
        }
        data.removeIf(b -> !b.hasRemaining());
        if (data.isEmpty())
        {
            finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_OK, 1);
            return;
        }
        counter.writtenBytes.add(bytes);
        final Pending pending = new Pending(ticket, head, status, data.size());
        long offset = sector * VhostUser.SECTOR;
        for (final ByteBuffer b : data)
        {
            final int n = b.remaining();
            try
            {
                export.write(offset, b, 0, pending);
            }
            catch (final RuntimeException ex)
            {
                pending.complete(NbdProtocol.EIO);
            }
            offset += n;
        }
    }

    private void flush(final int ticket, final int head, final ByteBuffer status)
    {
        final Pending pending = new Pending(ticket, head, status, 1);
        try
        {
            export.flush(pending);
        }
        catch (final RuntimeException ex)
        {
            pending.complete(NbdProtocol.EIO);
        }
    }

    private void getId(final int ticket, final int head, final ByteBuffer status, final List<ByteBuffer> data)
    {
        int written = 0;
        for (final ByteBuffer b : data)
        {
            final int n = Math.min(b.remaining(), serial.length - written);
            b.put(serial, written, n);
            written += n;
        }
        finish(ticket, head, status, VhostUser.VIRTIO_BLK_S_OK, written + 1);
    }

    private void ranges(final int ticket, final int head, final ByteBuffer status, final int type,
        final List<ByteBuffer> data)
    {
        final long bytes = total(data);
        if (export.isReadOnly() || bytes == 0 || bytes % 16 != 0 || bytes > 16L * 256)
        {
            finish(ticket, head, status, export.isReadOnly() ? VhostUser.VIRTIO_BLK_S_IOERR
                : VhostUser.VIRTIO_BLK_S_UNSUPP, 1);
            return;
        }
        final byte[] raw = new byte[(int)bytes];
        take(data, raw);
        final ByteBuffer entries = ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        final int count = raw.length / 16;
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
        final Pending pending = new Pending(ticket, head, status, count);
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
                pending.complete(NbdProtocol.EIO);
            }
        }
    }

    private void finish(final int ticket, final int head, final ByteBuffer status, final int code, final int written)
    {
        status.put(0, (byte)code);
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

    /** A request split into parts, completed from any thread; finishes once every part has, with an error if any. */
    private final class Pending extends AtomicInteger implements NbdCompletion
    {
        private static final long serialVersionUID = 1L;
        private final int ticket;
        private final int head;
        private final transient ByteBuffer status;
        private volatile int error;

        Pending(final int ticket, final int head, final ByteBuffer status, final int parts)
        {
            super(parts);
            this.ticket = ticket;
            this.head = head;
            this.status = status;
        }

        @Override
        public void complete(final int nbdError)
        {
            if (nbdError != NbdProtocol.OK && error == NbdProtocol.OK)
            {
                error = nbdError;
            }
            if (decrementAndGet() == 0)
            {
                finish(ticket, head, status, statusOf(error), 1);
            }
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
