package dev.tidemark.io.nbd;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsCredentials;

import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

import com.sun.jna.Pointer;

/**
 * An NBD server (fixed newstyle, structured replies, metadata contexts) on TCP and Unix sockets; safe
 * for concurrent use by any number of threads.
 *
 * <p>Each listener has an accept thread; each connection has one reader thread that runs the handshake
 * and then reads and dispatches requests, which pipeline (up to {@value NbdConnection#MAX_IN_FLIGHT} in
 * flight per connection). Read replies are written by the reader; the replies of modifying requests by the
 * completing thread when the socket takes them at once (plain connections), else by the connection's reply
 * thread; every reply goes out whole (see {@code NbdConnection}). Exports come and go at run time: removing
 * one shuts down its connections cleanly (no new requests are read, in-flight ones are answered, then the
 * socket closes).
 *
 * <p>The system property {@code tidemark.nbd.inlineReply=false}, read once, keeps every such reply on the reply
 * thread (for A/B measurements).
 *
 * <p>With {@link #requireTls} the server is TLS-only, as QEMU's is with {@code tls-creds}: before
 * {@code NBD_OPT_STARTTLS} every option but ABORT gets {@code NBD_REP_ERR_TLS_REQD}, so no export is listed
 * or opened in clear. The TLS handshake runs on the connection's own thread, under the handshake timeout.
 */
public final class NbdServer implements AutoCloseable
{
    /** Default cap on concurrent connections. */
    public static final int DEFAULT_MAX_CONNECTIONS = 256;
    /** Default time a client has to finish the handshake. */
    public static final Duration DEFAULT_HANDSHAKE_TIMEOUT = Duration.ofSeconds(10);

    /** Most bytes of request buffers out at once, over all connections. */
    public static final int BUFFER_BUDGET = 256 * 1024 * 1024;

    private static final long CLOSE_WAIT_MILLIS = 10_000;

    /** Whether completing threads may write replies themselves ({@code -Dtidemark.nbd.inlineReply=false}: never). */
    private static final boolean INLINE_REPLY =
        !"false".equalsIgnoreCase(System.getProperty("tidemark.nbd.inlineReply", "true"));

    /**
     * Writes the first bytes of a reply without blocking; any thread. The seam tests use to force partial
     * sends; the default is libc's {@code send} with {@code MSG_DONTWAIT}.
     */
    @FunctionalInterface
    interface InlineSender
    {
        /** @return bytes sent (at most {@code length}), or a value below 1 when none were. */
        long send(int fd, Pointer buffer, int length);
    }

    private final int maxConnections;
    private final Duration handshakeTimeout;
    private final Object exportLock = new Object();
    private final Map<String, NbdExport> exports = new LinkedHashMap<>();
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final List<Thread> acceptThreads = new ArrayList<>();
    private final List<Path> unixPaths = new ArrayList<>();
    private final ScheduledExecutorService timer;
    private final BufferPool buffers = new BufferPool(BUFFER_BUDGET);
    private final AtomicInteger connectionIds = new AtomicInteger();
    private final java.util.concurrent.atomic.AtomicLong accepted = new java.util.concurrent.atomic.AtomicLong();
    private volatile boolean closed;
    private volatile TlsCredentials tls;
    private volatile TlsAuthorizer authorizer;
    private volatile Listener listener = (refusal, remote, detail) -> { };
    private volatile InlineSender inlineSender =
        INLINE_REPLY && NonBlockingSend.AVAILABLE ? NonBlockingSend::sendNow : null;
    /** Replies a completing thread wrote whole itself, over all connections (tests read it). */
    private final LongAdder inlineReplies = new LongAdder();
    /**
     * The longest modifying request since the last {@link #takeLongestModifyingRequestNanos()}, over all connections:
     * from its arrival (header and payload read) to its reply written to the socket.
     */
    private final AtomicLong longestModifyingRequest = new AtomicLong();

    /** Hears about refused clients; called on connection threads, so implementations must be thread-safe. */
    @FunctionalInterface
    public interface Listener
    {
        /**
         * @param refusal why.
         * @param remote  the client's address.
         * @param detail  for people.
         */
        void refused(NbdRefusal refusal, String remote, String detail);
    }

