package dev.tidemark.qmp;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.io.testing.ExternalTools;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Interoperability: a Python standard-library client written as for qemu-storage-daemon, and a
 * side-by-side comparison with a real qemu-storage-daemon. Both tools are required.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class QmpInteropTest
{
    private static final Duration WAIT = Duration.ofSeconds(10);

    /** How a reply is compared between the two servers. */
    private enum Compare
    {
        /** The whole reply must be equal. */
        EXACT,
        /** Same keys and types throughout (values such as versions may differ). */
        SHAPE,
        /** GenericError without id whose desc starts with "JSON parse error, " on both. */
        PARSE_ERROR
    }

    private record Probe(String message, Compare compare)
    {
    }

    private static final List<Probe> PROBES = List.of(
        new Probe("{\"execute\":\"query-version\",\"id\":1}", Compare.EXACT),
        new Probe("{\"execute\":\"no-such\"}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"foo\"]}}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[1]}}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":\"oob\"}}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"zz\":1}}", Compare.EXACT),
        new Probe("{\"exec-oob\":\"qmp_capabilities\"}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"id\":\"neg\"}", Compare.EXACT),
        new Probe("{\"execute\":\"qmp_capabilities\",\"id\":{\"a\":1}}", Compare.EXACT),
        new Probe("[1,2]", Compare.EXACT),
        new Probe("\"abc\"", Compare.EXACT),
        new Probe("{\"execute\":5}", Compare.EXACT),
        new Probe("{\"execute\":\"query-version\",\"arguments\":[]}", Compare.EXACT),
        new Probe("{\"execute\":\"query-version\",\"id\":\"x\",\"foo\":1}", Compare.EXACT),
        new Probe("{\"execute\":\"query-version\",\"control\":{}}", Compare.EXACT),
        new Probe("{}", Compare.EXACT),
        new Probe("{\"id\":3}", Compare.EXACT),
        new Probe("{\"execute\":\"nosuch\",\"id\":5}", Compare.EXACT),
        new Probe("{\"execute\":\"query-version\",\"arguments\":{\"x\":1},\"id\":[1,\"x\",true,null,{}]}", Compare.EXACT),
        new Probe("{\"execute\":\"query-version\",\"id\":\"\u00e9\u20ac\"}", Compare.SHAPE),
        new Probe("{'execute':'query-version','id':'single'}", Compare.SHAPE),
        new Probe("{\"execute\":\"query-version\",\"id\":null}", Compare.SHAPE),
        new Probe("{\"execute\":\"query-version\" \"id\":1}", Compare.PARSE_ERROR),
        new Probe("}", Compare.PARSE_ERROR),
        new Probe("{\"execute\":\"query-version\",\"execute\":\"zz\"}", Compare.PARSE_ERROR),
        new Probe("{\"execute\":\"query-commands\",\"id\":\"qc\"}", Compare.SHAPE),
        new Probe("{\"execute\":\"quit\",\"id\":\"q\"}", Compare.EXACT));

    @Test
    void pythonClientWorksAgainstTidemark() throws Exception
    {
        try (QmpTestServer test = new QmpTestServer())
        {
            final String output = runPython(test.socket);
            assertThat(output).contains("ok   events arrive before the command's return", "ALL CHECKS PASSED");
            test.server.terminated().get(10, TimeUnit.SECONDS);
            assertThat(test.shutdownHookRuns.get()).isEqualTo(1);
        }
    }

    @Test
    void pythonClientWorksAgainstQemuStorageDaemonToo() throws Exception
    {
        final Path dir = Files.createTempDirectory("tidemark-qsd");
        final Path socket = dir.resolve("qsd.sock");
        final Process qsd = startQsd(socket);
        try
        {
            assertThat(runPython(socket)).contains("ALL CHECKS PASSED");
            assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).as("qsd exits after quit").isTrue();
        }
        finally
        {
            qsd.destroyForcibly();
            Files.deleteIfExists(socket);
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void sameMessagesGiveTheSameRepliesAsQemuStorageDaemon() throws Exception
    {
        final Path dir = Files.createTempDirectory("tidemark-qsd");
        final Path socket = dir.resolve("qsd.sock");
        final Process qsd = startQsd(socket);
        try (QmpTestServer test = new QmpTestServer())
        {
            final List<JsonNode> qemu = new ArrayList<>();
            final JsonNode qemuGreeting = exchange(socket, qemu);
            final List<JsonNode> ours = new ArrayList<>();
            final JsonNode ourGreeting = exchange(test.socket, ours);

            assertThat(shape(withoutCapabilities(ourGreeting))).isEqualTo(shape(withoutCapabilities(qemuGreeting)));
            assertThat(ourGreeting.at("/QMP/capabilities").isArray()).isTrue();
            assertThat(qemuGreeting.at("/QMP/capabilities").isArray()).isTrue();
            for (int i = 0; i < PROBES.size(); i++)
            {
                final Probe probe = PROBES.get(i);
                final JsonNode theirs = qemu.get(i);
                final JsonNode mine = ours.get(i);
                switch (probe.compare())
                {
                    case EXACT -> assertThat(mine).as("reply to %s", probe.message()).isEqualTo(theirs);
                    case SHAPE ->
                    {
                        assertThat(shape(mine)).as("shape of reply to %s", probe.message()).isEqualTo(shape(theirs));
                        assertThat(mine.get("id")).as("id in reply to %s", probe.message()).isEqualTo(theirs.get("id"));
                    }
                    case PARSE_ERROR ->
                    {
                        for (final JsonNode reply : List.of(mine, theirs))
                        {
                            assertThat(reply.at("/error/class").asText()).as("%s -> %s", probe.message(), reply).isEqualTo("GenericError");
                            assertThat(reply.at("/error/desc").asText()).as("%s -> %s", probe.message(), reply)
                                .startsWith("JSON parse error, ");
                            assertThat(reply.has("id")).isFalse();
                        }
                    }
                    default -> throw new AssertionError(probe.compare());
                }
            }
            assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).as("qsd exits after quit").isTrue();
        }
        finally
        {
            qsd.destroyForcibly();
            Files.deleteIfExists(socket);
            Files.deleteIfExists(dir);
        }
    }

    /** Sends every probe in order, collecting one non-event reply each; returns the greeting. */
    private static JsonNode exchange(final Path socket, final List<JsonNode> replies) throws Exception
    {
        try (QmpClient client = QmpClient.connectUnix(socket))
        {
            for (final Probe probe : PROBES)
            {
                client.sendRaw(probe.message());
                replies.add(client.nextReply(WAIT));
            }
            return client.greeting();
        }
    }

    private static JsonNode withoutCapabilities(final JsonNode greeting)
    {
        final ObjectNode copy = greeting.deepCopy();
        ((ObjectNode) copy.get("QMP")).remove("capabilities");
        return copy;
    }

    /** Keys and JSON types, recursively; arrays by the shape of their first element. */
    private static Object shape(final JsonNode node)
    {
        if (node.isObject())
        {
            final Map<String, Object> out = new TreeMap<>();
            final Iterator<String> names = node.fieldNames();
            while (names.hasNext())
            {
                final String name = names.next();
                out.put(name, shape(node.get(name)));
            }
            return out;
        }
        if (node.isArray())
        {
            return node.isEmpty() ? List.of() : List.of(shape(node.get(0)));
        }
        return node.getNodeType().toString();
    }

    private static Process startQsd(final Path socket) throws Exception
    {
        final Path qsd = Path.of(ExternalTools.require("qemu-storage-daemon"));
        final Process process = new ProcessBuilder(qsd.toString(),
            "--chardev", "socket,id=m0,path=" + socket + ",server=on,wait=off", "--monitor", "chardev=m0")
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        while (!Files.exists(socket))
        {
            if (!process.isAlive() || System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new AssertionError("qemu-storage-daemon did not create its QMP socket " + socket);
            }
            Thread.sleep(20);
        }
        return process;
    }

    private static String runPython(final Path socket) throws Exception
    {
        final Path python = Path.of(ExternalTools.require("python3"));
        final Path script = Files.createTempFile("qmp_client_check", ".py");
        try
        {
            try (var in = QmpInteropTest.class.getResourceAsStream("/qmp/qmp_client_check.py"))
            {
                Files.write(script, in.readAllBytes());
            }
            final Process process = new ProcessBuilder(python.toString(), script.toString(), socket.toString(), "--quit")
                .redirectErrorStream(true).start();
            final byte[] output = process.getInputStream().readAllBytes();
            if (!process.waitFor(40, TimeUnit.SECONDS))
            {
                process.destroyForcibly();
                throw new AssertionError("python client timed out");
            }
            final String text = new String(output, StandardCharsets.UTF_8);
            assertThat(process.exitValue()).as("python client output:%n%s", text).isZero();
            return text;
        }
        catch (final IOException ex)
        {
            throw new AssertionError("could not run the python client", ex);
        }
        finally
        {
            Files.deleteIfExists(script);
        }
    }
}
