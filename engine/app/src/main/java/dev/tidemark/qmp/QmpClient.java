package dev.tidemark.qmp;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import dev.tidemark.io.qmp.QmpFrameSink;
import dev.tidemark.io.qmp.QmpFrameSplitter;

/**
 * A QMP client for tests, the CLI and the demo; safe for concurrent use by any number of threads
 * ({@link #execute} calls are serialised; events are collected by a background reader thread).
 *
 * <p>Typical use: {@code try (QmpClient c = QmpClient.connectUnix(path)) { c.negotiate();
 * c.execute("query-version", null); }}. Replies are matched by the {@code id} the client generates;
 * events go to a queue read with {@link #awaitEvent} or {@link #drainEvents}.
 */
public final class QmpClient implements AutoCloseable
{
    private static final JsonNode CLOSED = TextNode.valueOf("connection closed");

    private final SocketChannel socket;
    private final BlockingQueue<JsonNode> replies = new LinkedBlockingQueue<>();
    private final BlockingQueue<JsonNode> events = new LinkedBlockingQueue<>();
    private final List<JsonNode> unmatched = new ArrayList<>();
    private final AtomicLong ids = new AtomicLong();
    private final Object executeLock = new Object();
    private final Thread reader;
    private final JsonNode greeting;
    private volatile Consumer<JsonNode> tap = message -> { };
    private volatile Duration timeout = Duration.ofSeconds(60);
    private volatile boolean closed;

    private QmpClient(final SocketChannel socket, final Duration greetingTimeout) throws IOException
    {
        this.socket = socket;
        this.reader = new Thread(this::readLoop, "qmp-client-read");
        reader.setDaemon(true);
        reader.start();
        final JsonNode first = poll(replies, greetingTimeout);
        if (first == null || first == CLOSED || !first.has("QMP"))
        {
            closeQuietly();
            throw new IOException("no QMP greeting from the server (got " + first + ")");
        }
        this.greeting = first;
    }

