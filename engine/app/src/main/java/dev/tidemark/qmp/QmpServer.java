package dev.tidemark.qmp;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.io.qmp.QmpFrameSink;
import dev.tidemark.io.qmp.QmpFrameSplitter;

/**
 * A QMP server on Unix and loopback TCP sockets; its public methods are safe for concurrent use by
 * any number of threads, and every command handler runs on one dispatcher thread.
 *
 * <p><b>Threads.</b> Per connection a reader thread splits and parses input and a writer thread
 * drains that connection's output queue. All commands of all connections run on the single
 * dispatcher thread, in arrival order per connection: this is the analogue of QEMU's big lock, so
 * handlers need no locking against each other. Replies are queued per connection in command order.
 *
 * <p><b>Events.</b> {@link #publishEvent} and {@link #publishEngineEvent} may be called from any thread.
 * Under one server-wide lock they stamp the time and append the event to the queue of every negotiated
 * connection, so all clients see events in one order, never spliced into another message. An event
 * published before a handler returns (on the dispatcher or on a thread the handler waited for) is
 * queued before that command's reply. The event becomes JSON only when a connection's writer takes it
 * (once, shared by all connections), so the publishing thread, which may be a disk's write ring at a
 * cut, runs no serializer.
 *
 * <p><b>Flow control.</b> A connection may have at most {@code maxPendingCommands} commands waiting
 * for the dispatcher; beyond that its reader stops reading, so a flooding client is throttled by
 * the socket, not buffered. A connection whose unread output exceeds {@code maxOutputBytes} (a
 * client that never reads) is dropped. Oversized or over-nested messages get one GenericError each
 * and are skipped up to their end; the connection continues (see {@link QmpFrameSplitter}).
 */
public final class QmpServer implements QmpEventSink, AutoCloseable
{
    private static final System.Logger LOG = System.getLogger(QmpServer.class.getName());

    /** The QEMU version reported in the greeting and by {@code query-version}. */
    public static final int QEMU_MAJOR = 9;
    /** See {@link #QEMU_MAJOR}. */
    public static final int QEMU_MINOR = 2;
    /** See {@link #QEMU_MAJOR}. */
    public static final int QEMU_MICRO = 0;

    private final QmpCommandRegistry registry;
    private final String packageName;
    private final int maxMessageBytes;
    private final int maxPendingCommands;
    private final long maxOutputBytes;
    private final Runnable shutdownHook;

    private final ExecutorService dispatcher;
    private final Object eventLock = new Object();
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final List<Path> unixPaths = new ArrayList<>();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final AtomicBoolean shuttingDown = new AtomicBoolean();
    private final CompletableFuture<Void> terminated = new CompletableFuture<>();
    private final AtomicLong connectionIds = new AtomicLong();
    private volatile Thread dispatcherThread;

    /** The connection whose command runs now; touched only on the dispatcher thread. */
    private Connection current;
    /** Whether the current reply ends capabilities negotiation; dispatcher thread only. */
    private boolean negotiateOnReply;
    /** Work to do right after the current command's reply is queued; dispatcher thread only. */
    private final List<Runnable> afterReply = new ArrayList<>();

    private QmpServer(final Builder builder)
    {
        this.registry = builder.registry;
        this.packageName = builder.packageName;
        this.maxMessageBytes = builder.maxMessageBytes;
        this.maxPendingCommands = builder.maxPendingCommands;
        this.maxOutputBytes = builder.maxOutputBytes;
        this.shutdownHook = builder.shutdownHook;
        this.dispatcher = Executors.newSingleThreadExecutor(task ->
        {
            final Thread thread = new Thread(task, "qmp-dispatcher");
            thread.setDaemon(true);
            dispatcherThread = thread;
            return thread;
        });
        BuiltinCommands.register(registry, this, builder.testCommands);
    }

    /** @return a builder with defaults. */
    public static Builder builder()
    {
        return new Builder();
    }

    /**
     * Listens on a Unix socket; a file already at {@code path} is removed first (as QEMU does).
     *
     * @param path socket path.
     * @throws IOException if binding fails.
     */
    public void listenUnix(final Path path) throws IOException
    {
        checkOpen();
        Files.deleteIfExists(path);
        final ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        channel.bind(UnixDomainSocketAddress.of(path));
        synchronized (listeners)
        {
            listeners.add(channel);
            unixPaths.add(path);
        }
        startAcceptor(channel, "unix:" + path);
    }

