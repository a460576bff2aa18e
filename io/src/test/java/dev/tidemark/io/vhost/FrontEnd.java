package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Plays QEMU's vhost-user front end for tests: guest memory in a memfd, split rings laid out in it, eventfds for
 * kick and call; confined to the test thread.
 *
 * <p>Layout (guest physical = front-end virtual address here, region at 0): queue q's descriptor table at
 * {@code q * 64 KiB}, available ring at +16 KiB, used ring at +32 KiB; data from 1 MiB on.
 */
final class FrontEnd implements AutoCloseable
{
    static final int QUEUE_SIZE = 64;
    static final long MEMORY = 8L << 20;
    static final long DATA = 1L << 20;
    private static final int EFD_NONBLOCK = 0x800;

    final int memfd;
    final Pointer mem;
    final ByteBuffer guest;
    private int sock = -1;
    final int[] kick;
    final int[] call;
    final int[] nextAvail;
    final int[] nextDesc;
    final int queues;
    int signals;

    FrontEnd(final int queues) throws IOException
    {
        this.queues = queues;
        memfd = Libc.memfd_create("guest", Libc.MFD_CLOEXEC);
        Libc.ftruncate(memfd, MEMORY);
        mem = Libc.mmap(null, MEMORY, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, memfd, 0);
        guest = mem.getByteBuffer(0, MEMORY).order(ByteOrder.LITTLE_ENDIAN);
        kick = new int[queues];
        call = new int[queues];
        nextAvail = new int[queues];
        nextDesc = new int[queues];
        for (int q = 0; q < queues; q++)
        {
            kick[q] = Libc.eventfd(0, Libc.EFD_CLOEXEC | EFD_NONBLOCK);
            call[q] = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        }
    }

    void connect(final Path path) throws IOException
    {
        sock = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        final Memory addr = Libc.sockaddr(path);
        Libc.connect(sock, addr, Libc.sockaddrSize());
    }

    void disconnect()
    {
        Libc.closeQuietly(sock);
        sock = -1;
    }

    // ---- messages

    void send(final int request, final int flags, final byte[] body, final int... fds) throws IOException
    {
        final Memory m = new Memory(VhostUser.HEADER_SIZE + Math.max(1, body.length));
        m.setInt(0, request);
        m.setInt(4, VhostUser.FLAG_VERSION | flags);
        m.setInt(8, body.length);
        m.write(VhostUser.HEADER_SIZE, body, 0, body.length);
        Libc.sendWithFds(sock, m, VhostUser.HEADER_SIZE + body.length, fds);
    }

    ByteBuffer receive(final int request) throws IOException
    {
        final Memory h = new Memory(VhostUser.HEADER_SIZE);
        if (!Libc.readFully(sock, h, VhostUser.HEADER_SIZE))
        {
            throw new IOException("back end closed the connection");
        }
        if (h.getInt(0) != request || (h.getInt(4) & VhostUser.FLAG_REPLY) == 0)
        {
            throw new IOException("unexpected reply " + h.getInt(0) + " flags " + h.getInt(4));
        }
        final int size = h.getInt(8);
        final Memory b = new Memory(Math.max(1, size));
        Libc.readFully(sock, b, size);
        final byte[] out = b.getByteArray(0, size);
        return ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
    }

    long getU64(final int request) throws IOException
    {
        send(request, 0, new byte[0]);
        return receive(request).getLong(0);
    }

    void setU64(final int request, final long value) throws IOException
    {
        send(request, 0, le(8).putLong(0, value).array());
    }