    /**
     * @param path Unix socket path.
     * @return a connected client that has read the greeting.
     * @throws IOException if connecting fails or no greeting arrives within 10 s.
     */
    public static QmpClient connectUnix(final Path path) throws IOException
    {
        final SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX);
        try
        {
            channel.connect(UnixDomainSocketAddress.of(path));
        }
        catch (final IOException ex)
        {
            channel.close();
            throw new IOException("cannot connect to QMP socket " + path + ": " + ex.getMessage(), ex);
        }
        return new QmpClient(channel, Duration.ofSeconds(10));
    }

    /**
     * @param host host name or address.
     * @param port TCP port.
     * @return a connected client that has read the greeting.
     * @throws IOException if connecting fails or no greeting arrives within 10 s.
     */
    public static QmpClient connectTcp(final String host, final int port) throws IOException
    {
        final SocketChannel channel = SocketChannel.open();
        try
        {
            channel.connect(new InetSocketAddress(host, port));
        }
        catch (final IOException ex)
        {
            channel.close();
            throw new IOException("cannot connect to QMP at " + host + ":" + port + ": " + ex.getMessage(), ex);
        }
        return new QmpClient(channel, Duration.ofSeconds(10));
    }

    /** @return the server's greeting. */
    public JsonNode greeting()
    {
        return greeting;
    }

    /**
     * @param value how long {@link #execute} waits for a reply (default 60 s).
     */
    public void setTimeout(final Duration value)
    {
        timeout = Objects.requireNonNull(value, "timeout");
    }

    /**
     * @param value called on the reader thread with every message (replies and events) as it arrives.
     */
    public void setTap(final Consumer<JsonNode> value)
    {
        tap = Objects.requireNonNull(value, "tap");
    }

    /**
     * Sends {@code qmp_capabilities} with no capabilities.
     *
     * @throws IOException on connection failure or timeout.
     * @throws QmpError    if the server refuses.
     */
    public void negotiate() throws IOException, QmpError
    {
        execute("qmp_capabilities", null);
    }

    /**
     * Runs one command and waits for its reply.
     *
     * @param command   command name.
     * @param arguments arguments, or null for none.
     * @return the {@code return} value.
     * @throws IOException on connection failure or timeout.
     * @throws QmpError    when the server answers with an error.
     */
    public JsonNode execute(final String command, final ObjectNode arguments) throws IOException, QmpError
    {
        final ObjectNode message = QmpJson.object();
        message.put("execute", command);
        if (arguments != null)
        {
            message.set("arguments", arguments);
        }
        final JsonNode reply = call(message);
        final JsonNode error = reply.get("error");
        if (error != null)
        {
            QmpErrorClass errorClass;
            try
            {
                errorClass = QmpErrorClass.valueOf(error.path("class").asText());
            }
            catch (final IllegalArgumentException ex)
            {
                errorClass = QmpErrorClass.GenericError;
            }
            throw new QmpError(errorClass, error.path("desc").asText());
        }
        return reply.get("return");
    }

    /**
     * Sends a message with a fresh {@code id} (replacing any) and returns the whole reply.
     *
     * @param message a command object.
     * @return the reply object ({@code return} or {@code error}, plus {@code id}).
     * @throws IOException on connection failure or timeout.
     */
    public JsonNode call(final ObjectNode message) throws IOException
    {
        synchronized (executeLock)
        {
            final String id = "tm-" + ids.incrementAndGet();
            final ObjectNode copy = message.deepCopy();
            copy.put("id", id);
            send(QmpJson.encode(copy));
            final long deadline = System.nanoTime() + timeout.toNanos();
            while (true)
            {
                final long left = deadline - System.nanoTime();
                final JsonNode reply = left <= 0 ? null : poll(replies, Duration.ofNanos(left));
                if (reply == null)
                {
                    throw new IOException("no reply to " + message.path("execute").asText() + " within " + timeout);
                }
                if (reply == CLOSED)
                {
                    replies.add(CLOSED);
                    throw new IOException("QMP connection closed before the reply to " + message.path("execute").asText());
                }
                if (reply.path("id").asText("").equals(id) && reply.path("id").isTextual())
                {
                    return reply;
                }
                synchronized (unmatched)
                {
                    unmatched.add(reply);
                }
            }
        }
    }

    /**
     * Sends raw bytes (tests use this for malformed input and pipelining).
     *
     * @param bytes the bytes.
     * @throws IOException on connection failure.
     */
    public void sendRaw(final byte[] bytes) throws IOException
    {
        send(bytes);
    }

    /**
     * @param text text sent as UTF-8.
     * @throws IOException on connection failure.
     */
    public void sendRaw(final String text) throws IOException
    {
        send(text.getBytes(StandardCharsets.UTF_8));
    }

    /**
     * Takes the next non-event message in arrival order (one not consumed by {@link #call}).
     *
     * @param wait how long to wait.
     * @return the message.
     * @throws IOException      if the connection closed.
     * @throws TimeoutException if none arrived in time.
     */
    public JsonNode nextReply(final Duration wait) throws IOException, TimeoutException
    {
        synchronized (unmatched)
        {
            if (!unmatched.isEmpty())
            {
                return unmatched.remove(0);
            }
        }
        final JsonNode reply = poll(replies, wait);
        if (reply == null)
        {
            throw new TimeoutException("no QMP reply within " + wait);
        }
        if (reply == CLOSED)
        {
            replies.add(CLOSED);
            throw new IOException("QMP connection closed");
        }
        return reply;
    }

    /**
     * Waits for an event by name; events of other names that arrive meanwhile stay queued.
     *
     * @param name event name.
     * @param wait how long to wait.
     * @return the event message.
     * @throws TimeoutException if it did not arrive in time.
     */
    public JsonNode awaitEvent(final String name, final Duration wait) throws TimeoutException
    {
        final long deadline = System.nanoTime() + wait.toNanos();
        while (true)
        {
            synchronized (events)
            {
                final Iterator<JsonNode> it = events.iterator();
                while (it.hasNext())
                {
                    final JsonNode event = it.next();
                    if (name.equals(event.path("event").asText()))
                    {
                        it.remove();
                        return event;
                    }
                }
                final long left = deadline - System.nanoTime();
                if (left <= 0)
                {
                    throw new TimeoutException("no " + name + " event within " + wait);
                }
                try
                {
                    events.wait(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)));
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                    throw new TimeoutException("interrupted while waiting for " + name);
                }
            }
        }
    }

    /** @return every event received so far and not yet taken, in arrival order. */
    public List<JsonNode> drainEvents()
    {
        final List<JsonNode> out = new ArrayList<>();
        synchronized (events)
        {
            events.drainTo(out);
        }
        return out;
    }

    /** @return whether the server has closed the connection (or {@link #close()} was called). */
    public boolean isClosed()
    {
        return closed;
    }

    @Override
    public void close() throws IOException
    {
        closed = true;
        socket.close();
        try
        {
            reader.join(5000);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
    }

    private void closeQuietly()
    {
        try
        {
            close();
        }
        catch (final IOException ex)
        {
            closed = true;
        }
    }

    private void send(final byte[] bytes) throws IOException
    {
        synchronized (socket)
        {
            final ByteBuffer buffer = ByteBuffer.wrap(bytes);
            while (buffer.hasRemaining())
            {
                socket.write(buffer);
            }
        }
    }

    private static JsonNode poll(final BlockingQueue<JsonNode> queue, final Duration wait) throws IOException
    {
        try
        {
            return queue.poll(wait.toNanos(), TimeUnit.NANOSECONDS);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting for QMP", ex);
        }
    }

    private void readLoop()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter(Integer.MAX_VALUE / 2, QmpFrameSplitter.DEFAULT_MAX_DEPTH);
        final QmpFrameSink sink = new QmpFrameSink()
        {
            @Override
            public void onFrame(final byte[] frame)
            {
                JsonNode message;
                try
                {
                    message = QmpJson.parse(frame);
                }
                catch (final QmpError ex)
                {
                    message = TextNode.valueOf("unparsable server output: " + ex.desc());
                }
                tap.accept(message);
                if (message.has("event"))
                {
                    synchronized (events)
                    {
                        events.add(message);
                        events.notifyAll();
                    }
                }
                else
                {
                    replies.add(message);
                }
            }

            @Override
            public void onOverLimit(final QmpFrameSplitter.LimitError error)
            {
                replies.add(TextNode.valueOf(error.message()));
            }
        };
        final ByteBuffer buffer = ByteBuffer.allocate(64 * 1024);
        try
        {
            while (socket.read(buffer.clear()) >= 0)
            {
                buffer.flip();
                splitter.feed(buffer, sink);
            }
        }
        catch (final IOException ex)
        {
            // Closed by us or by the server: either way the connection is over.
        }
        closed = true;
        replies.add(CLOSED);
        synchronized (events)
        {
            events.notifyAll();
        }
    }
}
