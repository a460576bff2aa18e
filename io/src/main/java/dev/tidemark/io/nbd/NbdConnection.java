package dev.tidemark.io.nbd;

import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsChannel;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.io.tls.TlsException;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerFieldUpdater;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Function;
import java.util.function.Supplier;

import static dev.tidemark.io.nbd.NbdProtocol.*;

/**
 * One server-side NBD connection: its reader thread owns the handshake, request parsing and the replies to
 * reads and block-status queries; the replies of asynchronously completed requests are written by the
 * completing thread (the engine's write ring) when the socket takes them at once, else by the connection's
 * reply thread; a completing thread never waits for the socket.
 *
 * <p>A client that stops reading its replies therefore blocks only this connection: the reply thread (or the
 * reader, for read data) waits in the socket write, replies not yet written keep their in-flight permits, and
 * after {@link #MAX_IN_FLIGHT} of them the reader stops reading new requests. The completing thread never
 * waits: the reply queue holds more entries than there are permits. Every writer takes {@link #sendLock}, so
 * each reply, and every structured chunk of one cookie, goes out whole; replies of different cookies may go
 * out in any order, as NBD allows.
 *
 * <p>Inline replies (plain connections; {@code -Dtidemark.nbd.inlineReply=false} turns them off): a completing
 * thread that finds the reply queue empty and the send lock free ({@code tryAcquire}, never a wait) sends the
 * 16-byte simple reply itself with a send that cannot block ({@link NbdServer.InlineSender}), saving the reply
 * thread's wake-up. Nothing sent: it queues the reply as before. Part sent (the socket buffer was nearly full):
 * it leaves the rest in {@link #handedOver} and keeps the send lock, a permit rather than an owner, for the
 * reply thread, which writes that rest before anything else and then releases the lock, so the stream stays
 * whole. The isolation holds because the attempt never blocks: once a client stops reading, its sends fail
 * and its replies wait on its own reply thread. The send lock is not reentrant; no writer takes it twice.
 *
 * <p>The inline send uses the socket's descriptor behind the JDK's back, so the JDK cannot defer a close
 * while one runs, and a closed descriptor's number may already name another connection's socket. So
 * {@link #inlineGuard} counts the inline senders inside a send, and every path that closes the channel (or
 * starts TLS) first calls {@link #closeInline}: it marks the guard closed, so no sender enters any more, and
 * waits until those inside have left; a send never blocks, so that wait is a few microseconds. A sender thus
 * sends either before the close began or not at all. (The JDK also closes a channel when a thread blocked in
 * it is interrupted; nothing interrupts the reader or the reply thread.)
 *
 * <p>The write path allocates nothing per request (young collections paused writes): each modifying request
 * takes a {@link Completion} from a pool of {@link #MAX_IN_FLIGHT}, which cannot run dry because every request
 * out of it holds an in-flight permit. The reader takes entries; whichever thread wrote a reply (the completing
 * thread inline, else the reply thread) returns its entry once the reply is written (or discarded) and before it
 * releases the permit, so an entry is reused only after its one completion was consumed. The reader also
 * completes through an entry (zero length, unknown command), so those replies take the same way back; an entry
 * whose export threw instead of completing may still be held by the export, so it is retired and a new one
 * pooled. At the end of a connection the reader takes no more entries, so a late completion after the drain
 * gave up finds nothing reused.
 *
 * <p>Protocol violations that leave the stream unparseable (bad magic, bad client flags, oversized
 * option or write payload, EOF mid-frame) close the connection; everything else gets the protocol's
 * error and the connection continues.
 */
final class NbdConnection
{
    /** Requests in flight per connection before the reader stops reading. */
    static final int MAX_IN_FLIGHT = 64;

    private static final int MAX_OPTION_LENGTH = 1024 * 1024;
    /** Options an unauthorised TLS client gets ERR_POLICY for before the server hangs up. */
    private static final int REFUSED_OPTIONS = 16;
    private static final int MAX_EXTENTS = 65536;
    private static final int PREFERRED_BLOCK = 4096;
    private static final long DRAIN_WAIT_MILLIS = 30_000;
    private static final int RECEIVE_BUFFER = 64 * 1024;
    private static final int INLINE_CLOSED = Integer.MIN_VALUE;

    private final NbdServer server;
    private final SocketChannel channel;
    private final Thread reader;
    /** Writes the replies of completed modifying requests; started when transmission begins. */
    private final Thread replyWriter;
    /** Completed requests not yet answered; each holds an in-flight permit, so it never fills. */
    private final ManyToOneConcurrentArrayQueue<Completion> replies =
        new ManyToOneConcurrentArrayQueue<>(2 * MAX_IN_FLIGHT);
    /** Completions not in use: the reader takes, the reply thread and inline-replying completers return. */
    private final ManyToOneConcurrentArrayQueue<Completion> idleCompletions =
        new ManyToOneConcurrentArrayQueue<>(MAX_IN_FLIGHT);
    /** Reply thread only: the completions whose replies are in {@link #replyBatch}, returned after its write. */
    private final Completion[] batchCompletions = new Completion[2 * MAX_IN_FLIGHT];
    /** Reply thread only: simple replies of one batch, written with one socket write. */
    private final ByteBuffer replyBatch = ByteBuffer.allocateDirect(16 * 2 * MAX_IN_FLIGHT);
    /** {@link #replyBatch} as the gathering write's argument, made once: varargs would allocate per batch. */
    private final ByteBuffer[] replyBatchArray = {replyBatch};
    private volatile boolean replyWriterParked;
    private volatile boolean replyWriterStop;
    /** Serialises writers; a semaphore, so an inline sender can pass it to the reply thread with a reply's rest. */
    private final Semaphore sendLock = new Semaphore(1);
    /** The socket's descriptor for inline replies, or -1: never inline (turned off, or the JDK hides it). */
    private final int inlineFd;
    private final NbdServer.InlineSender inlineSender;
    /** Inline senders inside a send, plus {@link #INLINE_CLOSED} once the channel may close (class comment). */
    private final AtomicInteger inlineGuard = new AtomicInteger();
    /** A reply an inline sender wrote in part; it came with the send lock, the reply thread writes the rest. */
    private volatile Completion handedOver;
    /** Set while the reply thread waits for the send lock with a batch: inline senders then queue instead. */
    private volatile boolean replyWriterWaiting;
    private final ByteBuffer sendHeader = ByteBuffer.allocateDirect(64);
    /** Bytes read from the socket but not parsed yet (reader thread only); pipelined requests arrive in one read. */
    private final ByteBuffer received = ByteBuffer.allocateDirect(RECEIVE_BUFFER).flip();
    private final Semaphore inFlight = new Semaphore(MAX_IN_FLIGHT);
    private final AtomicBoolean shutdown = new AtomicBoolean();

