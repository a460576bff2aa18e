package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

import static dev.tidemark.io.nbd.NbdProtocol.*;

/**
 * A {@link BlockStore} on a remote NBD export; safe for concurrent use by any number of threads, whose
 * requests pipeline over one connection, or several when the server offers {@code CAN_MULTI_CONN}.
 *
 * <p>Each call splits its range into requests of at most {@link #requestSize()} bytes aligned to the
 * server's minimum block, sends them all (round-robin over the connections), then waits for every
 * reply. Unaligned reads are widened; unaligned writes read-modify-write the edge blocks (not atomic
 * against a concurrent writer of the same block). {@link #discard} and {@link #writeZeroes} use
 * WRITE_ZEROES when offered (discard allows unmapping) and write zero buffers otherwise, because TRIM
 * leaves the content unspecified; {@link #trim} sends a plain advisory TRIM.
 *
 * <p>A broken connection fails the calls in flight with {@link NbdDisconnectedException}. With
 * reconnection enabled the failed call is retried on a new connection; writes acknowledged before the
 * break but not yet flushed might have been lost by the server, so the next {@link #flush()} then throws
 * instead of pretending they are durable.
 */
public final class NbdClient implements BlockStore
{
    private static final int DEFAULT_REQUEST = 4 * 1024 * 1024;
    private static final long ZERO_REQUEST = 1L << 30;

    private final SocketAddress address;
    private final dev.tidemark.io.tls.TlsCredentials tls;
    private final String tlsHostname;
    private final String exportName;
    private final int reconnectAttempts;
    private final long replyTimeoutMillis;
    private final NbdClientConnection[] connections;
    private final AtomicInteger next = new AtomicInteger();
    private final long size;
    private final int flags;
    private final int minBlock;
    private final int preferredBlock;
    private final int requestSize;
    private final boolean allocationContext;
    private final Object reconnectLock = new Object();
    private volatile boolean unflushedWrites;
    private volatile boolean durabilityUnknown;
    private volatile boolean closed;

    private NbdClient(final Builder builder, final NbdClientConnection first) throws IOException
    {
        this.address = builder.address;
        this.tls = builder.tls;
        this.tlsHostname = builder.tlsHostname;
        this.exportName = builder.exportName;
        this.reconnectAttempts = builder.reconnectAttempts;
        this.replyTimeoutMillis = builder.replyTimeout.toMillis();
        this.size = first.size;
        this.flags = first.flags;
        this.minBlock = first.minBlock;
        this.preferredBlock = first.preferredBlock;
        this.allocationContext = first.allocationContextId >= 0;
        final int cap = Math.min(first.maxPayload, DEFAULT_REQUEST);
        this.requestSize = Math.max(minBlock, cap - cap % minBlock);
        final int count = (flags & TF_CAN_MULTI_CONN) != 0 ? builder.connections : 1;
        this.connections = new NbdClientConnection[count];
        connections[0] = first;
        try
        {
            for (int i = 1; i < count; i++)
            {
                connections[i] = NbdClientConnection.open(address, exportName, tls, tlsHostname);
            }
        }
        catch (final IOException ex)
        {
            for (final NbdClientConnection connection : connections)
            {
                if (connection != null)
                {
                    connection.close();
                }
            }
            throw ex;
        }
    }

    /** @return a builder; give it a socket with {@link Builder#tcp} or {@link Builder#unix}. */
    public static Builder builder()
    {
        return new Builder();
    }

    /** Collects connection settings; confine to one thread. */
    public static final class Builder
    {
        private SocketAddress address;
        private String exportName = "";
        private int connections = 4;
        private int reconnectAttempts;
        private long minimumSize = -1;
        private Duration replyTimeout = Duration.ofMinutes(5);
        private dev.tidemark.io.tls.TlsCredentials tls;
        private String tlsHostname;
        private boolean hostnameSet;

        private Builder()
        {
        }

        /** Connects over TCP. */
        public Builder tcp(final String host, final int port)
        {
            this.address = new InetSocketAddress(host, port);
            if (!hostnameSet)
            {
                this.tlsHostname = host;
            }
            return this;
        }

        /** Connects over a Unix domain socket. */
        public Builder unix(final Path socket)
        {
            this.address = UnixDomainSocketAddress.of(socket);
            return this;
        }