    /**
     * Listens on TCP; only loopback addresses are accepted because QMP has no authentication.
     *
     * @param address loopback address; port 0 picks a free port.
     * @return the bound address.
     * @throws IOException if binding fails.
     */
    public InetSocketAddress listenTcp(final InetSocketAddress address) throws IOException
    {
        checkOpen();
        if (address.getAddress() == null || !address.getAddress().isLoopbackAddress())
        {
            throw new IllegalArgumentException("QMP over TCP listens on loopback only, not " + address);
        }
        final ServerSocketChannel channel = ServerSocketChannel.open(StandardProtocolFamily.INET);
        channel.bind(address);
        synchronized (listeners)
        {
            listeners.add(channel);
        }
        startAcceptor(channel, "tcp:" + address);
        return (InetSocketAddress) channel.getLocalAddress();
    }

    /** @return the command registry (register engine commands here before clients use them). */
    public QmpCommandRegistry registry()
    {
        return registry;
    }

    /**
     * Sends an event to every negotiated client; callable from any thread.
     *
     * @param name event name, e.g. {@code JOB_STATUS_CHANGE}.
     * @param data event data; null or empty omits the {@code data} member, as QEMU does.
     */
    @Override
    public void publishEvent(final String name, final ObjectNode data)
    {
        publish(name, data == null || data.isEmpty() ? null : data.deepCopy());
    }

    /**
     * Sends an engine event to every negotiated client; callable from any thread, and cheap on it: the data is
     * turned into JSON later, by the first connection writer that sends it, so an engine thread that emits at a
     * cut (the write ring) runs no serializer code.
     *
     * @param name event name, e.g. {@code JOB_STATUS_CHANGE}.
     * @param data event data, which no thread changes after this call; empty omits the {@code data} member.
     */
    public void publishEngineEvent(final String name, final Map<String, Object> data)
    {
        publish(name, dataMember(data));
    }

    /**
     * Runs an engine event through {@link #publishEngineEvent}'s code, the server-wide lock and the encoding
     * included, without queueing it for any client; any thread. The start-up warm-up calls it, so that a real job's
     * first event does not load and compile this code on a disk's write ring at its cut.
     *
     * @param name event name.
     * @param data event data, as for {@link #publishEngineEvent}.
     * @return the event's encoded bytes, which no client receives.
     */
    public byte[] rehearseEngineEvent(final String name, final Map<String, Object> data)
    {
        final PendingEvent event;
        synchronized (eventLock)
        {
            event = new PendingEvent(Objects.requireNonNull(name, "name"), Instant.now(), dataMember(data));
        }
        return event.bytes();
    }

    /** @return the engine's data as an event's {@code data} member, or null to omit it (QEMU omits empty data). */
    private static Map<String, Object> dataMember(final Map<String, Object> data)
    {
        return data == null || data.isEmpty() ? null : data;
    }

    private void publish(final String name, final Object data)
    {
        Objects.requireNonNull(name, "name");
        synchronized (eventLock)
        {
            final PendingEvent event = new PendingEvent(name, Instant.now(), data);
            for (final Connection connection : connections)
            {
                if (connection.negotiated)
                {
                    connection.enqueue(event, PendingEvent.QUEUED_WEIGHT);
                }
            }
        }
    }

    /**
     * Runs work on the dispatcher thread, serialised with every command, and waits for it; the
     * wiring step uses it to touch state that handlers own. Called on the dispatcher, runs inline.
     *
     * @param work the work.
     * @param <T>  its result type.
     * @return its result.
     * @throws Exception what the work threw.
     */
    public <T> T callOnDispatcher(final Callable<T> work) throws Exception
    {
        if (Thread.currentThread() == dispatcherThread)
        {
            return work.call();
        }
        final Future<T> future = dispatcher.submit(work);
        try
        {
            return future.get();
        }
        catch (final ExecutionException ex)
        {
            if (ex.getCause() instanceof Exception cause)
            {
                throw cause;
            }
            throw ex;
        }
    }

    /** @return whether the calling thread is the dispatcher thread. */
    public boolean isDispatcherThread()
    {
        return Thread.currentThread() == dispatcherThread;
    }

    /** @return the number of open client connections. */
    public int connectionCount()
    {
        return connections.size();
    }

    /** @return completes when the server has closed (after {@code quit} or {@link #close()}). */
    public CompletableFuture<Void> terminated()
    {
        return terminated;
    }