    /** A server with {@link #DEFAULT_MAX_CONNECTIONS} and {@link #DEFAULT_HANDSHAKE_TIMEOUT}. */
    public NbdServer()
    {
        this(DEFAULT_MAX_CONNECTIONS, DEFAULT_HANDSHAKE_TIMEOUT);
    }

    /**
     * @param maxConnections   connections beyond this are closed as soon as they are accepted.
     * @param handshakeTimeout a client that has not entered transmission by then is disconnected.
     */
    public NbdServer(final int maxConnections, final Duration handshakeTimeout)
    {
        if (maxConnections < 1)
        {
            throw new IllegalArgumentException("maxConnections must be at least 1, was " + maxConnections);
        }
        if (handshakeTimeout.isNegative() || handshakeTimeout.isZero())
        {
            throw new IllegalArgumentException("handshakeTimeout must be positive, was " + handshakeTimeout);
        }
        this.maxConnections = maxConnections;
        this.handshakeTimeout = handshakeTimeout;
        this.timer = Executors.newSingleThreadScheduledExecutor(runnable ->
        {
            final Thread thread = new Thread(runnable, "nbd-handshake-timer");
            thread.setDaemon(true);
            return thread;
        });
    }

    /**
     * Makes the server TLS-only for connections accepted from now on.
     *
     * @param credentials server credentials ({@link TlsCredentials.Endpoint#SERVER}).
     * @param authz       who may connect after authenticating, or {@code null} for any authenticated client.
     */
    public void requireTls(final TlsCredentials credentials, final TlsAuthorizer authz)
    {
        if (credentials.endpoint() != TlsCredentials.Endpoint.SERVER)
        {
            throw new IllegalArgumentException("TLS credentials for an NBD server need endpoint=server");
        }
        this.authorizer = authz;
        this.tls = credentials;
    }

    /** @return whether the server requires TLS. */
    public boolean isTlsRequired()
    {
        return tls != null;
    }

    /** Sets who hears about refused clients (replaces the previous listener). */
    public void setListener(final Listener listener)
    {
        this.listener = java.util.Objects.requireNonNull(listener, "listener");
    }

    /**
     * Listens on the loopback address.
     *
     * @param port TCP port, 0 for any free one.
     * @return the bound address.
     */
    public InetSocketAddress listenTcp(final int port) throws IOException
    {
        return listenTcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
    }

    /**
     * Listens on the given address (use this to bind anything other than loopback).
     *
     * @return the bound address.
     */
    public InetSocketAddress listenTcp(final InetSocketAddress address) throws IOException
    {
        final ServerSocketChannel channel = ServerSocketChannel.open();
        channel.setOption(StandardSocketOptions.SO_REUSEADDR, true);
        channel.bind(address, 128);
        startListener(channel);
        return (InetSocketAddress)channel.getLocalAddress();
    }

    /**
     * Listens on a Unix domain socket; the file must not exist and is deleted on {@link #close()}.
     *
     * @return the socket path.
     */
    public Path listenUnix(final Path socket) throws IOException
    {
        final ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        channel.bind(UnixDomainSocketAddress.of(socket), 128);
        synchronized (listeners)
        {
            unixPaths.add(socket);
        }
        startListener(channel);
        return socket;
    }

    /**
     * Adds an export; clients can open it at once.
     *
     * @throws IllegalArgumentException if an export of that name exists or the name is longer than 4096 bytes.
     */
    public void addExport(final NbdExport export)
    {
        if (export.name().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING)
        {
            throw new IllegalArgumentException("export name longer than 4096 bytes");
        }
        synchronized (exportLock)
        {
            if (exports.containsKey(export.name()))
            {
                throw new IllegalArgumentException("export '" + export.name() + "' already exists");
            }
            exports.put(export.name(), export);
        }
    }