        /**
         * Upgrades every connection with NBD_OPT_STARTTLS (QEMU's {@code tls-creds} on the client side).
         *
         * @param credentials client credentials ({@link dev.tidemark.io.tls.TlsCredentials.Endpoint#CLIENT}).
         */
        public Builder tls(final dev.tidemark.io.tls.TlsCredentials credentials)
        {
            if (credentials.endpoint() != dev.tidemark.io.tls.TlsCredentials.Endpoint.CLIENT)
            {
                throw new IllegalArgumentException("TLS credentials for an NBD client need endpoint=client");
            }
            this.tls = credentials;
            return this;
        }

        /** The name the server's certificate must carry (QEMU's {@code tls-hostname}; default: the TCP host). */
        public Builder tlsHostname(final String hostname)
        {
            this.tlsHostname = hostname;
            this.hostnameSet = true;
            return this;
        }

        /** Names the export (default: empty, the server's default export). */
        public Builder exportName(final String name)
        {
            this.exportName = name;
            return this;
        }

        /** Connections to open when the server offers CAN_MULTI_CONN (default 4; 1 otherwise). */
        public Builder connections(final int count)
        {
            if (count < 1 || count > 64)
            {
                throw new IllegalArgumentException("connections must be 1..64, was " + count);
            }
            this.connections = count;
            return this;
        }

        /** How often a call may reconnect after a broken connection (default 0: fail at once). */
        public Builder reconnectAttempts(final int attempts)
        {
            if (attempts < 0)
            {
                throw new IllegalArgumentException("reconnectAttempts must not be negative, was " + attempts);
            }
            this.reconnectAttempts = attempts;
            return this;
        }

        /** Refuses to connect when the export is smaller than this many bytes. */
        public Builder minimumSize(final long bytes)
        {
            this.minimumSize = bytes;
            return this;
        }

        /** Longest wait for one reply before the connection is treated as broken (default 5 minutes). */
        public Builder replyTimeout(final Duration timeout)
        {
            this.replyTimeout = timeout;
            return this;
        }

        /**
         * Connects and negotiates.
         *
         * @throws NbdException if the server is unreachable, refuses the export or it is too small.
         */
        public NbdClient connect() throws IOException
        {
            if (address == null)
            {
                throw new IllegalStateException("no socket: call tcp(...) or unix(...)");
            }
            final NbdClientConnection first = NbdClientConnection.open(address, exportName, tls, tlsHostname);
            if (first.size < minimumSize)
            {
                first.close();
                throw new NbdException(first.where() + " has " + first.size + " bytes, fewer than the "
                    + minimumSize + " required", 0);
            }
            return new NbdClient(this, first);
        }
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public boolean isReadOnly()
    {
        return (flags & TF_READ_ONLY) != 0;
    }

    /** @return the transmission flags the server sent. */
    public int transmissionFlags()
    {
        return flags;
    }

    /** @return the server's minimum block size (1 if none advertised). */
    public int minimumBlockSize()
    {
        return minBlock;
    }

    /** @return the server's preferred block size. */
    public int preferredBlockSize()
    {
        return preferredBlock;
    }

    /** @return the largest request this client sends. */
    public int requestSize()
    {
        return requestSize;
    }

    /** @return connections open to the server. */
    public int connectionCount()
    {
        return connections.length;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        final int length = dst.remaining();
        checkRange(offset, length);
        final long start = alignDown(offset);
        final long end = alignUp(offset + length);
        if (start == offset && end == offset + length)
        {
            readAligned(offset, dst.slice());
        }
        else
        {
            final ByteBuffer widened = ByteBuffer.allocateDirect((int)(end - start));
            readAligned(start, widened);
            dst.slice().put(widened.position((int)(offset - start)).limit((int)(offset - start) + length));
        }
        dst.position(dst.position() + length);
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        requireWritable();
        final int length = src.remaining();
        checkRange(offset, length);
        final long start = alignDown(offset);
        final long end = alignUp(offset + length);
        if (start == offset && end == offset + length)
        {
            writeAligned(offset, src.slice());
        }
        else
        {
            final ByteBuffer whole = ByteBuffer.allocateDirect((int)(end - start));
            readAligned(start, whole.duplicate().limit(minBlock));
            readAligned(end - minBlock, whole.duplicate().position((int)(end - start - minBlock)).slice());
            whole.duplicate().position((int)(offset - start)).put(src.slice());
            writeAligned(start, whole);
        }
        src.position(src.position() + length);
    }