    /**
     * Shuts down as {@code quit} does: emits {@code SHUTDOWN} to negotiated clients, runs the shutdown
     * hook, then closes the server, letting queued output drain. Idempotent; callable from any thread.
     *
     * @param reason the SHUTDOWN event's {@code reason} (QEMU uses {@code host-qmp-quit} for quit,
     *               {@code host-signal} for a signal).
     */
    public void shutdown(final String reason)
    {
        if (!shuttingDown.compareAndSet(false, true))
        {
            return;
        }
        final ObjectNode data = QmpJson.object();
        data.put("guest", false);
        data.put("reason", reason);
        publishEvent("SHUTDOWN", data);
        final Thread thread = new Thread(() ->
        {
            try
            {
                shutdownHook.run();
            }
            catch (final RuntimeException ex)
            {
                LOG.log(System.Logger.Level.WARNING, "QMP shutdown hook failed", ex);
            }
            finally
            {
                close();
            }
        }, "qmp-shutdown");
        thread.setDaemon(false);
        thread.start();
    }

    /** Stops listening, flushes and closes every connection, stops the dispatcher. Idempotent. */
    @Override
    public void close()
    {
        if (!closed.compareAndSet(false, true))
        {
            return;
        }
        synchronized (listeners)
        {
            for (final ServerSocketChannel listener : listeners)
            {
                closeQuietly(listener);
            }
            for (final Path path : unixPaths)
            {
                try
                {
                    Files.deleteIfExists(path);
                }
                catch (final IOException ex)
                {
                    LOG.log(System.Logger.Level.DEBUG, "could not remove " + path, ex);
                }
            }
        }
        // Let commands already queued finish, then flush their replies.
        dispatcher.shutdown();
        if (!isDispatcherThread())
        {
            try
            {
                if (!dispatcher.awaitTermination(10, TimeUnit.SECONDS))
                {
                    dispatcher.shutdownNow();
                }
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                dispatcher.shutdownNow();
            }
        }
        for (final Connection connection : connections)
        {
            connection.closeAfterFlush();
        }
        terminated.complete(null);
    }

    private void checkOpen()
    {
        if (closed.get())
        {
            throw new IllegalStateException("QMP server is closed");
        }
    }

    private void startAcceptor(final ServerSocketChannel channel, final String description)
    {
        final Thread thread = new Thread(() -> acceptLoop(channel), "qmp-accept-" + description);
        thread.setDaemon(true);
        thread.start();
    }

    private void acceptLoop(final ServerSocketChannel channel)
    {
        while (!closed.get())
        {
            final SocketChannel socket;
            try
            {
                socket = channel.accept();
            }
            catch (final ClosedChannelException ex)
            {
                return;
            }
            catch (final IOException ex)
            {
                if (!closed.get())
                {
                    LOG.log(System.Logger.Level.WARNING, "QMP accept failed", ex);
                }
                return;
            }
            final Connection connection = new Connection(socket, connectionIds.incrementAndGet());
            connections.add(connection);
            if (closed.get())
            {
                connection.abort();
                return;
            }
            connection.start();
        }
    }

    private static void closeQuietly(final AutoCloseable closeable)
    {
        try
        {
            closeable.close();
        }
        catch (final Exception ex)
        {
            LOG.log(System.Logger.Level.DEBUG, "close failed", ex);
        }
    }

    // ---- dispatch (dispatcher thread only) -------------------------------------------------------

    /** Called by {@code qmp_capabilities}: the connection becomes negotiated once the reply is queued. */
    void negotiateCurrent() throws QmpError
    {
        final Connection connection = current;
        if (connection.negotiated)
        {
            throw new QmpError(QmpErrorClass.CommandNotFound, "Capabilities negotiation is already complete, command ignored");
        }
        negotiateOnReply = true;
    }

    /** Called by {@code quit}: shut down once the reply is queued. */
    void quitAfterReply()
    {
        afterReply.add(() -> shutdown("host-qmp-quit"));
    }

    ObjectNode versionInfo()
    {
        final ObjectNode version = QmpJson.object();
        final ObjectNode qemu = version.putObject("qemu");
        qemu.put("major", QEMU_MAJOR);
        qemu.put("minor", QEMU_MINOR);
        qemu.put("micro", QEMU_MICRO);
        version.put("package", packageName);
        return version;
    }

