package dev.tidemark.io.nbd;

import java.io.EOFException;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

import static dev.tidemark.io.nbd.NbdProtocol.*;

/**
 * One client connection: requests are sent by any caller thread under a lock, and one reader thread
 * matches replies to requests by cookie, so requests pipeline.
 */
final class NbdClientConnection implements AutoCloseable
{
    private static final int MAX_OPTION_REPLY = 16 * 1024 * 1024;
    private static final int MAX_CHUNK = 64 * 1024 * 1024 + 8;

    private final SocketChannel channel;
    /** Set once STARTTLS succeeded, before the reader starts; every byte then goes through it. */
    private volatile dev.tidemark.io.tls.TlsChannel tls;
    private final String where;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final ByteBuffer sendHeader = ByteBuffer.allocateDirect(28);
    private final ByteBuffer replyHeader = ByteBuffer.allocateDirect(32);
    private final Map<Long, Request> pending = new ConcurrentHashMap<>();
    private final AtomicLong cookies = new AtomicLong();
    private Thread reader;
    private volatile NbdDisconnectedException failure;

    long size;
    int flags;
    int minBlock = 1;
    int preferredBlock = 4096;
    int maxPayload = MAX_PAYLOAD;
    boolean structured;
    int allocationContextId = -1;

    private NbdClientConnection(final SocketChannel channel, final String where)
    {
        this.channel = channel;
        this.where = where;
    }

    /** Connects and negotiates; the returned connection is in transmission with its reader running. */
    static NbdClientConnection open(final SocketAddress address, final String exportName,
        final dev.tidemark.io.tls.TlsCredentials credentials, final String hostname) throws IOException
    {
        final SocketChannel channel = address instanceof UnixDomainSocketAddress
            ? SocketChannel.open(StandardProtocolFamily.UNIX) : SocketChannel.open();
        final String where = "NBD export '" + exportName + "' at " + address;
        try
        {
            channel.connect(address);
            if (address instanceof InetSocketAddress)
            {
                channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
            }
            final NbdClientConnection connection = new NbdClientConnection(channel, where);
            connection.handshake(exportName, credentials, hostname);
            connection.startReader();
            return connection;
        }
        catch (final IOException | RuntimeException ex)
        {
            NbdServer.closeQuietly(channel);
            if (ex instanceof NbdException)
            {
                throw (NbdException)ex;
            }
            throw new NbdException("cannot connect to " + where + ": " + ex.getMessage(), ex);
        }
    }

    private void startReader()
    {
        reader = new Thread(this::readLoop, "nbd-client-reader");
        reader.setDaemon(true);
        reader.start();
    }

    // ------------------------------------------------------------------------------------------------
    // Handshake

    private void handshake(final String exportName, final dev.tidemark.io.tls.TlsCredentials credentials,
        final String hostname) throws IOException
    {
        final ByteBuffer greeting = readFully(ByteBuffer.allocate(18));
        if (greeting.getLong() != INIT_PASSWD || greeting.getLong() != IHAVEOPT)
        {
            throw new NbdException(where + " is not a fixed-newstyle NBD server (bad greeting magic)", 0);
        }
        final int serverFlags = Short.toUnsignedInt(greeting.getShort());
        if ((serverFlags & FLAG_FIXED_NEWSTYLE) == 0)
        {
            throw new NbdException(where + " does not offer fixed newstyle negotiation", 0);
        }
        final boolean noZeroes = (serverFlags & FLAG_NO_ZEROES) != 0;
        writeFully(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | (noZeroes ? CLIENT_NO_ZEROES : 0)).flip());

        if (credentials != null)
        {
            sendOption(OPT_STARTTLS, new byte[0]);
            final OptionReply started = readOptionReply(OPT_STARTTLS);
            if (started.type != REP_ACK)
            {
                throw new NbdException(where + " refused STARTTLS: " + started.text(), 0);
            }
            tls = credentials.connect(channel, hostname);
        }