    @Override
    public void flush() throws IOException
    {
        if ((flags & TF_SEND_FLUSH) == 0)
        {
            return;
        }
        if (durabilityUnknown)
        {
            throw new NbdException("a connection to " + connections[0].where() + " broke after writes were "
                + "acknowledged but before they were flushed; their durability is unknown", 0);
        }
        final boolean hadWrites = unflushedWrites;
        unflushedWrites = false;
        try
        {
            // With CAN_MULTI_CONN one FLUSH covers writes completed on every connection.
            runSplit(CMD_FLUSH, 0, 0, 0, 0, false, null);
        }
        catch (final IOException ex)
        {
            unflushedWrites |= hadWrites;
            throw ex;
        }
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        zero(offset, length, true);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        zero(offset, length, mayUnmap);
    }

    /**
     * Sends an advisory TRIM (content afterwards unspecified); does nothing when the server does not
     * offer TRIM. Unaligned edges are left alone.
     */
    public void trim(final long offset, final long length) throws IOException
    {
        requireWritable();
        checkRange(offset, length);
        final long start = alignUp(offset);
        final long end = alignDown(offset + length);
        if ((flags & TF_SEND_TRIM) != 0 && end > start)
        {
            runSplit(CMD_TRIM, 0, start, end - start, ZERO_REQUEST, false, null);
        }
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
        throws IOException
    {
        checkRange(offset, length);
        if (!allocationContext)
        {
            if (length > 0)
            {
                sink.accept(offset, length, true, false);
            }
            return;
        }
        long at = offset;
        final long end = offset + length;
        while (at < end)
        {
            final long ask = Math.min(end - at, 0xffffffffL - minBlock + 1);
            final NbdClientConnection.Request request = submitWithRetry(CMD_BLOCK_STATUS, 0, at, ask, null, null, true);
            request.await(connections[0].where(), replyTimeoutMillis);
            if (request.extents.isEmpty())
            {
                throw new NbdException("BLOCK_STATUS at " + at + " on " + connections[0].where()
                    + " returned no base:allocation extents", 0);
            }
            for (final long[] extent : request.extents)
            {
                final long extentLength = Math.min(extent[0], end - at);
                if (extentLength <= 0)
                {
                    throw new NbdException("BLOCK_STATUS at " + at + " returned an empty extent", 0);
                }
                final int state = (int)extent[1];
                if (!sink.accept(at, extentLength, (state & STATE_HOLE) == 0, (state & STATE_ZERO) != 0))
                {
                    return;
                }
                at += extentLength;
                if (at >= end)
                {
                    break;
                }
            }
        }
    }

    /** Sends DISC on every connection and closes them. */
    @Override
    public void close()
    {
        closed = true;
        for (final NbdClientConnection connection : connections)
        {
            connection.close();
        }
    }

    private void zero(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        requireWritable();
        checkRange(offset, length);
        if (length == 0)
        {
            return;
        }
        final long start = Math.min(alignUp(offset), offset + length);
        final long end = Math.max(alignDown(offset + length), start);
        if (start > offset)
        {
            write(offset, ByteBuffer.allocate((int)(start - offset)));
        }
        if (end > start)
        {
            if ((flags & TF_SEND_WRITE_ZEROES) != 0)
            {
                runSplit(CMD_WRITE_ZEROES, mayUnmap ? 0 : CMD_FLAG_NO_HOLE, start, end - start,
                    ZERO_REQUEST - ZERO_REQUEST % minBlock, true, null);
            }
            else
            {
                final ByteBuffer zeroes = ByteBuffer.allocateDirect(requestSize);
                for (long at = start; at < end; at += requestSize)
                {
                    writeAligned(at, zeroes.clear().limit((int)Math.min(requestSize, end - at)));
                }
            }
        }
        if (offset + length > end && end >= start)
        {
            write(end, ByteBuffer.allocate((int)(offset + length - end)));
        }
    }

    private void readAligned(final long offset, final ByteBuffer dst) throws IOException
    {
        runSplit(CMD_READ, 0, offset, dst.remaining(), requestSize, false, dst);
    }

    private void writeAligned(final long offset, final ByteBuffer src) throws IOException
    {
        final int length = src.remaining();
        final List<NbdClientConnection.Request> requests = new ArrayList<>();
        for (int done = 0; done < length; done += requestSize)
        {
            final int piece = Math.min(requestSize, length - done);
            final ByteBuffer slice = src.duplicate().position(src.position() + done).limit(src.position() + done + piece);
            requests.add(submitWithRetry(CMD_WRITE, 0, offset + done, piece, slice.slice(), null, false));
        }
        awaitAll(requests, true);
    }

    /** Splits a request into pieces, sends them all, then waits for every reply. */
    private void runSplit(final int type, final int commandFlags, final long offset, final long length,
        final long piece, final boolean modifies, final ByteBuffer readInto) throws IOException
    {
        final List<NbdClientConnection.Request> requests = new ArrayList<>();
        if (length == 0)
        {
            requests.add(submitWithRetry(type, commandFlags, offset, 0, null, readInto, false));
        }
        for (long done = 0; done < length; done += piece)
        {
            final long count = Math.min(piece, length - done);
            final ByteBuffer target = readInto == null ? null
                : readInto.duplicate().position((int)done).limit((int)(done + count)).slice();
            requests.add(submitWithRetry(type, commandFlags, offset + done, count, null, target, false));
        }
        awaitAll(requests, modifies);
    }

    private void awaitAll(final List<NbdClientConnection.Request> requests, final boolean modifies) throws IOException
    {
        IOException first = null;
        for (final NbdClientConnection.Request request : requests)
        {
            try
            {
                request.await(connections[0].where(), replyTimeoutMillis);
            }
            catch (final NbdDisconnectedException ex)
            {
                first = first == null ? ex : first;
                if (reconnectAttempts > 0)
                {
                    first = retry(request, ex);
                }
            }
            catch (final IOException ex)
            {
                first = first == null ? ex : first;
            }
        }
        if (first != null)
        {
            throw first;
        }
        if (modifies)
        {
            unflushedWrites = true;
        }
    }

    /** Retries one request whose connection broke (only requests without a payload to resend). */
    private IOException retry(final NbdClientConnection.Request failed, final NbdDisconnectedException cause)
    {
        if (failed.type == CMD_WRITE)
        {
            return cause;
        }
        try
        {
            final NbdClientConnection.Request again = submitWithRetry(failed.type, 0, failed.offset, failed.length,
                null, failed.readInto, failed.extents != null);
            again.await(connections[0].where(), replyTimeoutMillis);
            return null;
        }
        catch (final IOException ex)
        {
            return ex;
        }
    }

    private NbdClientConnection.Request submitWithRetry(final int type, final int commandFlags, final long offset,
        final long length, final ByteBuffer data, final ByteBuffer readInto, final boolean wantExtents) throws IOException
    {
        if (closed)
        {
            throw new NbdException("NBD client for " + connections[0].where() + " is closed", 0);
        }
        int attempts = 0;
        while (true)
        {
            final int index = Math.floorMod(next.getAndIncrement(), connections.length);
            final NbdClientConnection connection = connectionAt(index, attempts);
            try
            {
                return connection.submit(type, commandFlags, offset, length,
                    data == null ? null : data.duplicate(), readInto, wantExtents);
            }
            catch (final NbdDisconnectedException ex)
            {
                if (++attempts > reconnectAttempts)
                {
                    throw ex;
                }
            }
        }
    }

    private NbdClientConnection connectionAt(final int index, final int attempts) throws IOException
    {
        NbdClientConnection connection = connections[index];
        if (!connection.isBroken() || attempts >= reconnectAttempts && reconnectAttempts == 0)
        {
            return connection;
        }
        synchronized (reconnectLock)
        {
            connection = connections[index];
            if (connection.isBroken() && !closed)
            {
                if (unflushedWrites)
                {
                    durabilityUnknown = true;
                }
                final NbdClientConnection fresh = NbdClientConnection.open(address, exportName, tls, tlsHostname);
                if (fresh.size != size)
                {
                    fresh.close();
                    throw new NbdException(fresh.where() + " changed size from " + size + " to " + fresh.size
                        + " across a reconnect", 0);
                }
                connections[index] = fresh;
                connection = fresh;
            }
            return connection;
        }
    }

    private void requireWritable() throws NbdException
    {
        if (isReadOnly())
        {
            throw new NbdException(connections[0].where() + " is read-only", EPERM);
        }
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") lies outside the "
                + size + "-byte NBD export");
        }
    }

    private long alignDown(final long value)
    {
        return value - value % minBlock;
    }

    private long alignUp(final long value)
    {
        return Math.min(size, alignDown(value + minBlock - 1));
    }
}
