package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;

import dev.tidemark.io.nbd.NbdExport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A vhost-user-blk back end serving one block export to one front end (QEMU) at a time over a Unix socket; safe
 * for concurrent use: the public methods may be called from any thread, the protocol runs on the server's own
 * thread, and each virtqueue on its own worker (see {@link QueueWorker}).
 *
 * <p>The export is any {@link NbdExport} (a tracked disk's export sends every write through the disk's write
 * ring, so bitmaps, backups and fleecing see guest writes exactly as NBD writes). The front end passes guest
 * memory as file descriptors, which are mapped shared; requests are served from and into that mapping.
 *
 * <p>One front end is served at a time; when it goes away (QEMU quit, or reconnects) the rings stop, in-flight
 * requests finish, the memory is unmapped and the next connection is accepted. A daemon restart on the same
 * socket path is a new server: QEMU (with {@code reconnect=N} on its chardev) connects again, sets the rings up
 * from the used indexes it last saw, and the requests that had not completed are served again.
 */
public final class VhostUserBlkServer implements AutoCloseable
{
    /** How long stopping a queue waits for its in-flight requests. */
    private static final long DRAIN_MILLIS = 30_000;

    private final String name;
    private final NbdExport export;
    private final int numQueues;
    private final int logicalBlockSize;
    private final byte[] serial;
    private final long features;
    private final long protocolFeatures;
    private final QueueWorker.AtomicRequestCounter counter = new QueueWorker.AtomicRequestCounter();
    private final Object fdLock = new Object();
    private Path path;
    private int listenFd = -1;
    private int connFd = -1;
    private Thread thread;
    private volatile boolean closed;
    private volatile boolean connected;
    private volatile String lastError = "";

    /**
     * @param name names the threads and is the device serial (GET_ID, at most 20 bytes used).
     * @param export what the guest sees as its disk; not closed by the server.
     * @param numQueues virtqueues offered (1..256).
     * @param logicalBlockSize the guest's logical block size: a power of two, 512..65536.
     */
    public VhostUserBlkServer(final String name, final NbdExport export, final int numQueues,
        final int logicalBlockSize)
    {
        if (numQueues < 1 || numQueues > 256)
        {
            throw new IllegalArgumentException("num-queues must be in 1..256, was " + numQueues);
        }
        if (logicalBlockSize < 512 || logicalBlockSize > 65536 || Integer.bitCount(logicalBlockSize) != 1)
        {
            throw new IllegalArgumentException("logical-block-size must be a power of two in 512..65536, was "
                + logicalBlockSize);
        }
        this.name = name;
        this.export = export;
        this.numQueues = numQueues;
        this.logicalBlockSize = logicalBlockSize;
        final byte[] raw = name.getBytes(StandardCharsets.UTF_8);
        this.serial = java.util.Arrays.copyOf(raw, Math.min(raw.length, VhostUser.VIRTIO_BLK_ID_BYTES));
        long f = bit(VhostUser.VIRTIO_F_VERSION_1) | bit(VhostUser.F_PROTOCOL_FEATURES)
            | bit(VhostUser.VIRTIO_RING_F_INDIRECT_DESC) | bit(VhostUser.VIRTIO_RING_F_EVENT_IDX)
            | bit(VhostUser.VIRTIO_BLK_F_SEG_MAX)
            | bit(VhostUser.VIRTIO_BLK_F_BLK_SIZE) | bit(VhostUser.VIRTIO_BLK_F_TOPOLOGY)
            | bit(VhostUser.VIRTIO_BLK_F_FLUSH) | bit(VhostUser.VIRTIO_BLK_F_MQ);
        if (export.isReadOnly())
        {
            f |= bit(VhostUser.VIRTIO_BLK_F_RO);
        }
        else
        {
            f |= bit(VhostUser.VIRTIO_BLK_F_DISCARD) | bit(VhostUser.VIRTIO_BLK_F_WRITE_ZEROES);
        }
        this.features = f;
        this.protocolFeatures = bit(VhostUser.PROTOCOL_F_MQ) | bit(VhostUser.PROTOCOL_F_REPLY_ACK)
            | bit(VhostUser.PROTOCOL_F_CONFIG);
    }

    private static long bit(final int n)
    {
        return 1L << n;
    }