    private volatile NbdExport export;
    /** Set once STARTTLS succeeded; every byte then goes through it. */
    private volatile TlsChannel tls;
    /** Counted down when the reader stops reading (DISC, EOF or error): the client no longer uses the export. */
    private final CountDownLatch ending = new CountDownLatch(1);
    private volatile boolean timedOut;
    private boolean noZeroes;
    private boolean fixedNewstyle;
    private boolean structured;
    private String metaExportName;
    private List<String> metaSelected = List.of();
    private MetaContext[] contexts = new MetaContext[0];
    private int[] contextIds = new int[0];
    private int transmissionFlags;
    private String invalidReason;

    NbdConnection(final NbdServer server, final SocketChannel channel, final int id)
    {
        this.server = server;
        this.channel = channel;
        this.reader = new Thread(this::run, "nbd-conn-" + id);
        this.reader.setDaemon(true);
        this.replyWriter = new Thread(this::writeReplies, "nbd-reply-" + id);
        this.replyWriter.setDaemon(true);
        final NbdServer.InlineSender sender = server.inlineSender();
        this.inlineFd = sender == null ? -1 : NonBlockingSend.descriptor(channel);
        this.inlineSender = inlineFd < 0 ? null : sender;
        if (inlineSender == null)
        {
            inlineGuard.set(INLINE_CLOSED);
        }
        for (int i = 0; i < MAX_IN_FLIGHT; i++)
        {
            idleCompletions.offer(new Completion());
        }
    }

    void start()
    {
        reader.start();
    }

    NbdExport export()
    {
        return export;
    }

    /** Stops reading requests; in-flight ones are answered, then the reader closes the socket. */
    void shutdown()
    {
        if (shutdown.compareAndSet(false, true))
        {
            try
            {
                if (export == null)
                {
                    closeInline();
                    channel.close();
                }
                else
                {
                    channel.shutdownInput();
                }
            }
            catch (final IOException ex)
            {
                forceClose();
            }
        }
    }

    void forceClose()
    {
        closeInline();
        NbdServer.closeQuietly(channel);
    }

    /**
     * Any thread but an inline sender inside its send: no inline send starts from now on, and those running
     * have returned, so the channel may close (its descriptor number be reused). Idempotent.
     */
    private void closeInline()
    {
        int seen = inlineGuard.get();
        while (seen >= 0 && !inlineGuard.compareAndSet(seen, seen | INLINE_CLOSED))
        {
            seen = inlineGuard.get();
        }
        int spins = 0;
        while (inlineGuard.get() != INLINE_CLOSED)
        {
            // A sender holds the guard for one non-blocking send: spin briefly, then let it run.
            if (++spins < 100)
            {
                Thread.onSpinWait();
            }
            else
            {
                Thread.yield();
            }
        }
    }

    /** @return whether an inline send may run now; if so, {@link #exitInline} must follow it. */
    private boolean enterInline()
    {
        int seen = inlineGuard.get();
        while (seen >= 0)
        {
            if (inlineGuard.compareAndSet(seen, seen + 1))
            {
                return true;
            }
            seen = inlineGuard.get();
        }
        return false;
    }

    private void exitInline()
    {
        inlineGuard.decrementAndGet();
    }

    /** @return whether the reader has stopped reading: the client disconnected or the connection failed. */
    boolean isEnding()
    {
        return ending.getCount() == 0;
    }

