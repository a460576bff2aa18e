package dev.tidemark.qmp;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

/**
 * A QmpServer on a temporary Unix socket with the built-ins, the test event command and fake
 * commands whose schemas mirror real QEMU ones; confine to one test.
 */
final class QmpTestServer implements AutoCloseable
{
    final QmpServer server;
    final Path socket;
    final AtomicInteger shutdownHookRuns = new AtomicInteger();
    private final Path directory;

    QmpTestServer() throws IOException
    {
        this(QmpServer.builder());
    }

    QmpTestServer(final QmpServer.Builder builder) throws IOException
    {
        directory = Files.createTempDirectory("tidemark-qmp");
        socket = directory.resolve("qmp.sock");
        final QmpCommandRegistry registry = new QmpCommandRegistry();
        registerFakes(registry);
        server = builder.registry(registry).testCommands(true).shutdownHook(shutdownHookRuns::incrementAndGet).build();
        server.listenUnix(socket);
    }

    QmpClient client() throws IOException
    {
        return QmpClient.connectUnix(socket);
    }

    QmpClient negotiated() throws IOException, QmpError
    {
        final QmpClient client = client();
        client.negotiate();
        return client;
    }

    /** Fake commands; each returns its validated arguments so tests can see defaults. */
    static void registerFakes(final QmpCommandRegistry registry)
    {
        registry.register("x-test-bitmap-add", QmpType.struct(
                QmpField.required("node", QmpType.str()),
                QmpField.required("name", QmpType.str()),
                QmpField.optional("granularity", QmpType.uint32()),
                QmpField.optional("persistent", QmpType.bool(), QmpJson.MAPPER.getNodeFactory().booleanNode(false)),
                QmpField.optional("disabled", QmpType.bool(), QmpJson.MAPPER.getNodeFactory().booleanNode(false))),
            "Echo, shaped like block-dirty-bitmap-add.", args -> args);
        final QmpStruct inet = QmpType.struct(
            QmpField.required("host", QmpType.str()),
            QmpField.required("port", QmpType.str()),
            QmpField.optional("numeric", QmpType.bool()));
        final QmpStruct unix = QmpType.struct(QmpField.required("path", QmpType.str()));
        final QmpStruct address = QmpType.union(
            List.of(QmpField.required("type", QmpType.enumOf("inet", "unix", "vsock", "fd"))), "type",
            Map.of("inet", List.of(QmpField.required("data", inet)),
                "unix", List.of(QmpField.required("data", unix))));
        registry.register("x-test-nbd-server-start", QmpType.struct(
                QmpField.required("addr", address),
                QmpField.optional("tls-creds", QmpType.str()),
                QmpField.optional("max-connections", QmpType.uint32(), QmpJson.MAPPER.getNodeFactory().numberNode(100))),
            "Echo, shaped like nbd-server-start.", args -> args);
        registry.register("x-test-bitmap-merge", QmpType.struct(
                QmpField.required("node", QmpType.str()),
                QmpField.required("target", QmpType.str()),
                QmpField.required("bitmaps", QmpType.array(QmpType.alternate("BlockDirtyBitmapOrStr",
                    QmpType.str(),
                    QmpType.struct(QmpField.required("node", QmpType.str()), QmpField.required("name", QmpType.str())))))),
            "Echo, shaped like block-dirty-bitmap-merge.", args -> args);
        registry.register("x-test-set-speed", QmpType.struct(
                QmpField.required("device", QmpType.str()),
                QmpField.required("speed", QmpType.int64()),
                QmpField.optional("sync", QmpType.enumOf("full", "top", "none", "incremental", "bitmap")),
                QmpField.optional("x-perf", QmpType.struct(QmpField.optional("max-workers", QmpType.int64()))),
                QmpField.optional("ratio", QmpType.number())),
            "Echo with an int64, an enum, a nested optional object and a number.", args -> args);
        registry.register("x-test-job-missing", QmpType.struct(QmpField.required("id", QmpType.str())),
            "Always DeviceNotActive.", args ->
            {
                throw new QmpError(QmpErrorClass.DeviceNotActive, "Job '" + args.get("id").textValue() + "' not found");
            });
        registry.register("x-test-crash", QmpType.struct(), "A handler bug.", args ->
        {
            throw new IllegalStateException("boom");
        });
        registry.register("x-test-event-from-thread", QmpType.struct(QmpField.required("event", QmpType.str())),
            "Publishes an event from another thread and waits for it before returning, like a job start.",
            args ->
            {
                final QmpServer server = SERVER.get();
                final Thread thread = new Thread(() ->
                {
                    final ObjectNode data = QmpJson.object();
                    data.set("from", TextNode.valueOf("helper"));
                    server.publishEvent(args.get("event").textValue(), data);
                });
                thread.start();
                try
                {
                    thread.join();
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
                return QmpJson.object();
            });
    }

    /** The server the thread-publishing fake uses; set by tests that need it. */
    static final java.util.concurrent.atomic.AtomicReference<QmpServer> SERVER = new java.util.concurrent.atomic.AtomicReference<>();

    @Override
    public void close() throws IOException
    {
        server.close();
        Files.deleteIfExists(socket);
        Files.deleteIfExists(directory);
    }
}