        sendOption(OPT_STRUCTURED_REPLY, new byte[0]);
        OptionReply reply = readOptionReply(OPT_STRUCTURED_REPLY);
        structured = reply.type == REP_ACK;
        while (reply.type != REP_ACK && reply.type > 0)
        {
            reply = readOptionReply(OPT_STRUCTURED_REPLY);
        }

        final byte[] name = exportName.getBytes(StandardCharsets.UTF_8);
        if (structured)
        {
            final byte[] query = MetaContext.BASE_ALLOCATION.getBytes(StandardCharsets.UTF_8);
            final ByteBuffer data = ByteBuffer.allocate(4 + name.length + 4 + 4 + query.length);
            data.putInt(name.length).put(name).putInt(1).putInt(query.length).put(query);
            sendOption(OPT_SET_META_CONTEXT, data.array());
            while (true)
            {
                final OptionReply meta = readOptionReply(OPT_SET_META_CONTEXT);
                if (meta.type == REP_META_CONTEXT && meta.payload.remaining() > 4)
                {
                    final int id = meta.payload.getInt();
                    final String contextName = StandardCharsets.UTF_8.decode(meta.payload).toString();
                    if (contextName.equals(MetaContext.BASE_ALLOCATION))
                    {
                        allocationContextId = id;
                    }
                    continue;
                }
                if (meta.type == REP_ERR_UNKNOWN)
                {
                    throw new NbdException("no export '" + exportName + "' on " + where + ": " + meta.text(), 0);
                }
                break;
            }
        }

