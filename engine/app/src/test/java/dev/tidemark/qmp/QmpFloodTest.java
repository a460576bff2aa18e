package dev.tidemark.qmp;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 60, unit = TimeUnit.SECONDS)
class QmpFloodTest
{
    private static final Duration WAIT = Duration.ofSeconds(20);

    @Test
    void fiveThousandPipelinedCommandsAreAnsweredInOrder() throws Exception
    {
        try (QmpTestServer test = new QmpTestServer(QmpServer.builder().maxPendingCommands(8));
             QmpClient client = test.negotiated())
        {
            final int count = 5000;
            final StringBuilder batch = new StringBuilder();
            for (int i = 0; i < count; i++)
            {
                batch.append(i % 7 == 3
                    ? "{\"execute\":\"no-such-command\",\"id\":" + i + "}"
                    : "{\"execute\":\"query-version\",\"id\":" + i + "}");
            }
            final long start = System.nanoTime();
            client.sendRaw(batch.toString());
            for (int i = 0; i < count; i++)
            {
                final JsonNode reply = client.nextReply(WAIT);
                assertThat(reply.get("id").asInt()).isEqualTo(i);
                assertThat(reply.has(i % 7 == 3 ? "error" : "return")).as("reply %d: %s", i, reply).isTrue();
            }
            System.out.printf("QMP flood: %d pipelined commands answered in %.1f ms%n", count,
                (System.nanoTime() - start) / 1e6);
        }
    }

    @Test
    void oversizedAndOverNestedMessagesGetOneErrorAndTheConnectionGoesOn() throws Exception
    {
        try (QmpTestServer test = new QmpTestServer(QmpServer.builder().maxMessageBytes(4096));
             QmpClient big = test.negotiated(); QmpClient bystander = test.negotiated())
        {
            final String payload = "x".repeat(100_000);
            big.sendRaw("{\"execute\":\"x-test-bitmap-add\",\"arguments\":{\"node\":\"" + payload + "\",\"name\":\"}{\"},\"id\":1}"
                + "{\"execute\":\"query-version\",\"id\":2}");
            final JsonNode error = big.nextReply(WAIT);
            assertThat(error.at("/error/class").asText()).isEqualTo("GenericError");
            assertThat(error.at("/error/desc").asText()).isEqualTo(
                "Message too large (limit 4096 bytes); the rest of the message is discarded");
            assertThat(error.has("id")).isFalse();
            assertThat(big.nextReply(WAIT).get("id").asInt()).isEqualTo(2);
            assertThat(bystander.execute("query-version", null).has("qemu")).isTrue();

            big.sendRaw("[".repeat(1500) + "]".repeat(1500) + "{\"execute\":\"query-version\",\"id\":3}");
            assertThat(big.nextReply(WAIT).at("/error/desc").asText()).startsWith("JSON nesting depth limit exceeded");
            assertThat(big.nextReply(WAIT).get("id").asInt()).isEqualTo(3);
        }
    }

    @Test
    void aClientThatNeverReadsIsDroppedAndOthersKeepWorking() throws Exception
    {
        try (QmpTestServer test = new QmpTestServer(QmpServer.builder().maxOutputBytes(64 * 1024));
             QmpClient steady = test.negotiated();
             SocketChannel deaf = SocketChannel.open(StandardProtocolFamily.UNIX))
        {
            deaf.connect(UnixDomainSocketAddress.of(test.socket));
            final StringBuilder flood = new StringBuilder("{\"execute\":\"qmp_capabilities\"}");
            for (int i = 0; i < 4000; i++)
            {
                flood.append("{\"execute\":\"query-commands\"}");
            }
            final Thread writer = new Thread(() ->
            {
                try
                {
                    QmpServerConformanceTest.write(deaf, flood.toString());
                }
                catch (final IOException ex)
                {
                    // Expected once the server drops us.
                }
            });
            writer.start();
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (test.server.connectionCount() > 1 && System.nanoTime() < deadline)
            {
                assertThat(steady.execute("query-version", null).has("qemu")).isTrue();
                Thread.sleep(5);
            }
            assertThat(test.server.connectionCount()).isEqualTo(1);
            assertThat(steady.execute("query-version", null).has("qemu")).isTrue();
            writer.join(10_000);
        }
    }