    static ByteBuffer le(final int size)
    {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The whole set-up QEMU does on start, with rings starting at {@code base}. */
    void setUp(final int base) throws IOException
    {
        setUp(base, false);
    }

    /** As {@link #setUp(int)}, with {@code VIRTIO_RING_F_EVENT_IDX} negotiated or not. */
    void setUp(final int base, final boolean eventIdx) throws IOException
    {
        final long offered = getU64(VhostUser.GET_FEATURES);
        final long features = eventIdx ? offered : offered & ~(1L << VhostUser.VIRTIO_RING_F_EVENT_IDX);
        final long protocol = getU64(VhostUser.GET_PROTOCOL_FEATURES);
        setU64(VhostUser.SET_PROTOCOL_FEATURES, protocol);
        setU64(VhostUser.SET_FEATURES, features);
        final ByteBuffer table = le(8 + 32).putInt(0, 1).putLong(8, 0).putLong(16, MEMORY).putLong(24, 0)
            .putLong(32, 0);
        send(VhostUser.SET_MEM_TABLE, 0, table.array(), memfd);
        for (int q = 0; q < queues; q++)
        {
            send(VhostUser.SET_VRING_NUM, 0, le(8).putInt(0, q).putInt(4, QUEUE_SIZE).array());
            send(VhostUser.SET_VRING_BASE, 0, le(8).putInt(0, q).putInt(4, base).array());
            send(VhostUser.SET_VRING_ADDR, 0, le(40).putInt(0, q).putLong(8, desc(q)).putLong(16, used(q))
                .putLong(24, avail(q)).array());
            send(VhostUser.SET_VRING_KICK, 0, le(8).putLong(0, q).array(), kick[q]);
            send(VhostUser.SET_VRING_CALL, 0, le(8).putLong(0, q).array(), call[q]);
            send(VhostUser.SET_VRING_ENABLE, VhostUser.FLAG_NEED_REPLY, le(8).putInt(0, q).putInt(4, 1).array());
            if (receive(VhostUser.SET_VRING_ENABLE).getLong(0) != 0)
            {
                throw new IOException("SET_VRING_ENABLE refused");
            }
            nextAvail[q] = base;
        }
    }

    static long desc(final int q)
    {
        return q * 65536L;
    }

    static long avail(final int q)
    {
        return desc(q) + 16384;
    }

    static long used(final int q)
    {
        return desc(q) + 32768;
    }

    // ---- requests

    /** A descriptor to chain: guest address, length, device-writable. */
    record Buf(long addr, int length, boolean write)
    {
    }

    /** Writes a chain into queue q's table and publishes it; @return its head. */
    int publish(final int q, final Buf... chain)
    {
        final int head = nextDesc[q];
        for (int i = 0; i < chain.length; i++)
        {
            final int d = (head + i) % QUEUE_SIZE;
            final int at = (int)desc(q) + 16 * d;
            guest.putLong(at, chain[i].addr());
            guest.putInt(at + 8, chain[i].length());
            final int flags = (chain[i].write() ? VhostUser.VRING_DESC_F_WRITE : 0)
                | (i + 1 < chain.length ? VhostUser.VRING_DESC_F_NEXT : 0);
            guest.putShort(at + 12, (short)flags);
            guest.putShort(at + 14, (short)((d + 1) % QUEUE_SIZE));
        }
        nextDesc[q] = (head + chain.length) % QUEUE_SIZE;
        final int slot = nextAvail[q] % QUEUE_SIZE;
        guest.putShort((int)avail(q) + 4 + 2 * slot, (short)head);
        nextAvail[q] = (nextAvail[q] + 1) & 0xffff;
        java.lang.invoke.VarHandle.fullFence();
        guest.putShort((int)avail(q) + 2, (short)nextAvail[q]);
        return head;
    }

    /**
     * Writes {@code chain} as an indirect table at guest address {@code table} and publishes one descriptor
     * pointing to it on queue q, so a request takes one ring descriptor however long its chain; @return its head.
     */
    int publishIndirect(final int q, final long table, final Buf... chain)
    {
        for (int i = 0; i < chain.length; i++)
        {
            final int at = (int)table + 16 * i;
            guest.putLong(at, chain[i].addr());
            guest.putInt(at + 8, chain[i].length());
            final int flags = (chain[i].write() ? VhostUser.VRING_DESC_F_WRITE : 0)
                | (i + 1 < chain.length ? VhostUser.VRING_DESC_F_NEXT : 0);
            guest.putShort(at + 12, (short)flags);
            guest.putShort(at + 14, (short)(i + 1));
        }
        final int head = nextDesc[q];
        final int at = (int)desc(q) + 16 * head;
        guest.putLong(at, table);
        guest.putInt(at + 8, 16 * chain.length);
        guest.putShort(at + 12, (short)VhostUser.VRING_DESC_F_INDIRECT);
        guest.putShort(at + 14, (short)0);
        nextDesc[q] = (head + 1) % QUEUE_SIZE;
        final int slot = nextAvail[q] % QUEUE_SIZE;
        guest.putShort((int)avail(q) + 4 + 2 * slot, (short)head);
        nextAvail[q] = (nextAvail[q] + 1) & 0xffff;
        java.lang.invoke.VarHandle.fullFence();
        guest.putShort((int)avail(q) + 2, (short)nextAvail[q]);
        return head;
    }

    void kick(final int q)
    {
        final Memory one = new Memory(8);
        one.setLong(0, 1);
        Libc.write(kick[q], one, 8);
    }

    /** With EVENT_IDX: asks for an interrupt when the used index passes {@code value}. */
    void usedEvent(final int q, final int value)
    {
        guest.putShort((int)avail(q) + 4 + 2 * QUEUE_SIZE, (short)value);
    }

    /** @return the device's avail_event (EVENT_IDX): the available index it wants a kick for. */
    int availEvent(final int q)
    {
        return guest.getShort((int)used(q) + 4 + 8 * QUEUE_SIZE) & 0xffff;
    }

    int usedIdx(final int q)
    {
        return guest.getShort((int)used(q) + 2) & 0xffff;
    }

    int usedId(final int q, final int i)
    {
        return guest.getInt((int)used(q) + 4 + 8 * (i % QUEUE_SIZE));
    }

    int usedLen(final int q, final int i)
    {
        return guest.getInt((int)used(q) + 8 + 8 * (i % QUEUE_SIZE));
    }

    /** Waits until the used index of q reaches {@code target}. */
    void awaitUsed(final int q, final int target) throws InterruptedException
    {
        final long deadline = System.nanoTime() + 10_000_000_000L;
        final Memory counter = new Memory(8);
        final Memory pollFd = new Memory(8);
        pollFd.setInt(0, call[q]);
        pollFd.setShort(4, (short)1);
        while (usedIdx(q) != (target & 0xffff))
        {
            if (System.nanoTime() > deadline)
            {
                throw new AssertionError("queue " + q + " used index " + usedIdx(q) + ", expected " + target);
            }
            try
            {
                // Wait for the back end's signal, but never for ever: a missing signal fails on the deadline.
                if (usedIdx(q) != (target & 0xffff) && Libc.poll(pollFd, 1, 100) > 0)
                {
                    Libc.read(call[q], counter, 8);
                    signals++;
                }
            }
            catch (final LastErrorException ex)
            {
                Thread.sleep(1);
            }
        }
    }

    /** Puts a virtio-blk request header at {@code at}. */
    void header(final long at, final int type, final long sector)
    {
        guest.putInt((int)at, type);
        guest.putInt((int)at + 4, 0);
        guest.putLong((int)at + 8, sector);
    }

    /**
     * Publishes {@code count} one-sector writes on queue {@code q} without kicking: request i writes sector i from
     * one shared data buffer, its header at {@code DATA + i * 1024} and its status byte 64 bytes after it.
     */
    void publishWrites(final int q, final int count)
    {
        for (int i = 0; i < count; i++)
        {
            header(DATA + i * 1024, VhostUser.VIRTIO_BLK_T_OUT, i);
            publish(q, new Buf(DATA + i * 1024, 16, false), new Buf(DATA + 8192, 512, false),
                new Buf(DATA + i * 1024 + 64, 1, true));
        }
    }

    @Override
    public void close()
    {
        disconnect();
        for (int q = 0; q < queues; q++)
        {
            Libc.closeQuietly(kick[q]);
            Libc.closeQuietly(call[q]);
        }
        Libc.munmap(mem, MEMORY);
        Libc.closeQuietly(memfd);
    }
}
