package dev.tidemark.qmp;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class QmpServerConformanceTest
{
    private static final Duration WAIT = Duration.ofSeconds(10);

    private QmpTestServer test;

    @BeforeEach
    void start() throws IOException
    {
        test = new QmpTestServer();
        QmpTestServer.SERVER.set(test.server);
    }

    @AfterEach
    void stop() throws IOException
    {
        test.close();
    }

    private static JsonNode roundTrip(final QmpClient client, final String raw) throws Exception
    {
        client.sendRaw(raw);
        return client.nextReply(WAIT);
    }

    private static void assertError(final JsonNode reply, final String errorClass, final String desc)
    {
        assertThat(reply.path("error").path("class").asText()).as("class of %s", reply).isEqualTo(errorClass);
        assertThat(reply.path("error").path("desc").asText()).as("desc of %s", reply).isEqualTo(desc);
    }

    @Test
    void greetingHasVersionPackageAndNoCapabilities() throws Exception
    {
        try (QmpClient client = test.client())
        {
            final JsonNode qmp = client.greeting().get("QMP");
            assertThat(qmp.at("/version/qemu/major").asInt()).isEqualTo(9);
            assertThat(qmp.at("/version/qemu/minor").asInt()).isEqualTo(2);
            assertThat(qmp.at("/version/qemu/micro").asInt()).isEqualTo(0);
            assertThat(qmp.at("/version/package").asText()).startsWith("tidemark");
            assertThat(qmp.get("capabilities").isArray()).isTrue();
            assertThat(qmp.get("capabilities")).isEmpty();
        }
    }

    @Test
    void capabilitiesModeAllowsOnlyNegotiation() throws Exception
    {
        try (QmpClient client = test.client())
        {
            assertError(roundTrip(client, "{\"execute\":\"query-version\",\"id\":1}"), "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'");
            assertError(roundTrip(client, "{\"execute\":\"no-such\"}"), "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'");
            assertError(roundTrip(client, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}"),
                "GenericError", "Capability oob not available");
            assertError(roundTrip(client, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"foo\"]}}"),
                "GenericError", "Parameter 'null' does not accept value 'foo'");
            assertError(roundTrip(client, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[1]}}"),
                "GenericError", "Invalid parameter type for 'enable[0]', expected: string");
            // Failed attempts left the connection in capabilities mode.
            assertError(roundTrip(client, "{\"execute\":\"query-version\"}"), "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'");
            final JsonNode ok = roundTrip(client, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]},\"id\":\"n\"}");
            assertThat(ok.get("return")).isEmpty();
            assertThat(ok.get("id").asText()).isEqualTo("n");
            final JsonNode again = roundTrip(client, "{\"execute\":\"qmp_capabilities\",\"id\":{\"a\":1}}");
            assertError(again, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");
            assertThat(again.get("id")).isEqualTo(QmpJson.MAPPER.readTree("{\"a\":1}"));
            assertThat(roundTrip(client, "{\"execute\":\"query-version\"}").at("/return/qemu/major").asInt()).isEqualTo(9);
        }
    }

    @Test
    void idIsEchoedWhateverItsJsonType() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            for (final String id : List.of("\"s\"", "7", "-1.5", "{\"a\":[1,{\"b\":null}]}", "[1,\"x\",true]", "null",
                "123456789012345678901234567890", "\"\u00e9\u20ac\uD83D\uDE00\""))
            {
                final JsonNode reply = roundTrip(client, "{\"execute\":\"query-version\",\"id\":" + id + "}");
                assertThat(reply.has("return")).isTrue();
                assertThat(reply.get("id")).as("id %s", id).isEqualTo(QmpJson.MAPPER.readTree(id));
            }
            final JsonNode failed = roundTrip(client, "{\"execute\":\"nope\",\"id\":[\"x\"]}");
            assertError(failed, "CommandNotFound", "The command nope has not been found");
            assertThat(failed.get("id")).isEqualTo(QmpJson.MAPPER.readTree("[\"x\"]"));
            assertThat(roundTrip(client, "{\"execute\":\"query-version\"}").has("id")).isFalse();
        }
    }

    @Test
    void malformedMessagesGetQemuTextsAndTheConnectionContinues() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            assertError(roundTrip(client, "[1,2]"), "GenericError", "QMP input must be a JSON object");
            assertError(roundTrip(client, "\"abc\""), "GenericError", "QMP input must be a JSON object");
            assertError(roundTrip(client, "{\"execute\":5}"), "GenericError", "QMP input member 'execute' must be a string");
            assertError(roundTrip(client, "{\"execute\":\"query-version\",\"arguments\":[]}"), "GenericError",
                "QMP input member 'arguments' must be an object");
            final JsonNode unexpected = roundTrip(client, "{\"execute\":\"query-version\",\"id\":\"x\",\"foo\":1}");
            assertError(unexpected, "GenericError", "QMP input member 'foo' is unexpected");
            assertThat(unexpected.get("id").asText()).isEqualTo("x");
            assertError(roundTrip(client, "{\"exec-oob\":\"query-version\"}"), "GenericError",
                "QMP input member 'exec-oob' is unexpected");
            final JsonNode lacks = roundTrip(client, "{\"id\":3}");
            assertError(lacks, "GenericError", "QMP input lacks member 'execute'");
            assertThat(lacks.get("id").asInt()).isEqualTo(3);

            for (final String bad : List.of("{\"execute\":\"query-version\" \"id\":1}", "}", "abc ",
                "{\"execute\":\"query-version\",\"execute\":\"quit\"}", "{\"id\":\"a\n"))
            {
                final JsonNode reply = roundTrip(client, bad);
                assertThat(reply.path("error").path("class").asText()).as("reply to %s", bad).isEqualTo("GenericError");
                assertThat(reply.path("error").path("desc").asText()).as("reply to %s", bad).startsWith("JSON parse error, ");
                assertThat(reply.has("id")).isFalse();
            }
            final byte[] invalidUtf8 = {'{', '"', 'i', 'd', '"', ':', '"', (byte) 0xff, (byte) 0xfe, '"', '}'};
            client.sendRaw(invalidUtf8);
            assertThat(client.nextReply(WAIT).at("/error/desc").asText()).startsWith("JSON parse error, ");
            // Still alive and in order.
            assertThat(roundTrip(client, "{'execute':'query-version','id':'single'}").get("id").asText()).isEqualTo("single");
        }
    }

    @Test
    void schemaErrorsUseQemuTexts() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            final String[][] cases = {
                {"x-test-bitmap-add", "{\"node\":\"d0\"}", "Parameter 'name' is missing"},
                {"x-test-bitmap-add", "{\"zz\":1}", "Parameter 'node' is missing"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"zz\":1}", "Parameter 'zz' is unexpected"},
                {"x-test-bitmap-add", "{\"node\":1,\"name\":\"b\"}", "Invalid parameter type for 'node', expected: string"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"persistent\":\"yes\"}",
                    "Invalid parameter type for 'persistent', expected: boolean"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"granularity\":\"a\"}", "Parameter 'granularity' expects uint64"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"granularity\":-1}", "Parameter 'granularity' expects uint32_t"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"granularity\":4294967296}",
                    "Parameter 'granularity' expects uint32_t"},
                {"x-test-bitmap-add", "{\"node\":\"d0\",\"name\":\"b\",\"granularity\":null}", "Parameter 'granularity' expects uint64"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":\"a\"}", "Invalid parameter type for 'speed', expected: integer"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1.5}", "Invalid parameter type for 'speed', expected: integer"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":18446744073709551615}",
                    "Invalid parameter type for 'speed', expected: integer"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1,\"sync\":\"bogus\"}", "Parameter 'sync' does not accept value 'bogus'"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1,\"sync\":5}", "Invalid parameter type for 'sync', expected: string"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1,\"x-perf\":[]}", "Invalid parameter type for 'x-perf', expected: object"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1,\"x-perf\":{\"max-workers\":true}}",
                    "Invalid parameter type for 'x-perf.max-workers', expected: integer"},
                {"x-test-set-speed", "{\"device\":\"j\",\"speed\":1,\"ratio\":\"x\"}", "Invalid parameter type for 'ratio', expected: number"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"foo\",\"data\":{}}}", "Parameter 'type' does not accept value 'foo'"},
                {"x-test-nbd-server-start", "{\"addr\":{\"data\":{}}}", "Parameter 'addr.type' is missing"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":5}}", "Invalid parameter type for 'addr.type', expected: string"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"inet\"}}", "Parameter 'addr.data' is missing"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"inet\",\"data\":5}}",
                    "Invalid parameter type for 'addr.data', expected: object"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"x\"}}}", "Parameter 'addr.data.port' is missing"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"x\",\"port\":\"1\",\"zz\":1}}}",
                    "Parameter 'addr.data.zz' is unexpected"},
                {"x-test-nbd-server-start", "{\"addr\":{\"type\":\"unix\",\"data\":{\"path\":\"/s\"}},\"max-connections\":-5}",
                    "Parameter 'max-connections' expects uint32_t"},
                {"x-test-bitmap-merge", "{\"node\":\"n\",\"target\":\"t\",\"bitmaps\":\"z\"}", "Invalid parameter type for 'bitmaps', expected: array"},
                {"x-test-bitmap-merge", "{\"node\":\"n\",\"target\":\"t\",\"bitmaps\":[5]}",
                    "Invalid parameter type for 'null', expected: BlockDirtyBitmapOrStr"},
                {"x-test-bitmap-merge", "{\"node\":\"n\",\"target\":\"t\",\"bitmaps\":[\"a\",{\"node\":\"a\"}]}",
                    "Parameter 'bitmaps[1].name' is missing"},
                {"query-version", "{\"x\":1}", "Parameter 'x' is unexpected"},
            };
            for (final String[] c : cases)
            {
                final JsonNode reply = roundTrip(client, "{\"execute\":\"" + c[0] + "\",\"arguments\":" + c[1] + ",\"id\":\"s\"}");
                assertError(reply, "GenericError", c[2]);
                assertThat(reply.get("id").asText()).isEqualTo("s");
            }
        }
    }

    @Test
    void validArgumentsArriveNormalisedWithDefaults() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            final JsonNode add = client.execute("x-test-bitmap-add",
                (com.fasterxml.jackson.databind.node.ObjectNode) QmpJson.MAPPER.readTree("{\"name\":\"b\",\"node\":\"d0\",\"granularity\":65536}"));
            assertThat(QmpJson.compact(add)).isEqualTo(
                "{\"node\":\"d0\",\"name\":\"b\",\"granularity\":65536,\"persistent\":false,\"disabled\":false}");
            final JsonNode start = client.execute("x-test-nbd-server-start",
                (com.fasterxml.jackson.databind.node.ObjectNode) QmpJson.MAPPER.readTree(
                    "{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"127.0.0.1\",\"port\":\"10809\"}}}"));
            assertThat(start.at("/addr/data/port").asText()).isEqualTo("10809");
            assertThat(start.get("max-connections").asInt()).isEqualTo(100);
            assertThat(start.has("tls-creds")).isFalse();
            final JsonNode merge = client.execute("x-test-bitmap-merge",
                (com.fasterxml.jackson.databind.node.ObjectNode) QmpJson.MAPPER.readTree(
                    "{\"node\":\"n\",\"target\":\"t\",\"bitmaps\":[\"a\",{\"node\":\"m\",\"name\":\"b\"}]}"));
            assertThat(merge.at("/bitmaps/1/name").asText()).isEqualTo("b");
            assertThatThrownBy(() -> client.execute("x-test-job-missing",
                (com.fasterxml.jackson.databind.node.ObjectNode) QmpJson.MAPPER.readTree("{\"id\":\"j9\"}")))
                .isInstanceOfSatisfying(QmpError.class, e ->
                {
                    assertThat(e.errorClass()).isEqualTo(QmpErrorClass.DeviceNotActive);
                    assertThat(e.desc()).isEqualTo("Job 'j9' not found");
                });
            assertThatThrownBy(() -> client.execute("x-test-crash", null)).isInstanceOfSatisfying(QmpError.class,
                e -> assertThat(e.desc()).startsWith("Internal error: java.lang.IllegalStateException: boom"));
            assertThat(client.execute("query-version", null).at("/qemu/minor").asInt()).isEqualTo(2);
        }
    }

    @Test
    void queryCommandsListsTheRegistry() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            final List<String> names = new ArrayList<>();
            client.execute("query-commands", null).forEach(entry -> names.add(entry.get("name").asText()));
            assertThat(names).contains("qmp_capabilities", "query-version", "query-commands", "quit",
                "__dev.tidemark_x-raise-event", "x-test-bitmap-add");
            assertThat(names).doesNotHaveDuplicates();
        }
    }

    @Test
    void framingSeveralPerPacketSplitPacketsCrlfAndAsciiOutput() throws Exception
    {
        try (SocketChannel raw = SocketChannel.open(StandardProtocolFamily.UNIX))
        {
            raw.connect(UnixDomainSocketAddress.of(test.socket));
            final RawReader reader = new RawReader(raw);
            final String greeting = reader.line();
            assertThat(greeting).startsWith("{\"QMP\": {\"version\": {\"qemu\": {");
            // Three messages in one write, no separators between the first two.
            write(raw, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-version\",\"id\":1}\n"
                + "{\"execute\":\"query-version\",\"id\":\"\u00e9\u20ac\uD83D\uDE00\"}");
            assertThat(reader.line()).isEqualTo("{\"return\": {}}");
            assertThat(reader.line()).contains("\"id\": 1}");
            assertThat(reader.line()).endsWith("\"id\": \"\\u00E9\\u20AC\\uD83D\\uDE00\"}");
            // One message dribbled a byte at a time.
            final byte[] slow = "{\"execute\":\"query-version\",\"id\":\"}{\\\"\"}".getBytes(StandardCharsets.UTF_8);
            for (final byte b : slow)
            {
                write(raw, new byte[] {b});
            }
            assertThat(reader.line()).endsWith("\"id\": \"}{\\\"\"}");
            assertThat(reader.allAsciiWithCrlf).isTrue();
        }
    }

    @Test
    void eventsRaisedByACommandPrecedeItsReturnAndCarryTimestamps() throws Exception
    {
        try (QmpClient watcher = test.negotiated(); QmpClient silent = test.client(); QmpClient client = test.negotiated())
        {
            final Instant before = Instant.now();
            client.sendRaw("{\"execute\":\"__dev.tidemark_x-raise-event\",\"arguments\":{\"event\":\"JOB_STATUS_CHANGE\","
                + "\"data\":{\"id\":\"j\",\"status\":\"created\"},\"count\":3},\"id\":\"r\"}"
                + "{\"execute\":\"x-test-event-from-thread\",\"arguments\":{\"event\":\"BLOCK_JOB_PENDING\"},\"id\":\"t\"}");
            final List<JsonNode> order = new ArrayList<>();
            client.setTap(order::add);
            final JsonNode first = client.nextReply(WAIT);
            final JsonNode second = client.nextReply(WAIT);
            assertThat(first.get("id").asText()).isEqualTo("r");
            assertThat(first.at("/return/raised").asInt()).isEqualTo(3);
            assertThat(second.get("id").asText()).isEqualTo("t");
            final List<JsonNode> events = client.drainEvents();
            assertThat(events).hasSize(4);
            for (int i = 0; i < 3; i++)
            {
                final JsonNode event = events.get(i);
                assertThat(event.get("event").asText()).isEqualTo("JOB_STATUS_CHANGE");
                assertThat(event.at("/data/seq").asInt()).isEqualTo(i);
                assertThat(event.at("/data/status").asText()).isEqualTo("created");
                final long seconds = event.at("/timestamp/seconds").asLong();
                final long micros = event.at("/timestamp/microseconds").asLong();
                assertThat(seconds).isBetween(before.getEpochSecond(), Instant.now().getEpochSecond());
                assertThat(micros).isBetween(0L, 999_999L);
            }
            assertThat(events.get(3).get("event").asText()).isEqualTo("BLOCK_JOB_PENDING");
            assertThat(events.get(3).at("/data/from").asText()).isEqualTo("helper");
            // The watcher saw the same events; the client that never negotiated saw none.
            for (final String name : List.of("JOB_STATUS_CHANGE", "JOB_STATUS_CHANGE", "JOB_STATUS_CHANGE", "BLOCK_JOB_PENDING"))
            {
                assertThat(watcher.awaitEvent(name, WAIT).get("event").asText()).isEqualTo(name);
            }
            assertThat(silent.drainEvents()).isEmpty();
            silent.negotiate();
            assertThat(silent.drainEvents()).isEmpty();
        }
    }

    @Test
    void eventsComeBeforeTheReturnOnTheWire() throws Exception
    {
        try (SocketChannel raw = SocketChannel.open(StandardProtocolFamily.UNIX))
        {
            raw.connect(UnixDomainSocketAddress.of(test.socket));
            final RawReader reader = new RawReader(raw);
            reader.line();
            write(raw, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"__dev.tidemark_x-raise-event\","
                + "\"arguments\":{\"event\":\"BLOCK_JOB_READY\",\"count\":2},\"id\":9}");
            assertThat(reader.line()).isEqualTo("{\"return\": {}}");
            final String e1 = reader.line();
            final String e2 = reader.line();
            final String ret = reader.line();
            assertThat(e1).startsWith("{\"timestamp\": {\"seconds\": ").contains("\"event\": \"BLOCK_JOB_READY\"", "\"seq\": 0");
            assertThat(e2).contains("\"seq\": 1");
            assertThat(ret).isEqualTo("{\"return\": {\"raised\": 2}, \"id\": 9}");
        }
    }

    @Test
    void eventWithoutDataOmitsTheMember() throws Exception
    {
        try (QmpClient client = test.negotiated())
        {
            test.server.publishEvent("RESUME", null);
            final JsonNode event = client.awaitEvent("RESUME", WAIT);
            assertThat(event.has("data")).isFalse();
            assertThat(event.has("timestamp")).isTrue();
        }
    }

    @Test
    void quitRepliesThenSendsShutdownRunsTheHookAndCloses() throws Exception
    {
        try (QmpClient other = test.negotiated(); QmpClient client = test.negotiated())
        {
            final JsonNode reply = roundTrip(client, "{\"execute\":\"quit\",\"id\":\"q\"}");
            assertThat(reply.get("return")).isEmpty();
            assertThat(reply.get("id").asText()).isEqualTo("q");
            final JsonNode shutdown = other.awaitEvent("SHUTDOWN", WAIT);
            assertThat(QmpJson.compact(shutdown.get("data"))).isEqualTo("{\"guest\":false,\"reason\":\"host-qmp-quit\"}");
            client.awaitEvent("SHUTDOWN", WAIT);
            test.server.terminated().get(10, TimeUnit.SECONDS);
            assertThat(test.shutdownHookRuns.get()).isEqualTo(1);
            assertThatThrownBy(() -> client.nextReply(WAIT)).isInstanceOf(IOException.class);
            assertThatThrownBy(() -> other.nextReply(WAIT)).isInstanceOf(IOException.class);
            assertThat(other.isClosed()).isTrue();
        }
    }

    @Test
    void tcpOnLoopbackWorksAndOtherAddressesAreRefused() throws Exception
    {
        final InetSocketAddress bound = test.server.listenTcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        try (QmpClient client = QmpClient.connectTcp(bound.getHostString(), bound.getPort()))
        {
            client.negotiate();
            assertThat(client.execute("query-version", null).at("/qemu/major").asInt()).isEqualTo(9);
        }
        assertThatThrownBy(() -> test.server.listenTcp(new InetSocketAddress("0.0.0.0", 0)))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("loopback");
    }

    @Test
    void aClientLeavingMidMessageDoesNotDisturbOthers() throws Exception
    {
        try (QmpClient steady = test.negotiated())
        {
            for (int i = 0; i < 20; i++)
            {
                try (QmpClient leaving = test.client())
                {
                    leaving.sendRaw("{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-ver");
                }
            }
            assertThat(steady.execute("query-version", null).has("qemu")).isTrue();
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (test.server.connectionCount() > 1 && System.nanoTime() < deadline)
            {
                Thread.sleep(10);
            }
            assertThat(test.server.connectionCount()).isEqualTo(1);
        }
    }

    @Test
    void callOnDispatcherRunsSerialisedWithCommandsAndPropagatesErrors() throws Exception
    {
        assertThat(test.server.isDispatcherThread()).isFalse();
        assertThat(test.server.callOnDispatcher(test.server::isDispatcherThread)).isTrue();
        assertThat(test.server.callOnDispatcher(() -> test.server.callOnDispatcher(() -> 42))).isEqualTo(42);
        assertThatThrownBy(() -> test.server.callOnDispatcher(() ->
        {
            throw QmpError.generic("nope");
        })).isInstanceOfSatisfying(QmpError.class, e -> assertThat(e.desc()).isEqualTo("nope"));
    }

    static void write(final SocketChannel channel, final String text) throws IOException
    {
        write(channel, text.getBytes(StandardCharsets.UTF_8));
    }

    static void write(final SocketChannel channel, final byte[] bytes) throws IOException
    {
        final ByteBuffer buffer = ByteBuffer.wrap(bytes);
        while (buffer.hasRemaining())
        {
            channel.write(buffer);
        }
    }

    /** Reads CRLF-terminated lines and checks every byte is ASCII; confine to the test thread. */
    static final class RawReader
    {
        private final SocketChannel channel;
        private final ByteBuffer buffer = ByteBuffer.allocate(1 << 16);
        private final StringBuilder pending = new StringBuilder();
        boolean allAsciiWithCrlf = true;

        RawReader(final SocketChannel channel)
        {
            this.channel = channel;
            buffer.flip();
        }

        String line() throws IOException
        {
            while (true)
            {
                final int lf = pending.indexOf("\n");
                if (lf >= 0)
                {
                    if (lf == 0 || pending.charAt(lf - 1) != '\r')
                    {
                        allAsciiWithCrlf = false;
                    }
                    final String line = pending.substring(0, Math.max(0, lf - 1));
                    pending.delete(0, lf + 1);
                    return line;
                }
                buffer.clear();
                if (channel.read(buffer) < 0)
                {
                    throw new IOException("EOF");
                }
                buffer.flip();
                while (buffer.hasRemaining())
                {
                    final byte b = buffer.get();
                    if (b < 0)
                    {
                        allAsciiWithCrlf = false;
                    }
                    pending.append((char) (b & 0xFF));
                }
            }
        }
    }
}
