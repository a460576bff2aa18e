package dev.tidemark.io.nbd;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import static dev.tidemark.io.nbd.NbdProtocol.*;

/**
 * A byte-level NBD client for protocol tests that can send anything, well-formed or not; not
 * thread-safe, confine to the test thread. Every read times out, so a silent server fails the test
 * instead of hanging it.
 */
final class RawNbd implements AutoCloseable
{
    final Socket socket;
    final DataInputStream in;
    final OutputStream out;
    int transmissionFlags;
    long exportSize;

    RawNbd(final InetSocketAddress address, final int timeoutMillis) throws IOException
    {
        socket = new Socket();
        socket.connect(address, timeoutMillis);
        socket.setSoTimeout(timeoutMillis);
        socket.setTcpNoDelay(true);
        in = new DataInputStream(socket.getInputStream());
        out = socket.getOutputStream();
    }

    void greeting() throws IOException
    {
        if (in.readLong() != INIT_PASSWD || in.readLong() != IHAVEOPT)
        {
            throw new AssertionError("bad greeting");
        }
        final int flags = in.readUnsignedShort();
        if (flags != (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        {
            throw new AssertionError("server flags " + flags);
        }
    }

    void send(final byte[] bytes) throws IOException
    {
        out.write(bytes);
        out.flush();
    }

    void sendOption(final long magic, final int option, final long declaredLength, final byte[] data) throws IOException
    {
        final ByteBuffer header = ByteBuffer.allocate(16 + data.length);
        header.putLong(magic).putInt(option).putInt((int)declaredLength).put(data);
        send(header.array());
    }

    /** One option reply: type and payload. */
    static final class OptionReply
    {
        final int option;
        final int type;
        final byte[] payload;

        OptionReply(final int option, final int type, final byte[] payload)
        {
            this.option = option;
            this.type = type;
            this.payload = payload;
        }
    }

    OptionReply readOptionReply() throws IOException
    {
        final long magic = in.readLong();
        if (magic != OPTION_REPLY_MAGIC)
        {
            throw new AssertionError("bad option reply magic " + Long.toHexString(magic));
        }
        final int option = in.readInt();
        final int type = in.readInt();
        final int length = in.readInt();
        if (length < 0 || length > 1 << 20)
        {
            throw new AssertionError("option reply length " + length);
        }
        if (type == REP_ACK && length != 0)
        {
            throw new AssertionError("ACK with payload");
        }
        final byte[] payload = new byte[length];
        in.readFully(payload);
        return new OptionReply(option, type, payload);
    }

    /** Reads replies until ACK or an error; returns all of them. */
    List<OptionReply> readOptionReplies(final int option) throws IOException
    {
        final List<OptionReply> replies = new ArrayList<>();
        while (true)
        {
            final OptionReply reply = readOptionReply();
            if (reply.option != option)
            {
                throw new AssertionError("reply echoes option " + reply.option + " for " + option);
            }
            replies.add(reply);
            if (reply.type == REP_ACK || reply.type < 0)
            {
                return replies;
            }
        }
    }

    static byte[] goData(final String name, final int... infos)
    {
        final byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        final ByteBuffer data = ByteBuffer.allocate(4 + bytes.length + 2 + 2 * infos.length);
        data.putInt(bytes.length).put(bytes).putShort((short)infos.length);
        for (final int info : infos)
        {
            data.putShort((short)info);
        }
        return data.array();
    }

    static byte[] metaData(final String name, final String... queries)
    {
        final byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
        int length = 4 + bytes.length + 4;
        for (final String query : queries)
        {
            length += 4 + query.getBytes(StandardCharsets.UTF_8).length;
        }
        final ByteBuffer data = ByteBuffer.allocate(length);
        data.putInt(bytes.length).put(bytes).putInt(queries.length);
        for (final String query : queries)
        {
            final byte[] q = query.getBytes(StandardCharsets.UTF_8);
            data.putInt(q.length).put(q);
        }
        return data.array();
    }

    /** Full handshake into transmission: flags, optional SR and contexts, GO. */
    void open(final String export, final boolean structured, final String... contexts) throws IOException
    {
        greeting();
        send(ByteBuffer.allocate(4).putInt(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).array());
        if (structured)
        {
            sendOption(IHAVEOPT, OPT_STRUCTURED_REPLY, 0, new byte[0]);
            expectType(readOptionReplies(OPT_STRUCTURED_REPLY), REP_ACK);
            if (contexts.length > 0)
            {
                final byte[] data = metaData(export, contexts);
                sendOption(IHAVEOPT, OPT_SET_META_CONTEXT, data.length, data);
                expectType(readOptionReplies(OPT_SET_META_CONTEXT), REP_ACK);
            }
        }
        final byte[] data = goData(export);
        sendOption(IHAVEOPT, OPT_GO, data.length, data);
        for (final OptionReply reply : readOptionReplies(OPT_GO))
        {
            if (reply.type == REP_INFO && ByteBuffer.wrap(reply.payload).getShort() == INFO_EXPORT)
            {
                exportSize = ByteBuffer.wrap(reply.payload).getLong(2);
                transmissionFlags = Short.toUnsignedInt(ByteBuffer.wrap(reply.payload).getShort(10));
            }
            else if (reply.type != REP_INFO && reply.type != REP_ACK)
            {
                throw new AssertionError("GO failed with " + Integer.toHexString(reply.type));
            }
        }
    }

    private static void expectType(final List<OptionReply> replies, final int type)
    {
        final int last = replies.get(replies.size() - 1).type;
        if (last != type)
        {
            throw new AssertionError("expected reply " + type + " got " + Integer.toHexString(last));
        }
    }

    void request(final int flags, final int type, final long cookie, final long offset, final long length,
        final byte[] payload) throws IOException
    {
        final ByteBuffer header = ByteBuffer.allocate(28 + (payload == null ? 0 : payload.length));
        header.putInt(REQUEST_MAGIC).putShort((short)flags).putShort((short)type).putLong(cookie).putLong(offset)
            .putInt((int)length);
        if (payload != null)
        {
            header.put(payload);
        }
        send(header.array());
    }

    /** A complete reply to one request. */
    static final class Reply
    {
        final long cookie;
        int error;
        byte[] data;
        long dataOffset;
        final List<int[]> statusChunks = new ArrayList<>();

        Reply(final long cookie)
        {
            this.cookie = cookie;
        }
    }

    /**
     * Reads one complete reply (all chunks of one cookie; the server never interleaves chunks of
     * different cookies because it writes each reply whole).
     *
     * @param readLengths cookie → length for pending READs (simple replies carry data without a length).
     */
    Reply readReply(final java.util.Map<Long, Long> readLengths) throws IOException
    {
        final int magic = in.readInt();
        if (magic == SIMPLE_REPLY_MAGIC)
        {
            final int error = in.readInt();
            final Reply reply = new Reply(in.readLong());
            reply.error = error;
            final Long length = readLengths.get(reply.cookie);
            if (error == 0 && length != null)
            {
                reply.data = new byte[(int)(long)length];
                in.readFully(reply.data);
            }
            return reply;
        }
        if (magic != STRUCTURED_REPLY_MAGIC)
        {
            throw new AssertionError("bad reply magic " + Integer.toHexString(magic));
        }
        Reply reply = null;
        while (true)
        {
            if (reply != null && in.readInt() != STRUCTURED_REPLY_MAGIC)
            {
                throw new AssertionError("bad chunk magic");
            }
            final int flags = in.readUnsignedShort();
            final int type = in.readUnsignedShort();
            final long cookie = in.readLong();
            final int length = in.readInt();
            if (reply == null)
            {
                reply = new Reply(cookie);
            }
            else if (reply.cookie != cookie)
            {
                throw new AssertionError("interleaved chunks");
            }
            if (length < 0 || length > (33 << 20))
            {
                throw new AssertionError("chunk length " + length);
            }
            final byte[] payload = new byte[length];
            in.readFully(payload);
            final ByteBuffer body = ByteBuffer.wrap(payload);
            switch (type)
            {
                case REPLY_TYPE_NONE:
                    if (length != 0 || (flags & REPLY_FLAG_DONE) == 0)
                    {
                        throw new AssertionError("bad NONE chunk");
                    }
                    break;
                case REPLY_TYPE_OFFSET_DATA:
                    reply.dataOffset = body.getLong();
                    reply.data = java.util.Arrays.copyOfRange(payload, 8, payload.length);
                    break;
                case REPLY_TYPE_BLOCK_STATUS:
                {
                    final int[] words = new int[length / 4];
                    body.asIntBuffer().get(words);
                    if (length < 12 || (length - 4) % 8 != 0)
                    {
                        throw new AssertionError("bad BLOCK_STATUS chunk length " + length);
                    }
                    reply.statusChunks.add(words);
                    break;
                }
                case REPLY_TYPE_ERROR:
                case REPLY_TYPE_ERROR_OFFSET:
                    reply.error = body.getInt();
                    final int messageLength = body.getShort() & 0xffff;
                    if (6 + messageLength + (type == REPLY_TYPE_ERROR_OFFSET ? 8 : 0) != length)
                    {
                        throw new AssertionError("bad error chunk length");
                    }
                    break;
                default:
                    throw new AssertionError("unexpected chunk type " + type);
            }
            if ((flags & REPLY_FLAG_DONE) != 0)
            {
                return reply;
            }
        }
    }

    /** @return whether the server closed the connection (EOF or reset) before the timeout. */
    boolean closedByServer()
    {
        try
        {
            final byte[] sink = new byte[4096];
            while (true)
            {
                if (in.read(sink) < 0)
                {
                    return true;
                }
            }
        }
        catch (final SocketTimeoutException ex)
        {
            return false;
        }
        catch (final EOFException ex)
        {
            return true;
        }
        catch (final IOException ex)
        {
            return true;
        }
    }

    @Override
    public void close() throws IOException
    {
        socket.close();
    }
}