    private void dispatch(final Connection connection, final JsonNode message, final QmpError frameError)
    {
        current = connection;
        afterReply.clear();
        negotiateOnReply = false;
        JsonNode id = null;
        ObjectNode reply;
        try
        {
            if (frameError != null)
            {
                throw frameError;
            }
            if (!message.isObject())
            {
                throw QmpError.generic("QMP input must be a JSON object");
            }
            id = message.get("id");
            String command = null;
            ObjectNode arguments = QmpJson.object();
            for (final var member : message.properties())
            {
                switch (member.getKey())
                {
                    case "execute" ->
                    {
                        if (!member.getValue().isTextual())
                        {
                            throw QmpError.generic("QMP input member 'execute' must be a string");
                        }
                        command = member.getValue().textValue();
                    }
                    case "arguments" ->
                    {
                        if (!member.getValue().isObject())
                        {
                            throw QmpError.generic("QMP input member 'arguments' must be an object");
                        }
                        arguments = (ObjectNode) member.getValue();
                    }
                    case "id" ->
                    {
                        // Any JSON value; echoed as is.
                    }
                    default -> throw QmpError.generic("QMP input member '" + member.getKey() + "' is unexpected");
                }
            }
            if (command == null)
            {
                throw QmpError.generic("QMP input lacks member 'execute'");
            }
            final QmpCommand found = registry.lookup(command);
            if (!connection.negotiated && (found == null || !found.name().equals(BuiltinCommands.CAPABILITIES)))
            {
                throw new QmpError(QmpErrorClass.CommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'");
            }
            if (found == null)
            {
                throw new QmpError(QmpErrorClass.CommandNotFound, "The command " + command + " has not been found");
            }
            final ObjectNode validated = found.arguments().validate(arguments);
            final JsonNode result = found.handler().handle(validated);
            reply = QmpJson.object();
            reply.set("return", result == null ? QmpJson.object() : result);
        }
        catch (final QmpError ex)
        {
            afterReply.clear();
            negotiateOnReply = false;
            reply = errorReply(ex);
        }
        catch (final RuntimeException ex)
        {
            afterReply.clear();
            negotiateOnReply = false;
            LOG.log(System.Logger.Level.WARNING, "QMP command failed unexpectedly", ex);
            reply = errorReply(QmpError.generic("Internal error: " + ex));
        }
        if (id != null)
        {
            reply.set("id", id);
        }
        final byte[] bytes = QmpJson.encode(reply);
        if (negotiateOnReply)
        {
            // Atomic with event delivery: every event published after this reply reaches the client.
            synchronized (eventLock)
            {
                connection.enqueue(bytes);
                connection.negotiated = true;
            }
        }
        else
        {
            connection.enqueue(bytes);
        }
        for (final Runnable action : afterReply)
        {
            action.run();
        }
        afterReply.clear();
        current = null;
    }

    private static ObjectNode errorReply(final QmpError error)
    {
        final ObjectNode reply = QmpJson.object();
        final ObjectNode body = reply.putObject("error");
        body.put("class", error.errorClass().name());
        body.put("desc", error.desc());
        return reply;
    }

    // ---- connections -----------------------------------------------------------------------------

    /** One client; state shared between its reader, its writer and the dispatcher under its own monitor. */
    private final class Connection implements QmpFrameSink
    {
        private final SocketChannel socket;
        private final long id;
        private final QmpFrameSplitter splitter;
        private final Semaphore pending;
        /** Encoded messages ({@code byte[]}) and events still to encode ({@link PendingEvent}), in send order. */
        private final ArrayDeque<Object> output = new ArrayDeque<>();
        private long outputBytes;
        private boolean closeRequested;
        private boolean dead;
        /** Written under eventLock on the dispatcher; read by the dispatcher and by event publishers. */
        volatile boolean negotiated;

        Connection(final SocketChannel socket, final long id)
        {
            this.socket = socket;
            this.id = id;
            this.splitter = new QmpFrameSplitter(maxMessageBytes, QmpFrameSplitter.DEFAULT_MAX_DEPTH);
            this.pending = new Semaphore(maxPendingCommands);
        }

        void start()
        {
            final ObjectNode greeting = QmpJson.object();
            final ObjectNode qmp = greeting.putObject("QMP");
            qmp.set("version", versionInfo());
            // No capabilities are offered: out-of-band execution is not implemented.
            qmp.putArray("capabilities");
            enqueue(QmpJson.encode(greeting));
            final Thread writer = new Thread(this::writeLoop, "qmp-write-" + id);
            writer.setDaemon(true);
            writer.start();
            final Thread reader = new Thread(this::readLoop, "qmp-read-" + id);
            reader.setDaemon(true);
            reader.start();
        }

        void enqueue(final byte[] message)
        {
            enqueue(message, message.length);
        }

        /** @param weight what the message counts against {@code maxOutputBytes} until the writer takes it. */
        void enqueue(final Object message, final long weight)
        {
            synchronized (this)
            {
                if (dead || closeRequested)
                {
                    return;
                }
                if (outputBytes + weight > maxOutputBytes)
                {
                    LOG.log(System.Logger.Level.WARNING, "QMP client " + id + " does not read its replies ("
                        + outputBytes + " bytes queued); dropping the connection");
                    abortLocked();
                    return;
                }
                output.addLast(message);
                outputBytes += weight;
                notifyAll();
            }
        }

        synchronized void closeAfterFlush()
        {
            closeRequested = true;
            notifyAll();
        }

        synchronized void abort()
        {
            abortLocked();
        }

        private void abortLocked()
        {
            dead = true;
            output.clear();
            outputBytes = 0;
            notifyAll();
            closeQuietly(socket);
            connections.remove(this);
        }

        private void readLoop()
        {
            final ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
            try
            {
                while (true)
                {
                    buffer.clear();
                    final int n = socket.read(buffer);
                    if (n < 0)
                    {
                        break;
                    }
                    buffer.flip();
                    splitter.feed(buffer, this);
                }
                splitter.endOfStream(this);
            }
            catch (final IOException ex)
            {
                LOG.log(System.Logger.Level.DEBUG, "QMP client " + id + " read ended", ex);
            }
            catch (final RejectedExecutionException ex)
            {
                abort();
                return;
            }
            // Commands already received still run; the connection closes after their replies.
            try
            {
                dispatcher.execute(this::closeAfterFlush);
            }
            catch (final RejectedExecutionException ex)
            {
                closeAfterFlush();
            }
        }

        @Override
        public void onFrame(final byte[] frame)
        {
            JsonNode message = null;
            QmpError error = null;
            try
            {
                message = QmpJson.parse(frame);
            }
            catch (final QmpError ex)
            {
                error = ex;
            }
            submit(message, error);
        }

        @Override
        public void onOverLimit(final QmpFrameSplitter.LimitError error)
        {
            submit(null, QmpError.generic(error.message()));
        }

        private void submit(final JsonNode message, final QmpError error)
        {
            try
            {
                pending.acquire();
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new RejectedExecutionException("interrupted", ex);
            }
            try
            {
                dispatcher.execute(() ->
                {
                    try
                    {
                        dispatch(this, message, error);
                    }
                    finally
                    {
                        pending.release();
                    }
                });
            }
            catch (final RejectedExecutionException ex)
            {
                pending.release();
                throw ex;
            }
        }

        private void writeLoop()
        {
            final List<Object> batch = new ArrayList<>();
            try
            {
                while (true)
                {
                    synchronized (this)
                    {
                        while (output.isEmpty() && !closeRequested && !dead)
                        {
                            wait();
                        }
                        if (dead || (output.isEmpty() && closeRequested))
                        {
                            break;
                        }
                        while (!output.isEmpty() && batch.size() < 1024)
                        {
                            final Object message = output.pollFirst();
                            outputBytes -= message instanceof byte[] bytes ? bytes.length : PendingEvent.QUEUED_WEIGHT;
                            batch.add(message);
                        }
                    }
                    final ByteBuffer[] buffers = new ByteBuffer[batch.size()];
                    for (int i = 0; i < buffers.length; i++)
                    {
                        final Object message = batch.get(i);
                        buffers[i] = ByteBuffer.wrap(
                            message instanceof byte[] bytes ? bytes : ((PendingEvent) message).bytes());
                    }
                    batch.clear();
                    long remaining = 0;
                    for (final ByteBuffer b : buffers)
                    {
                        remaining += b.remaining();
                    }
                    while (remaining > 0)
                    {
                        remaining -= socket.write(buffers);
                    }
                }
            }
            catch (final IOException ex)
            {
                LOG.log(System.Logger.Level.DEBUG, "QMP client " + id + " write ended", ex);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
            abort();
        }
    }

    /**
     * One published event, shared by every connection's queue; any thread may call {@link #bytes()}, which encodes
     * it once, on the first writer that sends it.
     */
    private static final class PendingEvent
    {
        /** What a queued event counts against a connection's output limit before it is encoded. */
        static final long QUEUED_WEIGHT = 512;

        private final String name;
        private final Instant time;
        /** An {@link ObjectNode} the server owns, an engine's unchanging map, or null for no data member. */
        private final Object data;
        private byte[] encoded;

        PendingEvent(final String name, final Instant time, final Object data)
        {
            this.name = name;
            this.time = time;
            this.data = data;
        }

        synchronized byte[] bytes()
        {
            if (encoded == null)
            {
                final ObjectNode event = QmpJson.object();
                final ObjectNode timestamp = event.putObject("timestamp");
                timestamp.put("seconds", time.getEpochSecond());
                timestamp.put("microseconds", time.getNano() / 1000);
                event.put("event", name);
                try
                {
                    if (data != null)
                    {
                        event.set("data", data instanceof ObjectNode node ? node : QmpJson.MAPPER.valueToTree(data));
                    }
                    encoded = QmpJson.encode(event);
                }
                catch (final RuntimeException ex)
                {
                    // An engine bug, not the client's: the other events and replies still go out.
                    LOG.log(System.Logger.Level.WARNING, "QMP event " + name + " could not be encoded; not sent", ex);
                    encoded = new byte[0];
                }
            }
            return encoded;
        }
    }

    /** Server settings; not thread-safe, use from one thread then {@link #build()}. */
    public static final class Builder
    {
        private QmpCommandRegistry registry = new QmpCommandRegistry();
        private String packageName = defaultPackage();
        private int maxMessageBytes = QmpFrameSplitter.DEFAULT_MAX_FRAME_BYTES;
        private int maxPendingCommands = 64;
        private long maxOutputBytes = 64L << 20;
        private Runnable shutdownHook = () -> { };
        private boolean testCommands;

        private Builder()
        {
        }

        /**
         * @param value registry holding the engine's commands (built-ins are added to it).
         * @return this builder.
         */
        public Builder registry(final QmpCommandRegistry value)
        {
            registry = Objects.requireNonNull(value, "registry");
            return this;
        }

        /**
         * @param value free text for the version's {@code package} member.
         * @return this builder.
         */
        public Builder packageName(final String value)
        {
            packageName = Objects.requireNonNull(value, "packageName");
            return this;
        }

        /**
         * @param value largest accepted message in bytes (default 1 MiB).
         * @return this builder.
         */
        public Builder maxMessageBytes(final int value)
        {
            if (value < 64)
            {
                throw new IllegalArgumentException("maxMessageBytes must be at least 64, got " + value);
            }
            maxMessageBytes = value;
            return this;
        }

        /**
         * @param value commands one connection may have waiting for the dispatcher (default 64).
         * @return this builder.
         */
        public Builder maxPendingCommands(final int value)
        {
            if (value < 1)
            {
                throw new IllegalArgumentException("maxPendingCommands must be positive, got " + value);
            }
            maxPendingCommands = value;
            return this;
        }

        /**
         * @param value unread output after which a connection is dropped (default 64 MiB).
         * @return this builder.
         */
        public Builder maxOutputBytes(final long value)
        {
            if (value < 4096)
            {
                throw new IllegalArgumentException("maxOutputBytes must be at least 4096, got " + value);
            }
            maxOutputBytes = value;
            return this;
        }

        /**
         * @param value run on {@code quit} (after SHUTDOWN is sent), before the server closes; the
         *              daemon closes disks and bitmaps here.
         * @return this builder.
         */
        public Builder shutdownHook(final Runnable value)
        {
            shutdownHook = Objects.requireNonNull(value, "shutdownHook");
            return this;
        }

        /**
         * @param value whether to register {@code __dev.tidemark_x-raise-event} (tests only).
         * @return this builder.
         */
        public Builder testCommands(final boolean value)
        {
            testCommands = value;
            return this;
        }

        /** @return the server (not yet listening). */
        public QmpServer build()
        {
            return new QmpServer(this);
        }

        private static String defaultPackage()
        {
            final String version = QmpServer.class.getPackage().getImplementationVersion();
            return "tidemark " + (version == null ? "development build" : version);
        }
    }
}