    @Test
    void manyClientsWithConcurrentEventsSeeTheirRepliesAndEveryEventInOneOrder() throws Exception
    {
        final long seed = System.nanoTime();
        final int clients = 8;
        final int commandsPerClient = 300;
        final int events = 400;
        try (QmpTestServer test = new QmpTestServer())
        {
            final List<QmpClient> connected = new ArrayList<>();
            for (int i = 0; i < clients; i++)
            {
                connected.add(test.negotiated());
            }
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final CountDownLatch go = new CountDownLatch(1);
            final List<Thread> threads = new ArrayList<>();
            for (int c = 0; c < clients; c++)
            {
                final QmpClient client = connected.get(c);
                final SplittableRandom random = new SplittableRandom(seed + c);
                threads.add(new Thread(() ->
                {
                    try
                    {
                        go.await();
                        for (int i = 0; i < commandsPerClient; i++)
                        {
                            final String name = "c" + random.nextInt(1_000_000);
                            final ObjectNode args = QmpJson.object();
                            args.put("node", name);
                            if (random.nextInt(4) == 0)
                            {
                                args.put("granularity", "bad");
                                try
                                {
                                    client.execute("x-test-bitmap-add", args.put("name", "b"));
                                    throw new AssertionError("schema error expected");
                                }
                                catch (final QmpError expected)
                                {
                                    assertThat(expected.desc()).isEqualTo("Parameter 'granularity' expects uint64");
                                }
                            }
                            else
                            {
                                args.put("name", "b" + i);
                                final JsonNode echo = client.execute("x-test-bitmap-add", args);
                                assertThat(echo.get("node").asText()).isEqualTo(name);
                                assertThat(echo.get("name").asText()).isEqualTo("b" + i);
                            }
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                }));
            }
            threads.add(new Thread(() ->
            {
                try
                {
                    go.await();
                    for (int i = 0; i < events; i++)
                    {
                        final ObjectNode data = QmpJson.object();
                        data.put("n", i);
                        test.server.publishEvent("TEST_EVENT", data);
                    }
                }
                catch (final Throwable ex)
                {
                    failure.compareAndSet(null, ex);
                }
            }));
            threads.forEach(Thread::start);
            go.countDown();
            for (final Thread thread : threads)
            {
                thread.join(TimeUnit.SECONDS.toMillis(45));
            }
            if (failure.get() != null)
            {
                throw new AssertionError("seed " + seed, failure.get());
            }
            for (final QmpClient client : connected)
            {
                for (int i = 0; i < events; i++)
                {
                    final JsonNode event = client.awaitEvent("TEST_EVENT", WAIT);
                    assertThat(event.at("/data/n").asInt()).as("seed %d", seed).isEqualTo(i);
                }
                client.close();
            }
        }
    }

    @Test
    void everyEventPublishedAfterTheNegotiationReplyIsDelivered() throws Exception
    {
        // Regression: the negotiated flag must flip atomically with queuing the reply.
        try (QmpTestServer test = new QmpTestServer())
        {
            for (int round = 0; round < 100; round++)
            {
                try (QmpClient client = test.negotiated())
                {
                    final ObjectNode data = QmpJson.object();
                    data.put("round", round);
                    test.server.publishEvent("AFTER_NEGOTIATION", data);
                    assertThat(client.awaitEvent("AFTER_NEGOTIATION", Duration.ofSeconds(5)).at("/data/round").asInt())
                        .isEqualTo(round);
                }
            }
        }
    }
}
