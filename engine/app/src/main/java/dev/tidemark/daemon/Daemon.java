package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineEvents;
import dev.tidemark.qmp.QmpCommand;
import dev.tidemark.qmp.QmpCommandRegistry;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpServer;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The Tidemark daemon: a QMP server whose commands drive a {@link BlockGraph}; safe for concurrent use by any
 * number of threads (every graph change runs on the QMP dispatcher thread, including startup commands and the
 * shutdown that closes every disk).
 *
 * <p>Startup configuration is applied by running the same QMP commands a client would send
 * ({@link #execute(String, ObjectNode)}), so {@code --blockdev} and {@code blockdev-add} cannot disagree.
 */
public final class Daemon implements AutoCloseable
{
    private static final System.Logger LOG = System.getLogger(Daemon.class.getName());

    private final QmpServer server;
    private final BlockGraph graph;
    private final CompletableFuture<Void> graphClosed = new CompletableFuture<>();

    private Daemon(final QmpServer server, final BlockGraph graph)
    {
        this.server = server;
        this.graph = graph;
    }

    /**
     * Creates a daemon that does not listen yet.
     *
     * @param bitmapRoot where file nodes keep bitmaps ({@code ROOT/<node>}), or {@code null} for beside each image.
     * @param durable whether disks start in durable mode.
     * @param testCommands whether to register test-only commands (event raising, fault injection).
     * @return the daemon.
     */
    public static Daemon create(final Path bitmapRoot, final boolean durable, final boolean testCommands)
    {
        return create(bitmapRoot, durable, testCommands, BlockDrivers.ALL);
    }

    /** As {@link #create(Path, boolean, boolean)} with other block drivers (tests add one). */
    static Daemon create(final Path bitmapRoot, final boolean durable, final boolean testCommands,
        final Map<String, BlockDriver> drivers)
    {
        final AtomicReference<QmpServer> serverRef = new AtomicReference<>();
        final EngineEvents events = (name, data) ->
        {
            final QmpServer s = serverRef.get();
            if (s != null)
            {
                s.publishEngineEvent(name, data);
            }
        };
        final BlockGraph graph = new BlockGraph(events, bitmapRoot, durable, drivers);
        if (testCommands)
        {
            graph.enableFaultInjection();
        }
        final QmpCommandRegistry registry = new QmpCommandRegistry();
        EngineCommands.register(registry, graph, testCommands);
        CheckpointCommands.register(registry, graph);
        final AtomicReference<Daemon> self = new AtomicReference<>();
        final QmpServer server = QmpServer.builder().registry(registry).testCommands(testCommands)
            .shutdownHook(() -> self.get().closeGraph()).build();
        serverRef.set(server);
        final Daemon daemon = new Daemon(server, graph);
        self.set(daemon);
        return daemon;
    }

    /** @return the block graph, for tests in this package that write through a node's tracked disk. */
    BlockGraph graph()
    {
        return graph;
    }

    /** @return the QMP server. */
    public QmpServer server()
    {
        return server;
    }

    /**
     * Runs a QMP command as if a client sent it (validation included); used for startup options.
     *
     * @param name the command.
     * @param arguments its arguments.
     * @return the command's return value.
     * @throws QmpError as a client would receive it.
     */
    public JsonNode execute(final String name, final ObjectNode arguments) throws QmpError
    {
        final QmpCommand command = server.registry().lookup(name);
        if (command == null)
        {
            throw new QmpError(dev.tidemark.qmp.QmpErrorClass.CommandNotFound, "The command " + name
                + " has not been found");
        }
        try
        {
            return server.callOnDispatcher(() -> command.handler().handle(command.arguments().validate(arguments)));
        }
        catch (final QmpError ex)
        {
            throw ex;
        }
        catch (final Exception ex)
        {
            throw QmpError.generic(String.valueOf(ex.getMessage()));
        }
    }

    /** @param path where to accept QMP clients. */
    public void listenUnix(final Path path) throws IOException
    {
        server.listenUnix(path);
    }

    /** @param address loopback address for QMP clients. @return the bound address. */
    public InetSocketAddress listenTcp(final InetSocketAddress address) throws IOException
    {
        return server.listenTcp(address);
    }

    /** @return completes when the daemon stopped ({@code quit}, a signal or {@link #close()}) and disks closed. */
    public CompletableFuture<Void> terminated()
    {
        return server.terminated().thenCombine(graphClosed, (a, b) -> null);
    }

    /** Shuts down as on SIGTERM: {@code SHUTDOWN} event, disks and bitmaps closed, server closed. */
    public void shutdown(final String reason)
    {
        server.shutdown(reason);
    }

    private void closeGraph()
    {
        try
        {
            server.callOnDispatcher(() ->
            {
                graph.close();
                return null;
            });
        }
        catch (final Exception ex)
        {
            LOG.log(System.Logger.Level.WARNING, "closing disks on the dispatcher failed; closing them here", ex);
            graph.close();
        }
        finally
        {
            graphClosed.complete(null);
        }
    }

    /** Shuts down and waits (at most 60 s) until every disk is closed. */
    @Override
    public void close()
    {
        server.shutdown("host-signal");
        try
        {
            terminated().get(60, TimeUnit.SECONDS);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
        catch (final Exception ex)
        {
            LOG.log(System.Logger.Level.WARNING, "daemon did not stop cleanly", ex);
        }
    }

    /** @return a short description of what the daemon holds, for logs. */
    public Map<String, Object> summary()
    {
        return Map.of("nodes", graph.nodes().size(), "clients", server.connectionCount());
    }
}