        final ByteBuffer go = ByteBuffer.allocate(4 + name.length + 2 + 2);
        go.putInt(name.length).put(name).putShort((short)1).putShort((short)INFO_BLOCK_SIZE);
        sendOption(OPT_GO, go.array());
        boolean haveExport = false;
        while (true)
        {
            final OptionReply info = readOptionReply(OPT_GO);
            if (info.type == REP_INFO)
            {
                if (info.payload.remaining() < 2)
                {
                    throw new NbdException(where + " sent an empty INFO reply", 0);
                }
                final int infoType = Short.toUnsignedInt(info.payload.getShort());
                if (infoType == INFO_EXPORT)
                {
                    requireLength(info, 10, "INFO_EXPORT");
                    size = info.payload.getLong();
                    flags = Short.toUnsignedInt(info.payload.getShort());
                    haveExport = true;
                }
                else if (infoType == INFO_BLOCK_SIZE)
                {
                    requireLength(info, 12, "INFO_BLOCK_SIZE");
                    minBlock = info.payload.getInt();
                    preferredBlock = info.payload.getInt();
                    maxPayload = info.payload.getInt();
                    checkBlockSizes();
                }
                continue;
            }
            if (info.type == REP_ACK)
            {
                if (!haveExport)
                {
                    throw new NbdException(where + " acknowledged GO without INFO_EXPORT", 0);
                }
                break;
            }
            if (info.type == REP_ERR_UNSUP)
            {
                exportNameFallback(name, noZeroes);
                break;
            }
            if (info.type == REP_ERR_UNKNOWN)
            {
                throw new NbdException("no export '" + exportName + "' on " + where + ": " + info.text(), 0);
            }
            throw new NbdException(where + " refused GO (reply 0x" + Integer.toHexString(info.type) + "): " + info.text(), 0);
        }
        if ((flags & TF_HAS_FLAGS) == 0)
        {
            throw new NbdException(where + " sent transmission flags without HAS_FLAGS", 0);
        }
        if (size < 0)
        {
            throw new NbdException(where + " reports a size beyond 2^63", 0);
        }
    }

    private void exportNameFallback(final byte[] name, final boolean noZeroes) throws IOException
    {
        sendOption(OPT_EXPORT_NAME, name);
        final ByteBuffer reply;
        try
        {
            reply = readFully(ByteBuffer.allocate(noZeroes ? 10 : 134));
        }
        catch (final EOFException ex)
        {
            throw new NbdException("no export '" + new String(name, StandardCharsets.UTF_8) + "' on " + where
                + " (server closed after EXPORT_NAME)", 0);
        }
        size = reply.getLong();
        flags = Short.toUnsignedInt(reply.getShort());
    }

    private void checkBlockSizes() throws NbdException
    {
        if (minBlock < 1 || Integer.bitCount(minBlock) != 1 || minBlock > 65536)
        {
            throw new NbdException(where + " advertises an invalid minimum block size " + minBlock, 0);
        }
        if (preferredBlock < minBlock || Integer.bitCount(preferredBlock) != 1)
        {
            preferredBlock = Math.max(4096, minBlock);
        }
        if (maxPayload == -1 || Integer.toUnsignedLong(maxPayload) > MAX_PAYLOAD)
        {
            maxPayload = MAX_PAYLOAD;
        }
        if (maxPayload < minBlock)
        {
            throw new NbdException(where + " advertises a maximum payload " + maxPayload + " below its minimum block", 0);
        }
    }

    private void requireLength(final OptionReply info, final int length, final String what) throws NbdException
    {
        if (info.payload.remaining() != length)
        {
            throw new NbdException(where + " sent " + what + " of " + (info.payload.remaining() + 2) + " bytes", 0);
        }
    }

    private void sendOption(final int option, final byte[] data) throws IOException
    {
        final ByteBuffer header = ByteBuffer.allocate(16);
        header.putLong(IHAVEOPT).putInt(option).putInt(data.length).flip();
        writeFully(header, ByteBuffer.wrap(data));
    }

    private OptionReply readOptionReply(final int option) throws IOException
    {
        final ByteBuffer header = readFully(ByteBuffer.allocate(20));
        if (header.getLong() != OPTION_REPLY_MAGIC)
        {
            throw new NbdException(where + " sent a bad option reply magic", 0);
        }
        final int echoed = header.getInt();
        final int type = header.getInt();
        final long length = Integer.toUnsignedLong(header.getInt());
        if (echoed != option)
        {
            throw new NbdException(where + " answered option " + echoed + " to option " + option, 0);
        }
        if (length > MAX_OPTION_REPLY || type == REP_ACK && length != 0)
        {
            throw new NbdException(where + " sent an option reply of " + length + " bytes (type " + type + ")", 0);
        }
        final OptionReply reply = new OptionReply(type, readFully(ByteBuffer.allocate((int)length)));
        if (type == REP_ERR_TLS_REQD)
        {
            throw new NbdException(where + " requires TLS (give the client tls-creds): " + reply.text(), 0);
        }
        return reply;
    }

    /** One option reply. */
    private static final class OptionReply
    {
        final int type;
        final ByteBuffer payload;

        OptionReply(final int type, final ByteBuffer payload)
        {
            this.type = type;
            this.payload = payload;
        }

        String text()
        {
            return StandardCharsets.UTF_8.decode(payload.duplicate()).toString();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Transmission

    /** One request in flight; its latch opens when the final reply arrived or the connection broke. */
    static final class Request
    {
        final int type;
        final long offset;
        final long length;
        final ByteBuffer readInto;
        final List<long[]> extents;
        final CountDownLatch done = new CountDownLatch(1);
        NbdClientConnection owner;
        volatile int error;
        volatile String message;
        volatile IOException failure;

        Request(final int type, final long offset, final long length, final ByteBuffer readInto, final boolean wantExtents)
        {
            this.type = type;
            this.offset = offset;
            this.length = length;
            this.readInto = readInto;
            this.extents = wantExtents ? new ArrayList<>() : null;
        }

        /** Waits for the reply and throws if it was an error or the connection broke. */
        void await(final String where, final long timeoutMillis) throws IOException
        {
            try
            {
                if (!done.await(timeoutMillis, TimeUnit.MILLISECONDS))
                {
                    // A server that stops answering is treated like a broken one: every request on it fails.
                    owner.fail(new IOException("no reply to " + commandName(type) + " of " + length + " bytes at "
                        + offset + " within " + timeoutMillis + " ms"));
                    done.await();
                }
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new NbdException("interrupted waiting for " + commandName(type) + " on " + where, ex);
            }
            if (failure != null)
            {
                throw failure;
            }
            if (error != OK)
            {
                throw new NbdException(commandName(type) + " of " + length + " bytes at " + offset + " on " + where
                    + " failed: " + errorName(error) + (message == null || message.isEmpty() ? "" : " (" + message + ")"), error);
            }
        }
    }

    /**
     * Sends one request; {@code data} (WRITE only) is fully written to the socket before this returns.
     */
    Request submit(final int type, final int commandFlags, final long offset, final long length,
        final ByteBuffer data, final ByteBuffer readInto, final boolean wantExtents) throws IOException
    {
        final Request request = new Request(type, offset, length, readInto, wantExtents);
        request.owner = this;
        final long cookie = cookies.incrementAndGet();
        pending.put(cookie, request);
        final NbdDisconnectedException broken = failure;
        if (broken != null)
        {
            pending.remove(cookie);
            throw broken;
        }
        sendLock.lock();
        try
        {
            sendHeader.clear();
            sendHeader.putInt(REQUEST_MAGIC).putShort((short)commandFlags).putShort((short)type).putLong(cookie)
                .putLong(offset).putInt((int)length).flip();
            if (data == null)
            {
                writeFully(sendHeader);
            }
            else
            {
                writeFully(sendHeader, data);
            }
        }
        catch (final IOException ex)
        {
            fail(ex);
            throw failure;
        }
        finally
        {
            sendLock.unlock();
        }
        return request;
    }

    boolean isBroken()
    {
        return failure != null;
    }

    String where()
    {
        return where;
    }

    private void readLoop()
    {
        try
        {
            while (true)
            {
                readFully(replyHeader.clear().limit(4));
                final int magic = replyHeader.getInt(0);
                if (magic == SIMPLE_REPLY_MAGIC)
                {
                    readFully(replyHeader.clear().limit(12));
                    final int error = replyHeader.getInt(0);
                    final long cookie = replyHeader.getLong(4);
                    final Request request = take(cookie);
                    if (error == OK && request.type == CMD_READ)
                    {
                        if (structured)
                        {
                            throw new IOException("simple reply to a structured READ");
                        }
                        readFully(request.readInto.duplicate().clear().limit((int)request.length));
                    }
                    request.error = error;
                    request.done.countDown();
                }
                else if (magic == STRUCTURED_REPLY_MAGIC)
                {
                    readFully(replyHeader.clear().limit(16));
                    final int chunkFlags = Short.toUnsignedInt(replyHeader.getShort(0));
                    final int type = Short.toUnsignedInt(replyHeader.getShort(2));
                    final long cookie = replyHeader.getLong(4);
                    final long length = Integer.toUnsignedLong(replyHeader.getInt(12));
                    if (length > MAX_CHUNK)
                    {
                        throw new IOException("structured chunk of " + length + " bytes");
                    }
                    final Request request = pending.get(cookie);
                    if (request == null)
                    {
                        throw new IOException("reply for unknown cookie " + cookie);
                    }
                    chunk(request, type, (int)length);
                    if ((chunkFlags & REPLY_FLAG_DONE) != 0)
                    {
                        pending.remove(cookie);
                        request.done.countDown();
                    }
                }
                else
                {
                    throw new IOException("bad reply magic 0x" + Integer.toHexString(magic));
                }
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            fail(ex);
        }
    }

    private void chunk(final Request request, final int type, final int length) throws IOException
    {
        switch (type)
        {
            case REPLY_TYPE_NONE:
                if (length != 0)
                {
                    throw new IOException("NONE chunk with payload");
                }
                return;
            case REPLY_TYPE_OFFSET_DATA:
            {
                final ByteBuffer head = readFully(ByteBuffer.allocate(8));
                final long at = head.getLong();
                final long count = length - 8L;
                checkInside(request, at, count);
                final ByteBuffer target = request.readInto.duplicate();
                target.clear().position((int)(at - request.offset)).limit((int)(at - request.offset + count));
                readFully(target);
                return;
            }
            case REPLY_TYPE_OFFSET_HOLE:
            {
                final ByteBuffer body = readFully(ByteBuffer.allocate(length));
                final long at = body.getLong();
                final long count = Integer.toUnsignedLong(body.getInt());
                checkInside(request, at, count);
                final ByteBuffer target = request.readInto.duplicate();
                final int from = (int)(at - request.offset);
                for (int i = 0; i < count; i++)
                {
                    target.put(from + i, (byte)0);
                }
                return;
            }
            case REPLY_TYPE_BLOCK_STATUS:
            {
                final ByteBuffer body = readFully(ByteBuffer.allocate(length));
                final int id = body.getInt();
                if (request.extents != null && id == allocationContextId)
                {
                    while (body.remaining() >= 8)
                    {
                        request.extents.add(new long[] {Integer.toUnsignedLong(body.getInt()), body.getInt()});
                    }
                }
                return;
            }
            default:
            {
                final ByteBuffer body = readFully(ByteBuffer.allocate(length));
                if ((type & 0x8000) != 0)
                {
                    request.error = body.remaining() >= 4 ? body.getInt() : EIO;
                    if (request.error == OK)
                    {
                        request.error = EIO;
                    }
                    if (body.remaining() >= 2)
                    {
                        final int textLength = Math.min(Short.toUnsignedInt(body.getShort()), body.remaining());
                        request.message = StandardCharsets.UTF_8.decode(body.slice().limit(textLength)).toString();
                    }
                }
            }
        }
    }

    private static void checkInside(final Request request, final long at, final long count) throws IOException
    {
        if (request.readInto == null || at < request.offset || count < 0 || at + count > request.offset + request.length)
        {
            throw new IOException("structured reply chunk [" + at + ", +" + count + ") lies outside the request");
        }
    }

    private Request take(final long cookie) throws IOException
    {
        final Request request = pending.remove(cookie);
        if (request == null)
        {
            throw new IOException("reply for unknown cookie " + cookie);
        }
        return request;
    }

    private void fail(final Exception cause)
    {
        synchronized (this)
        {
            if (failure == null)
            {
                failure = new NbdDisconnectedException("connection to " + where + " broke: "
                    + (cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage()), cause);
            }
        }
        NbdServer.closeQuietly(channel);
        for (final Long cookie : List.copyOf(pending.keySet()))
        {
            final Request request = pending.remove(cookie);
            if (request != null)
            {
                request.failure = failure;
                request.done.countDown();
            }
        }
    }

    /** Sends DISC (best effort) and closes the socket; in-flight requests fail. */
    @Override
    public void close()
    {
        if (failure == null)
        {
            try
            {
                sendLock.lock();
                try
                {
                    sendHeader.clear();
                    sendHeader.putInt(REQUEST_MAGIC).putShort((short)0).putShort((short)CMD_DISC).putLong(0)
                        .putLong(0).putInt(0).flip();
                    writeFully(sendHeader);
                }
                finally
                {
                    sendLock.unlock();
                }
            }
            catch (final IOException ex)
            {
                // Closing anyway.
            }
        }
        fail(new IOException("client closed the connection"));
        if (reader != null)
        {
            try
            {
                reader.join(5000);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        }
    }

    private ByteBuffer readFully(final ByteBuffer buffer) throws IOException
    {
        final dev.tidemark.io.tls.TlsChannel session = tls;
        while (buffer.hasRemaining())
        {
            if ((session == null ? channel.read(buffer) : session.read(buffer)) < 0)
            {
                throw new EOFException("server closed the connection");
            }
        }
        return buffer.flip();
    }

    private void writeFully(final ByteBuffer... buffers) throws IOException
    {
        NbdConnection.writeFully(channel, tls, buffers);
    }
}