    /**
     * Removes an export and closes its open connections cleanly: they stop reading requests, answer the
     * requests already in flight, then close. Waits up to 10 seconds for that.
     *
     * @return whether the export existed.
     */
    public boolean removeExport(final String name)
    {
        final NbdExport removed;
        synchronized (exportLock)
        {
            removed = exports.remove(name);
        }
        if (removed == null)
        {
            return false;
        }
        final List<NbdConnection> affected = new ArrayList<>();
        for (final NbdConnection connection : connections)
        {
            if (connection.export() == removed)
            {
                affected.add(connection);
                connection.shutdown();
            }
        }
        awaitTermination(affected);
        return true;
    }

    /** @return the export names, in the order they were added. */
    public List<String> exportNames()
    {
        synchronized (exportLock)
        {
            return List.copyOf(exports.keySet());
        }
    }

    /** @return connections currently open. */
    public int connectionCount()
    {
        return connections.size();
    }

    /**
     * @param exportName an export's name.
     * @return connections currently in transmission with that export, not counting those whose client has
     *         disconnected and that are only finishing their last replies.
     */
    public int connectionCount(final String exportName)
    {
        final NbdExport export;
        synchronized (exportLock)
        {
            export = exports.get(exportName);
        }
        if (export == null)
        {
            return 0;
        }
        int count = 0;
        for (final NbdConnection connection : connections)
        {
            if (connection.export() == export && !connection.isEnding())
            {
                count++;
            }
        }
        return count;
    }

    /**
     * Counts the clients of an export that are still connected, first giving connections whose client has
     * already disconnected (its DISC or EOF is on the way to, or being read by, the connection's thread) up to
     * {@code settle} to notice. A client that has gone is thus never counted as using the export, while one
     * that stays connected costs the caller at most {@code settle}.
     *
     * @return connections in transmission with that export that are neither ending nor gone after the wait.
     */
    public int activeConnections(final String exportName, final Duration settle)
    {
        final NbdExport export;
        synchronized (exportLock)
        {
            export = exports.get(exportName);
        }
        if (export == null)
        {
            return 0;
        }
        final long deadline = System.nanoTime() + settle.toNanos();
        int count = 0;
        for (final NbdConnection connection : connections)
        {
            if (connection.export() == export && !connection.awaitEnding(deadline))
            {
                count++;
            }
        }
        return count;
    }

    /** @return connections accepted since the server started (including refused ones). */
    public long acceptedConnections()
    {
        return accepted.get();
    }

    /** Stops listening, closes every connection cleanly, and waits for them (up to 10 seconds). */
    @Override
    public void close() throws IOException
    {
        closed = true;
        final List<ServerSocketChannel> toClose;
        final List<Path> paths;
        final List<Thread> acceptors;
        synchronized (listeners)
        {
            toClose = List.copyOf(listeners);
            paths = List.copyOf(unixPaths);
            acceptors = List.copyOf(acceptThreads);
        }
        for (final ServerSocketChannel channel : toClose)
        {
            channel.close();
        }
        final List<NbdConnection> all = new ArrayList<>(connections);
        for (final NbdConnection connection : all)
        {
            connection.shutdown();
        }
        awaitTermination(all);
        for (final Thread thread : acceptors)
        {
            try
            {
                thread.join(CLOSE_WAIT_MILLIS);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                break;
            }
        }
        timer.shutdownNow();
        for (final Path path : paths)
        {
            Files.deleteIfExists(path);
        }
    }

    /**
     * Looks an export up as a client names it: an empty name means the export named "" or, failing that,
     * the only export if there is exactly one.
     */
    NbdExport lookup(final String name)
    {
        synchronized (exportLock)
        {
            final NbdExport export = exports.get(name);
            if (export == null && name.isEmpty() && exports.size() == 1)
            {
                return exports.values().iterator().next();
            }
            return export;
        }
    }

    List<NbdExport> exportList()
    {
        synchronized (exportLock)
        {
            return List.copyOf(exports.values());
        }
    }

    /** @return how connections accepted from now on send replies inline, or null for never. */
    InlineSender inlineSender()
    {
        return inlineSender;
    }

    /** Tests: replaces the inline sender for connections accepted from now on (null: no inline replies). */
    void inlineSender(final InlineSender sender)
    {
        inlineSender = sender;
    }