    /**
     * Waits until the reader stops reading or {@code deadlineNanos} ({@link System#nanoTime()}) passes.
     *
     * @return whether the connection is ending.
     */
    boolean awaitEnding(final long deadlineNanos)
    {
        try
        {
            return ending.await(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            return isEnding();
        }
    }

    private String remote()
    {
        try
        {
            return String.valueOf(channel.getRemoteAddress());
        }
        catch (final IOException ex)
        {
            return "(closed)";
        }
    }

    boolean awaitTermination(final long millis)
    {
        try
        {
            reader.join(millis);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
        return !reader.isAlive();
    }

    private void run()
    {
        final ScheduledFuture<?> timeout = server.timer().schedule(
            () ->
            {
                if (export == null)
                {
                    timedOut = true;
                    forceClose();
                }
            },
            server.handshakeTimeout().toMillis(), TimeUnit.MILLISECONDS);
        try
        {
            if (handshake())
            {
                timeout.cancel(false);
                replyWriter.start();
                transmission();
            }
        }
        catch (final IOException ex)
        {
            // EOF, a reset or a violation that leaves the stream unparseable: the connection ends.
            if (timedOut)
            {
                server.refused(NbdRefusal.HANDSHAKE_TIMEOUT, remote(), "no NBD transmission after "
                    + server.handshakeTimeout().toMillis() + " ms");
            }
        }
        finally
        {
            // The client is gone from here on: safe-mode export removal must not count it while the last
            // replies drain and the socket closes.
            ending.countDown();
            timeout.cancel(false);
            drain();
            stopReplyWriter();
            // Before the TLS session closes the channel.
            closeInline();
            final TlsChannel session = tls;
            if (session != null)
            {
                session.close();
            }
            forceClose();
            joinReplyWriter();
            server.unregister(this);
        }
    }

    private void drain()
    {
        try
        {
            if (inFlight.tryAcquire(MAX_IN_FLIGHT, DRAIN_WAIT_MILLIS, TimeUnit.MILLISECONDS))
            {
                inFlight.release(MAX_IN_FLIGHT);
            }
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }

    private void stopReplyWriter()
    {
        replyWriterStop = true;
        LockSupport.unpark(replyWriter);
    }

    private void joinReplyWriter()
    {
        if (replyWriter.getState() == Thread.State.NEW)
        {
            return;
        }
        try
        {
            // The socket is closed, so a write it was blocked in has failed by now.
            replyWriter.join(DRAIN_WAIT_MILLIS);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Handshake

    /** @return {@code true} when an export was selected and transmission begins. */
    private boolean handshake() throws IOException
    {
        final ByteBuffer greeting = ByteBuffer.allocate(18);
        greeting.putLong(INIT_PASSWD).putLong(IHAVEOPT).putShort((short)(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        writeFully(greeting);
        final ByteBuffer clientFlags = readFully(ByteBuffer.allocate(4));
        final int flags = clientFlags.getInt();
        if ((flags & ~(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES)) != 0)
        {
            throw new ProtocolViolation("unknown client flags 0x" + Integer.toHexString(flags));
        }
        fixedNewstyle = (flags & CLIENT_FIXED_NEWSTYLE) != 0;
        noZeroes = (flags & CLIENT_NO_ZEROES) != 0;
        final ByteBuffer optionHeader = ByteBuffer.allocate(16);
        while (true)
        {
            readFully(optionHeader.clear());
            if (optionHeader.getLong() != IHAVEOPT)
            {
                throw new ProtocolViolation("bad option magic");
            }
            final int option = optionHeader.getInt();
            final long length = Integer.toUnsignedLong(optionHeader.getInt());
            if (length > MAX_OPTION_LENGTH)
            {
                throw new ProtocolViolation("option length " + length + " exceeds " + MAX_OPTION_LENGTH);
            }
            final ByteBuffer data = readFully(ByteBuffer.allocate((int)length));
            if (!fixedNewstyle && option != OPT_EXPORT_NAME)
            {
                throw new ProtocolViolation("option " + option + " from a client without fixed newstyle");
            }
            if (server.isClosed())
            {
                if (option == OPT_EXPORT_NAME)
                {
                    return false;
                }
                optionReply(option, REP_ERR_SHUTDOWN, "server is shutting down");
                continue;
            }
            final TlsCredentials credentials = server.tls();
            if (credentials != null && tls == null && option != OPT_STARTTLS && option != OPT_ABORT)
            {
                server.refused(NbdRefusal.TLS_REQUIRED, remote(), "option " + option + " before STARTTLS");
                if (option == OPT_EXPORT_NAME)
                {
                    // EXPORT_NAME has no error reply: the spec has the server close the connection.
                    throw new ProtocolViolation("EXPORT_NAME in clear to a TLS-only server");
                }
                optionReply(option, REP_ERR_TLS_REQD, "this server requires TLS: send NBD_OPT_STARTTLS first");
                continue;
            }
            switch (option)
            {
                case OPT_EXPORT_NAME:
                    return exportName(data);
                case OPT_ABORT:
                    try
                    {
                        optionReply(option, REP_ACK, new byte[0]);
                    }
                    catch (final IOException ex)
                    {
                        // Clients may close without reading the ACK.
                    }
                    return false;
                case OPT_LIST:
                    list(data);
                    break;
                case OPT_STARTTLS:
                    startTls(credentials, data);
                    break;
                case OPT_INFO:
                case OPT_GO:
                    if (infoOrGo(option, data))
                    {
                        return true;
                    }
                    break;
                case OPT_STRUCTURED_REPLY:
                    if (data.hasRemaining())
                    {
                        optionReply(option, REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
                    }
                    else if (structured)
                    {
                        optionReply(option, REP_ERR_INVALID, "structured replies already negotiated");
                    }
                    else
                    {
                        structured = true;
                        optionReply(option, REP_ACK, new byte[0]);
                    }
                    break;
                case OPT_LIST_META_CONTEXT:
                case OPT_SET_META_CONTEXT:
                    metaContext(option, data);
                    break;
                default:
                    optionReply(option, REP_ERR_UNSUP, "option " + option + " is not supported");
                    break;
            }
        }
    }

    private void startTls(final TlsCredentials credentials, final ByteBuffer data) throws IOException
    {
        if (credentials == null)
        {
            optionReply(OPT_STARTTLS, REP_ERR_POLICY, "TLS is not enabled on this server (no tls-creds)");
            return;
        }
        if (data.hasRemaining())
        {
            optionReply(OPT_STARTTLS, REP_ERR_INVALID, "STARTTLS takes no data");
            return;
        }
        if (tls != null)
        {
            optionReply(OPT_STARTTLS, REP_ERR_INVALID, "TLS is already in use");
            return;
        }
        optionReply(OPT_STARTTLS, REP_ACK, new byte[0]);
        // Replies go through the TLS session from now on, never inline; it may also close the channel.
        closeInline();
        final TlsChannel session;
        try
        {
            session = credentials.accept(channel);
        }
        catch (final TlsException ex)
        {
            if (!timedOut)
            {
                server.refused(refusal(ex.reason()), remote(), ex.getMessage());
            }
            throw ex;
        }
        tls = session;
        // Everything negotiated in clear is forgotten (NBD spec, STARTTLS).
        structured = false;
        metaExportName = null;
        metaSelected = List.of();
        final TlsAuthorizer authz = server.authorizer();
        final String identity = session.peerIdentity();
        if (authz != null && (identity == null || !authz.isAllowed(identity)))
        {
            final String why = "TLS client identity '" + identity + "' is not authorized by tls-authz";
            server.refused(NbdRefusal.TLS_NOT_AUTHORIZED, remote(), why);
            refuseOptions(why);
            throw new TlsException(TlsException.Reason.PEER_NOT_AUTHORIZED, why, null);
        }
    }

    /**
     * Answers the client's options with ERR_POLICY so it can tell the user why, until it aborts, asks for
     * EXPORT_NAME (which has no error reply), or a few options went by; then the caller closes. The handshake
     * timeout still bounds it.
     */
    private void refuseOptions(final String why)
    {
        try
        {
            final ByteBuffer header = ByteBuffer.allocate(16);
            for (int i = 0; i < REFUSED_OPTIONS; i++)
            {
                readFully(header.clear());
                if (header.getLong() != IHAVEOPT)
                {
                    return;
                }
                final int option = header.getInt();
                final long length = Integer.toUnsignedLong(header.getInt());
                if (length > MAX_OPTION_LENGTH || option == OPT_EXPORT_NAME || option == OPT_ABORT)
                {
                    return;
                }
                readFully(ByteBuffer.allocate((int)length));
                optionReply(option, REP_ERR_POLICY, why);
            }
        }
        catch (final IOException ex)
        {
            // The client left first; nothing more to tell it.
        }
    }

    private static NbdRefusal refusal(final TlsException.Reason reason)
    {
        switch (reason)
        {
            case PEER_NOT_TRUSTED:
                return NbdRefusal.TLS_PEER_NOT_TRUSTED;
            case PEER_NOT_AUTHORIZED:
                return NbdRefusal.TLS_NOT_AUTHORIZED;
            case PSK_MISMATCH:
                return NbdRefusal.TLS_PSK_MISMATCH;
            default:
                return NbdRefusal.TLS_HANDSHAKE;
        }
    }

    private boolean exportName(final ByteBuffer data) throws IOException
    {
        final String name = decode(data, data.remaining());
        final NbdExport found = name == null ? null : server.lookup(name);
        if (found == null)
        {
            throw new ProtocolViolation("EXPORT_NAME for unknown export");
        }
        selectContexts(name, found);
        transmissionFlags = transmissionFlags(found);
        final ByteBuffer reply = ByteBuffer.allocate(noZeroes ? 10 : 134);
        reply.putLong(found.size()).putShort((short)transmissionFlags);
        reply.position(reply.limit()).flip();
        writeFully(reply);
        export = found;
        return true;
    }

    private void list(final ByteBuffer data) throws IOException
    {
        if (data.hasRemaining())
        {
            optionReply(OPT_LIST, REP_ERR_INVALID, "LIST takes no data");
            return;
        }
        for (final NbdExport each : server.exportList())
        {
            final byte[] name = each.name().getBytes(StandardCharsets.UTF_8);
            final byte[] description = truncate(each.description().getBytes(StandardCharsets.UTF_8));
            final ByteBuffer payload = ByteBuffer.allocate(4 + name.length + description.length);
            payload.putInt(name.length).put(name).put(description);
            optionReply(OPT_LIST, REP_SERVER, payload.array());
        }
        optionReply(OPT_LIST, REP_ACK, new byte[0]);
    }

    private boolean infoOrGo(final int option, final ByteBuffer data) throws IOException
    {
        if (data.remaining() < 6)
        {
            optionReply(option, REP_ERR_INVALID, "INFO/GO data shorter than 6 bytes");
            return false;
        }
        final long nameLength = Integer.toUnsignedLong(data.getInt());
        if (nameLength > data.remaining() - 2)
        {
            optionReply(option, REP_ERR_INVALID, "export name length " + nameLength + " overruns the option");
            return false;
        }
        final String name = decode(data, (int)nameLength);
        final int count = Short.toUnsignedInt(data.getShort());
        if (data.remaining() != count * 2)
        {
            optionReply(option, REP_ERR_INVALID, "information request count " + count + " does not match the option length");
            return false;
        }
        if (name == null)
        {
            optionReply(option, REP_ERR_INVALID, "export name is not valid UTF-8 of at most 4096 bytes");
            return false;
        }
        boolean wantName = false;
        boolean wantDescription = false;
        for (int i = 0; i < count; i++)
        {
            final int type = Short.toUnsignedInt(data.getShort());
            wantName |= type == INFO_NAME;
            wantDescription |= type == INFO_DESCRIPTION;
        }
        final NbdExport found = server.lookup(name);
        if (found == null)
        {
            optionReply(option, REP_ERR_UNKNOWN, "export '" + name + "' not present");
            return false;
        }
        if (wantName)
        {
            final byte[] canonical = found.name().getBytes(StandardCharsets.UTF_8);
            optionReply(option, REP_INFO, ByteBuffer.allocate(2 + canonical.length)
                .putShort((short)INFO_NAME).put(canonical).array());
        }
        final byte[] description = truncate(found.description().getBytes(StandardCharsets.UTF_8));
        if (wantDescription && description.length > 0)
        {
            optionReply(option, REP_INFO, ByteBuffer.allocate(2 + description.length)
                .putShort((short)INFO_DESCRIPTION).put(description).array());
        }
        optionReply(option, REP_INFO, ByteBuffer.allocate(14).putShort((short)INFO_BLOCK_SIZE)
            .putInt(1).putInt(PREFERRED_BLOCK).putInt(MAX_PAYLOAD).array());
        final int flags = transmissionFlags(found);
        optionReply(option, REP_INFO, ByteBuffer.allocate(12).putShort((short)INFO_EXPORT)
            .putLong(found.size()).putShort((short)flags).array());
        optionReply(option, REP_ACK, new byte[0]);
        if (option == OPT_GO)
        {
            selectContexts(name, found);
            transmissionFlags = flags;
            export = found;
            return true;
        }
        return false;
    }

    private void metaContext(final int option, final ByteBuffer data) throws IOException
    {
        final boolean set = option == OPT_SET_META_CONTEXT;
        if (set)
        {
            // SET replaces the selection even when it fails.
            metaExportName = null;
            metaSelected = List.of();
        }
        if (!structured)
        {
            optionReply(option, REP_ERR_INVALID, "metadata contexts need structured replies first");
            return;
        }
        if (data.remaining() < 8)
        {
            optionReply(option, REP_ERR_INVALID, "meta context data shorter than 8 bytes");
            return;
        }
        final long nameLength = Integer.toUnsignedLong(data.getInt());
        if (nameLength > data.remaining() - 4)
        {
            optionReply(option, REP_ERR_INVALID, "export name length " + nameLength + " overruns the option");
            return;
        }
        final String name = decode(data, (int)nameLength);
        final long count = Integer.toUnsignedLong(data.getInt());
        final List<String> queries = new ArrayList<>();
        for (long i = 0; i < count; i++)
        {
            if (data.remaining() < 4)
            {
                optionReply(option, REP_ERR_INVALID, "query " + i + " overruns the option");
                return;
            }
            final long queryLength = Integer.toUnsignedLong(data.getInt());
            if (queryLength > data.remaining())
            {
                optionReply(option, REP_ERR_INVALID, "query " + i + " length " + queryLength + " overruns the option");
                return;
            }
            final String query = decode(data, (int)queryLength);
            if (query == null)
            {
                optionReply(option, REP_ERR_INVALID, "query " + i + " is not valid UTF-8 of at most 4096 bytes");
                return;
            }
            queries.add(query);
        }
        if (data.hasRemaining())
        {
            optionReply(option, REP_ERR_INVALID, "trailing bytes after " + count + " queries");
            return;
        }
        if (name == null)
        {
            optionReply(option, REP_ERR_INVALID, "export name is not valid UTF-8 of at most 4096 bytes");
            return;
        }
        final NbdExport found = server.lookup(name);
        if (found == null)
        {
            optionReply(option, REP_ERR_UNKNOWN, "export '" + name + "' not present");
            return;
        }
        final List<MetaContext> offered = found.metaContexts();
        final List<String> selected = new ArrayList<>();
        for (int id = 0; id < offered.size(); id++)
        {
            final String contextName = offered.get(id).name();
            if (matches(contextName, queries, set))
            {
                final byte[] bytes = contextName.getBytes(StandardCharsets.UTF_8);
                optionReply(option, REP_META_CONTEXT, ByteBuffer.allocate(4 + bytes.length)
                    .putInt(set ? id : 0).put(bytes).array());
                selected.add(contextName);
            }
        }
        if (set)
        {
            metaExportName = name;
            metaSelected = List.copyOf(selected);
        }
        optionReply(option, REP_ACK, new byte[0]);
    }

    private static boolean matches(final String contextName, final List<String> queries, final boolean set)
    {
        if (queries.isEmpty())
        {
            return !set;
        }
        for (final String query : queries)
        {
            if (query.equals(contextName))
            {
                return true;
            }
            // In LIST, "namespace:" and "qemu:dirty-bitmap:" act as wildcards.
            if (!set && query.endsWith(":") && contextName.startsWith(query))
            {
                return true;
            }
        }
        return false;
    }

    private void selectContexts(final String requestedName, final NbdExport chosen)
    {
        if (metaExportName == null || !metaExportName.equals(requestedName) || metaSelected.isEmpty())
        {
            return;
        }
        final List<MetaContext> offered = chosen.metaContexts();
        final List<MetaContext> picked = new ArrayList<>();
        final List<Integer> ids = new ArrayList<>();
        for (int id = 0; id < offered.size(); id++)
        {
            if (metaSelected.contains(offered.get(id).name()))
            {
                picked.add(offered.get(id));
                ids.add(id);
            }
        }
        contexts = picked.toArray(new MetaContext[0]);
        contextIds = ids.stream().mapToInt(Integer::intValue).toArray();
    }

    private int transmissionFlags(final NbdExport target)
    {
        final Set<NbdExport.Feature> features = target.features();
        int flags = TF_HAS_FLAGS;
        if (target.isReadOnly())
        {
            flags |= TF_READ_ONLY;
        }
        if (features.contains(NbdExport.Feature.FLUSH))
        {
            flags |= TF_SEND_FLUSH;
        }
        if (features.contains(NbdExport.Feature.FUA))
        {
            flags |= TF_SEND_FUA;
        }
        if (!target.isReadOnly() && features.contains(NbdExport.Feature.TRIM))
        {
            flags |= TF_SEND_TRIM;
        }
        if (!target.isReadOnly() && features.contains(NbdExport.Feature.WRITE_ZEROES))
        {
            flags |= TF_SEND_WRITE_ZEROES;
            if (features.contains(NbdExport.Feature.FAST_ZERO))
            {
                flags |= TF_SEND_FAST_ZERO;
            }
        }
        if (structured)
        {
            flags |= TF_SEND_DF;
        }
        if (features.contains(NbdExport.Feature.MULTI_CONN))
        {
            flags |= TF_CAN_MULTI_CONN;
        }
        if (features.contains(NbdExport.Feature.CACHE))
        {
            flags |= TF_SEND_CACHE;
        }
        return flags;
    }

    private void optionReply(final int option, final int type, final String message) throws IOException
    {
        optionReply(option, type, truncate(message.getBytes(StandardCharsets.UTF_8)));
    }

    private void optionReply(final int option, final int type, final byte[] payload) throws IOException
    {
        final ByteBuffer header = ByteBuffer.allocate(20);
        header.putLong(OPTION_REPLY_MAGIC).putInt(option).putInt(type).putInt(payload.length).flip();
        writeFully(header, ByteBuffer.wrap(payload));
    }

    // ------------------------------------------------------------------------------------------------
    // Transmission

    private void transmission() throws IOException
    {
        final NbdExport target = export;
        while (true)
        {
            fill(28);
            final int start = received.position();
            if (received.getInt(start) != REQUEST_MAGIC)
            {
                throw new ProtocolViolation("bad request magic");
            }
            final int flags = Short.toUnsignedInt(received.getShort(start + 4));
            final int type = Short.toUnsignedInt(received.getShort(start + 6));
            final long cookie = received.getLong(start + 8);
            final long offset = received.getLong(start + 16);
            final long length = Integer.toUnsignedLong(received.getInt(start + 24));
            received.position(start + 28);
            acquirePermit();
            ByteBuffer payload = null;
            if (type == CMD_WRITE)
            {
                if (length > MAX_PAYLOAD)
                {
                    // The payload cannot be skipped sensibly: answer, then end the connection.
                    replyError(cookie, type, EOVERFLOW, "write of " + length + " bytes exceeds the 32 MiB limit", -1);
                    release();
                    throw new ProtocolViolation("oversized write payload");
                }
                payload = server.buffers().acquire((int)length);
                try
                {
                    // Bytes already received first, the rest straight from the socket.
                    final int buffered = Math.min(received.remaining(), payload.remaining());
                    // An absolute bulk put: a slice would be one more object per request.
                    payload.put(payload.position(), received, received.position(), buffered);
                    payload.position(payload.position() + buffered);
                    received.position(received.position() + buffered);
                    readFully(payload);
                }
                catch (final IOException ex)
                {
                    server.buffers().release(payload);
                    release();
                    throw ex;
                }
            }
            if (type == CMD_DISC)
            {
                release();
                return;
            }
            final int error = validate(target, type, flags, offset, length);
            if (error != OK)
            {
                if (payload != null)
                {
                    server.buffers().release(payload);
                }
                replyError(cookie, type, error, invalidReason, -1);
                release();
                continue;
            }
            dispatch(target, type, flags, cookie, offset, (int)Math.min(length, Integer.MAX_VALUE), length, payload);
        }
    }

    /** @return {@link NbdProtocol#OK} or the error for an invalid request, with {@link #invalidReason} set. */
    private int validate(final NbdExport target, final int type, final int flags, final long offset, final long length)
    {
        int allowed = (transmissionFlags & TF_SEND_FUA) != 0 ? CMD_FLAG_FUA : 0;
        switch (type)
        {
            case CMD_READ:
                allowed |= structured ? CMD_FLAG_DF : 0;
                break;
            case CMD_WRITE:
            case CMD_TRIM:
            case CMD_FLUSH:
            case CMD_CACHE:
                break;
            case CMD_WRITE_ZEROES:
                allowed |= CMD_FLAG_NO_HOLE | ((transmissionFlags & TF_SEND_FAST_ZERO) != 0 ? CMD_FLAG_FAST_ZERO : 0);
                break;
            case CMD_BLOCK_STATUS:
                allowed |= CMD_FLAG_REQ_ONE;
                break;
            default:
                return invalid(EINVAL, "unknown command " + type);
        }
        if ((flags & ~allowed) != 0)
        {
            return invalid(EINVAL, "flags 0x" + Integer.toHexString(flags) + " not valid for " + commandName(type));
        }
        if ((type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES) && target.isReadOnly())
        {
            return invalid(EPERM, "export is read-only");
        }
        if (type == CMD_TRIM && (transmissionFlags & TF_SEND_TRIM) == 0
            || type == CMD_WRITE_ZEROES && (transmissionFlags & TF_SEND_WRITE_ZEROES) == 0
            || type == CMD_FLUSH && (transmissionFlags & TF_SEND_FLUSH) == 0
            || type == CMD_CACHE && (transmissionFlags & TF_SEND_CACHE) == 0)
        {
            return invalid(EINVAL, commandName(type) + " is not supported by this export");
        }
        if (type == CMD_BLOCK_STATUS && contexts.length == 0)
        {
            return invalid(EINVAL, "no metadata context was negotiated");
        }
        if (type == CMD_FLUSH)
        {
            return OK;
        }
        if (type == CMD_READ && length > MAX_PAYLOAD)
        {
            return invalid(EOVERFLOW, "read of " + length + " bytes exceeds the 32 MiB limit");
        }
        final long size = target.size();
        if (offset < 0 || offset > size || length > size - offset)
        {
            // As QEMU does: writes past the end are out of space, anything else is invalid.
            return invalid(type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL,
                commandName(type) + " of " + length + " bytes at " + Long.toUnsignedString(offset)
                + " is past the end of the " + size + "-byte export");
        }
        if (type == CMD_BLOCK_STATUS && length == 0)
        {
            return invalid(EINVAL, "BLOCK_STATUS of zero bytes");
        }
        return OK;
    }

    private int invalid(final int error, final String reason)
    {
        invalidReason = reason;
        return error;
    }

    private void dispatch(final NbdExport target, final int type, final int flags, final long cookie,
        final long offset, final int intLength, final long length, final ByteBuffer payload) throws IOException
    {
        switch (type)
        {
            case CMD_READ:
                read(target, flags, cookie, offset, intLength);
                return;
            case CMD_BLOCK_STATUS:
                blockStatus(flags, cookie, offset, length);
                return;
            default:
                break;
        }
        final Completion done = takeCompletion(cookie, type, payload);
        if (length == 0 && type != CMD_FLUSH)
        {
            done.complete(OK);
            return;
        }
        try
        {
            switch (type)
            {
                case CMD_WRITE:
                    target.write(offset, payload, flags & CMD_FLAG_FUA, done);
                    break;
                case CMD_FLUSH:
                    target.flush(done);
                    break;
                case CMD_TRIM:
                    target.trim(offset, length, flags & CMD_FLAG_FUA, done);
                    break;
                case CMD_WRITE_ZEROES:
                    target.writeZeroes(offset, length, flags, done);
                    break;
                case CMD_CACHE:
                    target.cache(offset, length, done);
                    break;
                default:
                    done.complete(EINVAL);
                    break;
            }
        }
        catch (final RuntimeException ex)
        {
            done.complete(EIO, true);
        }
    }

    /** Reader thread: an idle completion armed for one request. */
    private Completion takeCompletion(final long cookie, final int type, final ByteBuffer payload)
    {
        Completion done = idleCompletions.poll();
        if (done == null)
        {
            done = awaitIdleCompletion();
        }
        if (done == null)
        {
            // Cannot happen: every completion out of the pool holds one of MAX_IN_FLIGHT permits.
            if (payload != null)
            {
                server.buffers().release(payload);
            }
            release();
            throw new IllegalStateException("the completion pool of " + remote() + " ran dry");
        }
        done.arm(cookie, type, payload);
        return done;
    }

    /**
     * Reader thread, holding a permit while the pool looked empty. The permit means a completion is on its way back,
     * but the pool is a many-to-one queue: a thread returning one claims its slot first and fills it just after, so a
     * later slot, already filled, could have given back the permit this thread holds while the head slot is still
     * empty. Fresh-clone CI once hit exactly that ("ran dry"). Waits for the slot, bounded.
     *
     * @return the completion, or {@code null} if none came back within five seconds (a lost completion: a bug).
     */
    private Completion awaitIdleCompletion()
    {
        return pollUntil(idleCompletions::poll, TimeUnit.SECONDS.toNanos(5));
    }

    /**
     * Polls until {@code poll} yields something or {@code timeoutNanos} passed: spins a thousand times, then yields
     * the CPU between polls, so that a thread preempted halfway through filling a slot gets to finish.
     *
     * @param poll returns the element, or {@code null} while there is none yet.
     * @param timeoutNanos how long to keep polling.
     * @return the element, or {@code null} if none came in time.
     */
    static <T> T pollUntil(final Supplier<T> poll, final long timeoutNanos)
    {
        final long deadline = System.nanoTime() + timeoutNanos;
        T found;
        for (int spins = 0; (found = poll.get()) == null; spins++)
        {
            if (System.nanoTime() - deadline > 0)
            {
                return null;
            }
            if (spins < 1_000)
            {
                Thread.onSpinWait();
            }
            else
            {
                Thread.yield();
            }
        }
        return found;
    }

    private void read(final NbdExport target, final int flags, final long cookie, final long offset,
        final int length) throws IOException
    {
        try
        {
            if (length == 0)
            {
                if (structured)
                {
                    sendChunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE_NONE, null);
                }
                else
                {
                    sendSimple(cookie, OK, null);
                }
                return;
            }
            final ByteBuffer data = server.buffers().acquire(length);
            try
            {
                int error;
                try
                {
                    error = target.read(offset, data);
                }
                catch (final RuntimeException ex)
                {
                    error = EIO;
                }
                if (error != OK || data.hasRemaining())
                {
                    replyError(cookie, CMD_READ, error == OK ? EIO : error, "read failed at " + offset, offset);
                    return;
                }
                data.flip();
                if (structured)
                {
                    // One OFFSET_DATA chunk covers the whole range, which also satisfies DF.
                    sendChunk(cookie, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, data, offset);
                }
                else
                {
                    sendSimple(cookie, OK, data);
                }
            }
            finally
            {
                server.buffers().release(data);
            }
        }
        finally
        {
            release();
        }
    }

    private void blockStatus(final int flags, final long cookie, final long offset, final long length)
        throws IOException
    {
        try
        {
            final boolean one = (flags & CMD_FLAG_REQ_ONE) != 0;
            final ByteBuffer[] chunks = new ByteBuffer[contexts.length];
            for (int i = 0; i < contexts.length; i++)
            {
                final ExtentCollector collector = new ExtentCollector(length, one ? 1 : MAX_EXTENTS);
                try
                {
                    contexts[i].blockStatus(offset, length, collector);
                }
                catch (final IOException | RuntimeException ex)
                {
                    replyError(cookie, CMD_BLOCK_STATUS, EIO, "block status of " + contexts[i].name() + " failed", offset);
                    return;
                }
                if (collector.count == 0)
                {
                    replyError(cookie, CMD_BLOCK_STATUS, EIO, contexts[i].name() + " produced no extents", offset);
                    return;
                }
                final ByteBuffer payload = ByteBuffer.allocate(4 + 8 * collector.count);
                payload.putInt(contextIds[i]);
                for (int e = 0; e < collector.count; e++)
                {
                    payload.putInt((int)collector.lengths[e]).putInt(collector.flags[e]);
                }
                chunks[i] = payload.flip();
            }
            sendLock.acquireUninterruptibly();
            try
            {
                for (int i = 0; i < chunks.length; i++)
                {
                    writeChunk(cookie, i == chunks.length - 1 ? REPLY_FLAG_DONE : 0, REPLY_TYPE_BLOCK_STATUS, chunks[i]);
                }
            }
            finally
            {
                releaseSendLock();
            }
        }
        finally
        {
            release();
        }
    }

    /** Collects extents for one context on the reader thread, merging equal neighbours and clamping to the request. */
    private static final class ExtentCollector implements ExtentSink
    {
        private final long wanted;
        private final int cap;
        private long covered;
        private int count;
        private long[] lengths = new long[8];
        private int[] flags = new int[8];

        ExtentCollector(final long wanted, final int cap)
        {
            this.wanted = wanted;
            this.cap = cap;
        }

        @Override
        public boolean extent(final long length, final int extentFlags)
        {
            if (length <= 0 || covered >= wanted)
            {
                return covered < wanted;
            }
            final long clamped = Math.min(length, wanted - covered);
            if (count > 0 && flags[count - 1] == extentFlags && lengths[count - 1] + clamped <= 0xffffffffL)
            {
                lengths[count - 1] += clamped;
            }
            else
            {
                if (count == cap)
                {
                    return false;
                }
                if (count == lengths.length)
                {
                    lengths = java.util.Arrays.copyOf(lengths, count * 2);
                    flags = java.util.Arrays.copyOf(flags, count * 2);
                }
                lengths[count] = clamped;
                flags[count] = extentFlags;
                count++;
            }
            covered += clamped;
            return covered < wanted;
        }
    }

    /**
     * Completes one modifying request exactly once, from any thread, by sending its reply inline or handing it
     * to the reply thread; the completing thread never blocks. Reused for later requests: the reader arms it,
     * whichever thread wrote the reply frees it (see the class comment); {@link #adapter} runs on the reader only.
     */
    private final class Completion implements NbdCompletion
    {
        private static final int IDLE = 0;
        private static final int ARMED = 1;
        private static final int COMPLETED = 2;
        private static final AtomicIntegerFieldUpdater<Completion> STATE =
            AtomicIntegerFieldUpdater.newUpdater(Completion.class, "state");

        private volatile int state;
        private long cookie;
        private int type;
        /** When the request had arrived whole ({@link System#nanoTime()}), for the server's latency window. */
        private long arrivedNanos;
        private ByteBuffer payload;
        /** Written before the queue hands this to the reply thread. */
        private int error;
        /** Set when the export threw: it may still hold this, so this is never reused. */
        private boolean retired;
        /**
         * The simple reply as sent inline (null when this connection never sends inline); after a partial send,
         * positioned at its unsent rest for the reply thread.
         */
        private final ByteBuffer inlineReply;
        private final Pointer inlineReplyAddress;
        private Function<NbdCompletion, ?> adapterFactory;
        private Object adapter;

        Completion()
        {
            inlineReply = inlineSender == null ? null : ByteBuffer.allocateDirect(16);
            inlineReplyAddress = inlineReply == null ? null : Native.getDirectBufferPointer(inlineReply);
        }

        /** Reader thread, on an entry just taken from the pool. */
        void arm(final long requestCookie, final int requestType, final ByteBuffer requestPayload)
        {
            cookie = requestCookie;
            type = requestType;
            payload = requestPayload;
            arrivedNanos = System.nanoTime();
            // Volatile: orders the fields above before the export, and any thread it hands this to, sees ARMED.
            state = ARMED;
        }

        @Override
        public void complete(final int error)
        {
            complete(error, false);
        }

        void complete(final int error, final boolean retire)
        {
            if (!STATE.compareAndSet(this, ARMED, COMPLETED))
            {
                throw new IllegalStateException(commandName(type) + " request " + cookie + " completed twice");
            }
            final ByteBuffer data = payload;
            if (data != null)
            {
                payload = null;
                server.buffers().release(data);
            }
            this.error = error;
            retired = retire;
            if (inlineReply != null && replyInline())
            {
                return;
            }
            // From the offer on, the reply thread may free this and the reader reuse it: touch no field after it.
            if (!replies.offer(this))
            {
                // Cannot happen: every queued reply holds one of MAX_IN_FLIGHT permits.
                release();
                forceClose();
                throw new IllegalStateException("reply queue of " + remote() + " overflowed");
            }
            if (replyWriterParked)
            {
                LockSupport.unpark(replyWriter);
            }
        }

        /**
         * Tries to send the reply from this thread without waiting for anything (class comment).
         *
         * @return whether it went out, or its rest is the reply thread's; false: queue it.
         */
        private boolean replyInline()
        {
            if (!replies.isEmpty() || replyWriterWaiting || !enterInline())
            {
                return false;
            }
            long sent = -1;
            try
            {
                if (!sendLock.tryAcquire())
                {
                    return false;
                }
                inlineReply.clear();
                inlineReply.putInt(0, SIMPLE_REPLY_MAGIC).putInt(4, error).putLong(8, cookie);
                sent = inlineSender.send(inlineFd, inlineReplyAddress, 16);
            }
            catch (final RuntimeException ex)
            {
                // Only a test's sender could throw: count it as nothing sent, the reply thread takes the reply.
                sent = -1;
            }
            finally
            {
                exitInline();
            }
            if (sent <= 0)
            {
                releaseSendLock();
                return false;
            }
            if (sent < 16)
            {
                // The rest must be the next bytes on the stream: the send lock stays taken for the reply thread.
                inlineReply.position((int)sent);
                handedOver = this;
                LockSupport.unpark(replyWriter);
                return true;
            }
            releaseSendLock();
            server.countInlineReply();
            server.noteModifyingRequest(System.nanoTime() - arrivedNanos);
            free();
            release();
            return true;
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

        /**
         * The thread that wrote or discarded the reply, before it releases the permit: back to the pool; a retired
         * one stays completed (a late call still fails as a second completion) and a fresh one takes its place.
         */
        void free()
        {
            if (retired)
            {
                idleCompletions.offer(new Completion());
                return;
            }
            state = IDLE;
            idleCompletions.offer(this);
        }
    }

    /**
     * The reply thread: writes queued replies in batches until the reader stops it, and the rest of any reply an
     * inline sender could write only in part. Modifying requests only ever get simple replies (structured error
     * chunks are for reads and block status), so a batch is a run of 16-byte headers and one socket write. After
     * a write fails it keeps discarding, so permits return.
     */
    private void writeReplies()
    {
        boolean failed = false;
        int idle = 0;
        while (true)
        {
            if (handedOver != null)
            {
                idle = 0;
                failed = finishHandedOver(failed);
                continue;
            }
            final int count = batch();
            if (count > 0)
            {
                idle = 0;
                failed = acquireSendLockForBatch(failed);
                if (!failed)
                {
                    try
                    {
                        writeFully(replyBatchArray);
                        final long now = System.nanoTime();
                        for (int i = 0; i < count; i++)
                        {
                            server.noteModifyingRequest(now - batchCompletions[i].arrivedNanos);
                        }
                    }
                    catch (final IOException ex)
                    {
                        // The client went away; the reader thread notices and ends the connection.
                        failed = true;
                        forceClose();
                    }
                }
                sendLock.release();
                for (int i = 0; i < count; i++)
                {
                    batchCompletions[i].free();
                    batchCompletions[i] = null;
                }
                inFlight.release(count);
                continue;
            }
            if (replyWriterStop && replies.isEmpty() && handedOver == null)
            {
                return;
            }
            if (++idle < 64)
            {
                Thread.onSpinWait();
                continue;
            }
            replyWriterParked = true;
            if (replies.isEmpty() && handedOver == null && !replyWriterStop)
            {
                // The timeout only bounds a lost wake-up; producers unpark while this flag is set.
                LockSupport.parkNanos(this, 100_000_000L);
            }
            replyWriterParked = false;
        }
    }

    /**
     * Reply thread, {@link #handedOver} set: it came with the send lock, so this writes its rest first, then
     * releases the lock, frees it and returns its permit.
     *
     * @return whether writes have failed.
     */
    private boolean finishHandedOver(final boolean failed)
    {
        final Completion partial = handedOver;
        handedOver = null;
        boolean failedNow = failed;
        if (!failedNow)
        {
            try
            {
                writeFully(partial.inlineReply);
                server.noteModifyingRequest(System.nanoTime() - partial.arrivedNanos);
            }
            catch (final IOException ex)
            {
                failedNow = true;
                forceClose();
            }
        }
        sendLock.release();
        partial.free();
        release();
        return failedNow;
    }

    /**
     * Reply thread, with a batch in hand: takes the send lock. An inline sender that sent in part keeps the lock
     * for this thread, so this cannot block in the semaphore: it parks, writes any such rest when woken, and
     * retries. Whoever else releases the lock wakes it ({@link #releaseSendLock}), as does a hand-over.
     *
     * @return whether writes have failed.
     */
    private boolean acquireSendLockForBatch(final boolean failed)
    {
        boolean failedNow = failed;
        if (sendLock.tryAcquire())
        {
            return failedNow;
        }
        // Volatile write before the next tryAcquire: a release after it sees the flag and unparks.
        replyWriterWaiting = true;
        int spins = 0;
        while (true)
        {
            if (handedOver != null)
            {
                failedNow = finishHandedOver(failedNow);
            }
            if (sendLock.tryAcquire())
            {
                replyWriterWaiting = false;
                return failedNow;
            }
            if (++spins < 64)
            {
                Thread.onSpinWait();
            }
            else
            {
                // The reader may hold the lock for a whole read reply to a slow client. The timeout only bounds
                // a lost wake-up.
                LockSupport.parkNanos(this, 10_000_000L);
            }
        }
    }

    /** Any writer but the reply thread: releases the send lock, waking the reply thread if it waits for it. */
    private void releaseSendLock()
    {
        sendLock.release();
        if (replyWriterWaiting)
        {
            LockSupport.unpark(replyWriter);
        }
    }

    /** Moves queued replies into {@link #replyBatch}, flipped. @return how many. */
    private int batch()
    {
        replyBatch.clear();
        int count = 0;
        Completion next;
        while (replyBatch.remaining() >= 16 && (next = replies.poll()) != null)
        {
            replyBatch.putInt(SIMPLE_REPLY_MAGIC).putInt(next.error).putLong(next.cookie);
            batchCompletions[count++] = next;
        }
        replyBatch.flip();
        return count;
    }

    // ------------------------------------------------------------------------------------------------
    // Replies

    private void replyError(final long cookie, final int type, final int error, final String message,
        final long offset) throws IOException
    {
        if (structured && (type == CMD_READ || type == CMD_BLOCK_STATUS))
        {
            final byte[] text = truncate(message.getBytes(StandardCharsets.UTF_8));
            final boolean withOffset = offset >= 0;
            final ByteBuffer payload = ByteBuffer.allocate(6 + text.length + (withOffset ? 8 : 0));
            payload.putInt(error).putShort((short)text.length).put(text);
            if (withOffset)
            {
                payload.putLong(offset);
            }
            sendChunk(cookie, REPLY_FLAG_DONE, withOffset ? REPLY_TYPE_ERROR_OFFSET : REPLY_TYPE_ERROR, payload.flip());
        }
        else
        {
            sendSimple(cookie, error, null);
        }
    }

    private void sendSimple(final long cookie, final int error, final ByteBuffer data) throws IOException
    {
        sendLock.acquireUninterruptibly();
        try
        {
            sendHeader.clear();
            sendHeader.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie).flip();
            if (data == null)
            {
                writeFully(sendHeader);
            }
            else
            {
                writeFully(sendHeader, data);
            }
        }
        finally
        {
            releaseSendLock();
        }
    }

    private void sendChunk(final long cookie, final int flags, final int type, final ByteBuffer payload)
        throws IOException
    {
        sendLock.acquireUninterruptibly();
        try
        {
            writeChunk(cookie, flags, type, payload);
        }
        finally
        {
            releaseSendLock();
        }
    }

    /** Writes one structured chunk; the caller holds {@link #sendLock}. */
    private void writeChunk(final long cookie, final int flags, final int type, final ByteBuffer payload)
        throws IOException
    {
        final int length = payload == null ? 0 : payload.remaining();
        sendHeader.clear();
        sendHeader.putInt(STRUCTURED_REPLY_MAGIC).putShort((short)flags).putShort((short)type)
            .putLong(cookie).putInt(length).flip();
        if (payload == null)
        {
            writeFully(sendHeader);
        }
        else
        {
            writeFully(sendHeader, payload);
        }
    }

    private void sendChunk(final long cookie, final int flags, final int type, final ByteBuffer data,
        final long offset) throws IOException
    {
        sendLock.acquireUninterruptibly();
        try
        {
            sendHeader.clear();
            sendHeader.putInt(STRUCTURED_REPLY_MAGIC).putShort((short)flags).putShort((short)type)
                .putLong(cookie).putInt(8 + data.remaining()).putLong(offset).flip();
            writeFully(sendHeader, data);
        }
        finally
        {
            releaseSendLock();
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Plumbing

    private void acquirePermit() throws IOException
    {
        try
        {
            inFlight.acquire();
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting for in-flight requests", ex);
        }
    }

    private void release()
    {
        inFlight.release();
    }

    /** Makes at least {@code count} unparsed bytes available in {@link #received}. */
    private void fill(final int count) throws IOException
    {
        if (received.remaining() >= count)
        {
            return;
        }
        received.compact();
        try
        {
            while (received.position() < count)
            {
                if (readSome(received) < 0)
                {
                    throw new EOFException("client closed the connection");
                }
            }
        }
        finally
        {
            received.flip();
        }
    }

    private int readSome(final ByteBuffer buffer) throws IOException
    {
        final TlsChannel session = tls;
        return session == null ? channel.read(buffer) : session.read(buffer);
    }

    private ByteBuffer readFully(final ByteBuffer buffer) throws IOException
    {
        while (buffer.hasRemaining())
        {
            if (readSome(buffer) < 0)
            {
                throw new EOFException("client closed the connection");
            }
        }
        return buffer.flip();
    }

    private void writeFully(final ByteBuffer... buffers) throws IOException
    {
        writeFully(channel, tls, buffers);
    }

    /**
     * Writes every byte of {@code buffers}, through the TLS session when there is one; the server's and the client's
     * connections share it. The caller serializes writers.
     */
    static void writeFully(final SocketChannel channel, final TlsChannel session, final ByteBuffer... buffers)
        throws IOException
    {
        if (session != null)
        {
            session.write(buffers);
            return;
        }
        final ByteBuffer last = buffers[buffers.length - 1];
        while (last.hasRemaining() || buffers[0].hasRemaining())
        {
            channel.write(buffers);
        }
    }

    private static String decode(final ByteBuffer data, final int length)
    {
        final ByteBuffer slice = data.slice().limit(length);
        data.position(data.position() + length);
        if (length > MAX_STRING)
        {
            return null;
        }
        try
        {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(slice).toString();
        }
        catch (final CharacterCodingException ex)
        {
            return null;
        }
    }

    private static byte[] truncate(final byte[] bytes)
    {
        return bytes.length <= MAX_STRING ? bytes : java.util.Arrays.copyOf(bytes, MAX_STRING);
    }

    /** A violation after which the stream cannot be parsed further; the connection closes. */
    private static final class ProtocolViolation extends IOException
    {
        private static final long serialVersionUID = 1L;

        ProtocolViolation(final String message)
        {
            super(message);
        }
    }
}