    /**
     * Listens on {@code socket} (a stale socket file there is replaced, as QEMU does) and starts serving.
     *
     * @throws IOException if the socket cannot be bound.
     */
    public synchronized void listen(final Path socket) throws IOException
    {
        if (thread != null || closed)
        {
            throw new IllegalStateException("vhost-user-blk server '" + name + "' already started");
        }
        final int fd = (int)Libc.retry(() -> Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0),
            "socket");
        try
        {
            Files.deleteIfExists(socket);
            final Memory addr = Libc.sockaddr(socket.toAbsolutePath());
            Libc.retry(() -> Libc.bind(fd, addr, Libc.sockaddrSize()), "bind(" + socket + ")");
            Libc.retry(() -> Libc.listen(fd, 1), "listen");
        }
        catch (final IOException ex)
        {
            Libc.closeQuietly(fd);
            throw ex;
        }
        listenFd = fd;
        path = socket;
        thread = new Thread(this::acceptLoop, "vhost-" + name);
        thread.setDaemon(true);
        thread.start();
    }

    /** @return the socket path, or {@code null} before {@link #listen}. */
    public synchronized Path path()
    {
        return path;
    }

    /** @return whether a front end is connected now. */
    public boolean isConnected()
    {
        return connected;
    }

    /** @return virtio-blk requests taken from the rings so far. */
    public long requests()
    {
        return counter.requests.sum();
    }

    /** @return requests completed with a status other than OK, and malformed ones. */
    public long errors()
    {
        return counter.errors.sum() + counter.malformed.sum();
    }

    /** @return bytes written by the guest so far. */
    public long writtenBytes()
    {
        return counter.writtenBytes.sum();
    }

    /** @return the last protocol error that ended a connection, empty if none. */
    public String lastError()
    {
        return lastError;
    }

    /** Stops listening, ends the connection (its in-flight requests finish first) and deletes the socket. */
    @Override
    public void close()
    {
        final Thread running;
        synchronized (this)
        {
            if (closed)
            {
                return;
            }
            closed = true;
            running = thread;
        }
        synchronized (fdLock)
        {
            if (listenFd >= 0)
            {
                Libc.shutdownQuietly(listenFd);
            }
            if (connFd >= 0)
            {
                Libc.shutdownQuietly(connFd);
            }
        }
        if (running != null)
        {
            try
            {
                running.join(DRAIN_MILLIS + 5_000);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (fdLock)
        {
            Libc.closeQuietly(listenFd);
            listenFd = -1;
        }
        if (path != null)
        {
            try
            {
                Files.deleteIfExists(path);
            }
            catch (final IOException ex)
            {
                // The next listen on this path replaces it.
            }
        }
    }

    private void acceptLoop()
    {
        while (!closed)
        {
            final int fd;
            try
            {
                fd = Libc.accept4(listenFd, null, null, Libc.SOCK_CLOEXEC);
            }
            catch (final LastErrorException ex)
            {
                if (closed)
                {
                    return;
                }
                if (ex.getErrorCode() == Libc.EINTR)
                {
                    continue;
                }
                lastError = "accept failed: errno " + ex.getErrorCode();
                return;
            }
            synchronized (fdLock)
            {
                if (closed)
                {
                    Libc.closeQuietly(fd);
                    return;
                }
                connFd = fd;
            }
            connected = true;
            try
            {
                new Connection(fd).serve();
            }
            finally
            {
                connected = false;
                synchronized (fdLock)
                {
                    Libc.closeQuietly(fd);
                    connFd = -1;
                }
            }
        }
    }

    /** The config space, {@code struct virtio_blk_config}, little-endian. */
    byte[] config()
    {
        final ByteBuffer c = ByteBuffer.allocate(VhostUser.BLK_CONFIG_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        c.putLong(0, export.size() / VhostUser.SECTOR);
        c.putInt(8, 0);
        c.putInt(12, 126);
        c.putInt(20, logicalBlockSize);
        c.put(24, (byte)0);
        c.put(25, (byte)0);
        c.putShort(26, (short)1);
        c.putInt(28, 0);
        c.put(32, (byte)1);
        c.putShort(34, (short)numQueues);
        final int maxSectors = 1 << 22;
        c.putInt(36, maxSectors);
        c.putInt(40, 1);
        c.putInt(44, logicalBlockSize / VhostUser.SECTOR);
        c.putInt(48, maxSectors);
        c.putInt(52, 1);
        c.put(56, (byte)1);
        return c.array();
    }

    /** One queue's set-up as the front end sent it; connection thread only. */
    private static final class QueueState
    {
        int num;
        long descUva;
        long availUva;
        long usedUva;
        boolean addressed;
        int base;
        int kickFd = -1;
        int callFd = -1;
        final List<Integer> retiredCallFds = new ArrayList<>();
        boolean enabled;
        QueueWorker worker;
    }

    /** One front end's session; runs on the server thread only. */
    private final class Connection
    {
        private final int fd;
        private final Memory header = new Memory(VhostUser.HEADER_SIZE);
        private final Memory payload = new Memory(VhostUser.MAX_PAYLOAD);
        private final int[] fds = new int[Libc.MAX_FDS];
        private final QueueState[] queues = new QueueState[numQueues];
        private GuestMemory memory = GuestMemory.empty();
        private long ackedFeatures;
        private long ackedProtocol;
        private boolean leaked;

        Connection(final int fd)
        {
            this.fd = fd;
            for (int i = 0; i < numQueues; i++)
            {
                queues[i] = new QueueState();
            }
        }

        void serve()
        {
            try
            {
                while (!closed)
                {
                    final long[] got = Libc.recvWithFds(fd, header, VhostUser.HEADER_SIZE, fds);
                    final int fdCount = (int)got[1];
                    if (got[0] == 0)
                    {
                        closeAll(fdCount);
                        return;
                    }
                    if (got[0] < VhostUser.HEADER_SIZE
                        && !Libc.readFully(fd, header.share(got[0]), VhostUser.HEADER_SIZE - got[0]))
                    {
                        closeAll(fdCount);
                        return;
                    }
                    final int request = header.getInt(0);
                    final int flags = header.getInt(4);
                    final int size = header.getInt(8);
                    if (size < 0 || size > VhostUser.MAX_PAYLOAD)
                    {
                        closeAll(fdCount);
                        throw new IOException("message " + request + " with a payload of " + size + " bytes");
                    }
                    if (size > 0 && !Libc.readFully(fd, payload, size))
                    {
                        closeAll(fdCount);
                        return;
                    }
                    final ByteBuffer body = payload.getByteBuffer(0, Math.max(size, 0)).order(ByteOrder.LITTLE_ENDIAN);
                    handle(request, flags, body, fdCount);
                }
            }
            catch (final IOException | RuntimeException ex)
            {
                lastError = String.valueOf(ex.getMessage());
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
            finally
            {
                teardown();
            }
        }

        private void closeAll(final int fdCount)
        {
            for (int i = 0; i < fdCount; i++)
            {
                Libc.closeQuietly(fds[i]);
            }
        }

        private void handle(final int request, final int flags, final ByteBuffer body, final int fdCount)
            throws IOException, InterruptedException
        {
            final boolean needReply = (flags & VhostUser.FLAG_NEED_REPLY) != 0
                && (ackedProtocol & bit(VhostUser.PROTOCOL_F_REPLY_ACK)) != 0;
            boolean ok = true;
            switch (request)
            {
                case VhostUser.GET_FEATURES -> replyU64(request, features);
                case VhostUser.SET_FEATURES -> ackedFeatures = body.getLong(0) & features;
                case VhostUser.SET_OWNER, VhostUser.RESET_OWNER -> closeAll(fdCount);
                case VhostUser.GET_PROTOCOL_FEATURES -> replyU64(request, protocolFeatures);
                case VhostUser.SET_PROTOCOL_FEATURES -> ackedProtocol = body.getLong(0) & protocolFeatures;
                case VhostUser.GET_QUEUE_NUM -> replyU64(request, numQueues);
                case VhostUser.SET_MEM_TABLE -> setMemTable(body, fdCount);
                case VhostUser.SET_VRING_NUM -> ok = setVringNum(body.getInt(0), body.getInt(4));
                case VhostUser.SET_VRING_ADDR -> ok = setVringAddr(body);
                case VhostUser.SET_VRING_BASE -> ok = setVringBase(body.getInt(0), body.getInt(4));
                case VhostUser.GET_VRING_BASE -> getVringBase(request, body.getInt(0));
                case VhostUser.SET_VRING_KICK, VhostUser.SET_VRING_CALL, VhostUser.SET_VRING_ERR ->
                    ok = setVringFd(request, body.getLong(0), fdCount);
                case VhostUser.SET_VRING_ENABLE -> ok = setVringEnable(body.getInt(0), body.getInt(4) != 0);
                case VhostUser.GET_CONFIG -> getConfig(request, body);
                case VhostUser.SET_CONFIG -> closeAll(fdCount);
                default ->
                {
                    // Only offered features bring other messages; a front end that sends them anyway is told no.
                    closeAll(fdCount);
                    ok = false;
                }
            }
            if (needReply && !isGet(request))
            {
                replyU64(request, ok ? 0 : 1);
            }
            else if (!ok && !needReply)
            {
                throw new IOException("vhost-user request " + request + " refused");
            }
        }

        private boolean isGet(final int request)
        {
            return request == VhostUser.GET_FEATURES || request == VhostUser.GET_PROTOCOL_FEATURES
                || request == VhostUser.GET_QUEUE_NUM || request == VhostUser.GET_VRING_BASE
                || request == VhostUser.GET_CONFIG;
        }

        private QueueState queue(final int index)
        {
            return index >= 0 && index < numQueues ? queues[index] : null;
        }

        private void setMemTable(final ByteBuffer body, final int fdCount) throws IOException, InterruptedException
        {
            // Rings read through the old mapping: stop them, swap, and start them again on the new one.
            final List<Integer> running = new ArrayList<>();
            for (int i = 0; i < numQueues; i++)
            {
                if (queues[i].worker != null)
                {
                    running.add(i);
                    stopQueue(queues[i]);
                }
            }
            final GuestMemory mapped = GuestMemory.map(body, fds, fdCount);
            if (!leaked)
            {
                memory.unmap();
            }
            memory = mapped;
            for (final int i : running)
            {
                maybeStart(i);
            }
        }

        private boolean setVringNum(final int index, final int num)
        {
            final QueueState q = queue(index);
            if (q == null || q.worker != null || num < 1 || num > VhostUser.MAX_QUEUE_SIZE
                || Integer.bitCount(num) != 1)
            {
                return false;
            }
            q.num = num;
            return true;
        }

        private boolean setVringAddr(final ByteBuffer body)
        {
            final QueueState q = queue(body.getInt(0));
            if (q == null || q.worker != null)
            {
                return false;
            }
            q.descUva = body.getLong(8);
            q.usedUva = body.getLong(16);
            q.availUva = body.getLong(24);
            q.addressed = true;
            return true;
        }

        private boolean setVringBase(final int index, final int base)
        {
            final QueueState q = queue(index);
            if (q == null || q.worker != null)
            {
                return false;
            }
            q.base = base & 0xffff;
            return true;
        }

        private void getVringBase(final int request, final int index) throws IOException, InterruptedException
        {
            final QueueState q = queue(index);
            if (q == null)
            {
                throw new IOException("GET_VRING_BASE for queue " + index + " of " + numQueues);
            }
            stopQueue(q);
            // GET_VRING_BASE stops the ring: it starts again on the next SET_VRING_KICK.
            Libc.closeQuietly(q.kickFd);
            q.kickFd = -1;
            final ByteBuffer state = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            state.putInt(0, index);
            state.putInt(4, q.base);
            reply(request, state.array());
        }

        private boolean setVringFd(final int request, final long value, final int fdCount)
            throws IOException, InterruptedException
        {
            final QueueState q = queue((int)(value & VhostUser.VRING_IDX_MASK));
            final boolean noFd = (value & VhostUser.VRING_NOFD_MASK) != 0;
            final int passed = !noFd && fdCount > 0 ? fds[0] : -1;
            for (int i = passed >= 0 ? 1 : 0; i < fdCount; i++)
            {
                Libc.closeQuietly(fds[i]);
            }
            if (q == null || !noFd && passed < 0)
            {
                Libc.closeQuietly(passed);
                return false;
            }
            switch (request)
            {
                case VhostUser.SET_VRING_KICK ->
                {
                    stopQueue(q);
                    Libc.closeQuietly(q.kickFd);
                    if (passed < 0)
                    {
                        // Polling mode needs a busy thread per queue; Tidemark serves kicked queues only.
                        return false;
                    }
                    q.kickFd = passed;
                    maybeStart(indexOf(q));
                }
                case VhostUser.SET_VRING_CALL ->
                {
                    // A completion on another thread may still hold the old descriptor: close it at teardown.
                    if (q.callFd >= 0)
                    {
                        q.retiredCallFds.add(q.callFd);
                    }
                    q.callFd = passed;
                    if (q.worker != null)
                    {
                        q.worker.queue().setCallFd(passed);
                    }
                }
                default -> Libc.closeQuietly(passed);
            }
            return true;
        }

        private boolean setVringEnable(final int index, final boolean enable) throws IOException, InterruptedException
        {
            final QueueState q = queue(index);
            if (q == null)
            {
                return false;
            }
            q.enabled = enable;
            if (enable)
            {
                maybeStart(index);
            }
            else
            {
                stopQueue(q);
            }
            return true;
        }

        private int indexOf(final QueueState q)
        {
            for (int i = 0; i < numQueues; i++)
            {
                if (queues[i] == q)
                {
                    return i;
                }
            }
            return -1;
        }

        private void maybeStart(final int index) throws IOException
        {
            final QueueState q = queues[index];
            final boolean enabled = q.enabled || (ackedFeatures & bit(VhostUser.F_PROTOCOL_FEATURES)) == 0;
            if (q.worker != null || !enabled || q.kickFd < 0 || !q.addressed || q.num == 0
                || memory.regionCount() == 0)
            {
                return;
            }
            final Virtqueue vq = new Virtqueue(index, q.num, memory, q.descUva, q.availUva, q.usedUva, q.base,
                q.callFd, (ackedFeatures & bit(VhostUser.VIRTIO_RING_F_EVENT_IDX)) != 0);
            q.worker = new QueueWorker("vhost-" + name + "-q" + index, vq, export, q.kickFd, serial, counter);
            q.worker.start();
        }

        private void stopQueue(final QueueState q) throws InterruptedException
        {
            if (q.worker == null)
            {
                return;
            }
            if (!q.worker.stop(DRAIN_MILLIS))
            {
                // A request is still in the export: its completion will write guest memory, so keep it mapped.
                leaked = true;
            }
            q.base = q.worker.queue().lastAvail();
            q.worker = null;
        }

        private void getConfig(final int request, final ByteBuffer body) throws IOException
        {
            final int offset = body.getInt(0);
            final int size = body.getInt(4);
            if (size < 0 || size > VhostUser.MAX_PAYLOAD - 12 || offset < 0)
            {
                throw new IOException("GET_CONFIG of " + size + " bytes at " + offset);
            }
            final byte[] config = config();
            final byte[] out = new byte[12 + size];
            ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putInt(0, offset).putInt(4, size)
                .putInt(8, body.getInt(8));
            for (int i = 0; i < size && offset + i < config.length; i++)
            {
                out[12 + i] = config[offset + i];
            }
            reply(request, out);
        }

        private void replyU64(final int request, final long value) throws IOException
        {
            final byte[] out = new byte[8];
            ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putLong(0, value);
            reply(request, out);
        }

        private void reply(final int request, final byte[] body) throws IOException
        {
            final Memory out = new Memory(VhostUser.HEADER_SIZE + body.length);
            out.setInt(0, request);
            out.setInt(4, VhostUser.FLAG_VERSION | VhostUser.FLAG_REPLY);
            out.setInt(8, body.length);
            out.write(VhostUser.HEADER_SIZE, body, 0, body.length);
            Libc.writeFully(fd, out, VhostUser.HEADER_SIZE + body.length);
        }

        private void teardown()
        {
            for (final QueueState q : queues)
            {
                try
                {
                    stopQueue(q);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                    leaked = true;
                }
                Libc.closeQuietly(q.kickFd);
                Libc.closeQuietly(q.callFd);
                for (final int retired : q.retiredCallFds)
                {
                    Libc.closeQuietly(retired);
                }
            }
            if (!leaked)
            {
                memory.unmap();
            }
        }
    }
}