    /** @return replies written whole by a completing thread since the server started. */
    long inlineReplies()
    {
        return inlineReplies.sum();
    }

    /** Tests: closes every connection's socket at once, as a removal that timed out does. */
    void forceCloseConnections()
    {
        for (final NbdConnection connection : connections)
        {
            connection.forceClose();
        }
    }

    void countInlineReply()
    {
        inlineReplies.increment();
    }

    /** @param nanos one modifying request's time from its arrival to its reply on the socket; any thread. */
    void noteModifyingRequest(final long nanos)
    {
        long longest = longestModifyingRequest.get();
        while (nanos > longest && !longestModifyingRequest.compareAndSet(longest, nanos))
        {
            longest = longestModifyingRequest.get();
        }
    }

    /**
     * Ends the current window and starts the next; any thread. A write's latency as the server saw it: whatever a
     * client measured beyond this was spent outside the server (its own scheduling, the kernel's socket path).
     *
     * @return the longest time a modifying request (write, write zeroes, trim, flush) took in the window, from its
     *         arrival (header and payload read) to its reply written to the socket, in nanoseconds; 0 if none.
     */
    public long takeLongestModifyingRequestNanos()
    {
        return longestModifyingRequest.getAndSet(0);
    }

    BufferPool buffers()
    {
        return buffers;
    }

    ScheduledExecutorService timer()
    {
        return timer;
    }

    Duration handshakeTimeout()
    {
        return handshakeTimeout;
    }

    boolean isClosed()
    {
        return closed;
    }

    TlsCredentials tls()
    {
        return tls;
    }

    TlsAuthorizer authorizer()
    {
        return authorizer;
    }

    void refused(final NbdRefusal refusal, final String remote, final String detail)
    {
        try
        {
            listener.refused(refusal, remote, detail);
        }
        catch (final RuntimeException ignored)
        {
            // A failing listener must not take the connection thread down with it.
        }
    }

    void unregister(final NbdConnection connection)
    {
        connections.remove(connection);
    }

    private void startListener(final ServerSocketChannel channel)
    {
        final SocketAddress local;
        try
        {
            local = channel.getLocalAddress();
        }
        catch (final IOException ex)
        {
            throw new IllegalStateException("listener has no address", ex);
        }
        final Thread thread = new Thread(() -> acceptLoop(channel), "nbd-accept-" + local);
        thread.setDaemon(true);
        synchronized (listeners)
        {
            listeners.add(channel);
            acceptThreads.add(thread);
        }
        thread.start();
    }

    private void acceptLoop(final ServerSocketChannel listener)
    {
        while (!closed)
        {
            final SocketChannel channel;
            try
            {
                channel = listener.accept();
            }
            catch (final ClosedChannelException ex)
            {
                return;
            }
            catch (final IOException ex)
            {
                if (!listener.isOpen())
                {
                    return;
                }
                continue;
            }
            accepted.incrementAndGet();
            if (closed || connections.size() >= maxConnections)
            {
                closeQuietly(channel);
                continue;
            }
            try
            {
                if (channel.supportedOptions().contains(StandardSocketOptions.TCP_NODELAY))
                {
                    channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
                }
            }
            catch (final IOException ex)
            {
                closeQuietly(channel);
                continue;
            }
            final NbdConnection connection = new NbdConnection(this, channel, connectionIds.incrementAndGet());
            connections.add(connection);
            connection.start();
        }
    }

    private static void awaitTermination(final List<NbdConnection> connections)
    {
        final long deadline = System.currentTimeMillis() + CLOSE_WAIT_MILLIS;
        for (final NbdConnection connection : connections)
        {
            final long left = deadline - System.currentTimeMillis();
            if (!connection.awaitTermination(Math.max(1, left)))
            {
                connection.forceClose();
            }
        }
    }

    static void closeQuietly(final AutoCloseable closeable)
    {
        try
        {
            closeable.close();
        }
        catch (final Exception ignored)
        {
            // Closing a broken socket can fail; there is nothing left to release.
        }
    }
}
