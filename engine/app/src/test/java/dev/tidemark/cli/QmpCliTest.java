package dev.tidemark.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;

import dev.tidemark.qmp.QmpCommandRegistry;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpJson;
import dev.tidemark.qmp.QmpServer;
import dev.tidemark.qmp.QmpType;
import picocli.CommandLine;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(value = 30, unit = TimeUnit.SECONDS)
class QmpCliTest
{
    private Path directory;
    private Path socket;
    private QmpServer server;

    @BeforeEach
    void start() throws IOException
    {
        directory = Files.createTempDirectory("tidemark-qmp-cli");
        socket = directory.resolve("qmp.sock");
        final QmpCommandRegistry registry = new QmpCommandRegistry();
        registry.register("x-echo", QmpType.struct(QmpField.required("text", QmpType.str())), "Echo.",
            args -> args);
        server = QmpServer.builder().registry(registry).testCommands(true).build();
        server.listenUnix(socket);
    }

    @AfterEach
    void stop() throws IOException
    {
        server.close();
        Files.deleteIfExists(socket);
        Files.deleteIfExists(directory);
    }

    /** Result of one CLI run. */
    private record Run(int exit, String out, String err)
    {
    }

    private static Run run(final String stdin, final String... args)
    {
        final StringWriter out = new StringWriter();
        final StringWriter err = new StringWriter();
        final CommandLine commandLine = new CommandLine(new QmpCli(
            new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8))));
        commandLine.setOut(new PrintWriter(out, true));
        commandLine.setErr(new PrintWriter(err, true));
        final int exit = commandLine.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    @Test
    void oneShotPrintsThePrettyReturnValue() throws Exception
    {
        final Run result = run("", "--socket", socket.toString(), "query-version");
        assertThat(result.exit()).as(result.err()).isZero();
        assertThat(result.out().lines().count()).isGreaterThan(3);
        assertThat(QmpJson.MAPPER.readTree(result.out()).at("/qemu/major").asInt()).isEqualTo(9);
    }

    @Test
    void oneShotJsonWithArgumentsIsOneCompactLine() throws Exception
    {
        final Run result = run("", "--socket", socket.toString(), "--json", "x-echo", "{\"text\":\"h\u00e9\"}");
        assertThat(result.exit()).as(result.err()).isZero();
        assertThat(result.out().strip()).isEqualTo("{\"text\":\"h\u00e9\"}");
    }

    @Test
    void qmpErrorExitsOneWithClassAndDescOnStderr()
    {
        final Run result = run("", "--socket", socket.toString(), "no-such");
        assertThat(result.exit()).isEqualTo(1);
        assertThat(result.err().strip()).isEqualTo("CommandNotFound: The command no-such has not been found");
        assertThat(result.out()).isEmpty();
        final Run early = run("", "--socket", socket.toString(), "--no-negotiate", "query-version");
        assertThat(early.exit()).isEqualTo(1);
        assertThat(early.err().strip())
            .isEqualTo("CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'");
        final Run schema = run("", "--socket", socket.toString(), "x-echo", "{}");
        assertThat(schema.exit()).isEqualTo(1);
        assertThat(schema.err().strip()).isEqualTo("GenericError: Parameter 'text' is missing");
    }

    @Test
    void badArgumentsAndUnreachableServersHaveTheirOwnExitCodes()
    {
        final Run badJson = run("", "--socket", socket.toString(), "x-echo", "{text:1");
        assertThat(badJson.exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(badJson.err()).contains("bad JSON");
        assertThat(run("", "--socket", socket.toString(), "x-echo", "[1]").exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        final Run missing = run("", "--socket", directory.resolve("absent.sock").toString(), "query-version");
        assertThat(missing.exit()).isEqualTo(TidemarkMain.EXIT_ERROR);
        assertThat(missing.err()).contains("cannot connect");
        assertThat(run("", "query-version").exit()).isEqualTo(2);
        assertThat(run("", "--tcp", "nohostport", "query-version").exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
    }

    @Test
    void tcpEndpointWorks() throws Exception
    {
        final InetSocketAddress bound = server.listenTcp(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        final Run result = run("", "--tcp", bound.getHostString() + ":" + bound.getPort(), "--json", "query-commands");
        assertThat(result.exit()).as(result.err()).isZero();
        assertThat(result.out()).contains("\"name\":\"x-echo\"");
    }

    @Test
    void interactiveModePrintsRepliesAndEventsInOrder() throws Exception
    {
        final String input = String.join("\n",
            "# a comment",
            "query-version",
            "",
            "{\"execute\":\"no-such\",\"id\":\"raw\"}",
            "__dev.tidemark_x-raise-event {\"event\":\"JOB_STATUS_CHANGE\",\"count\":2}",
            "x-echo {bad",
            "x-echo {\"text\":\"done\"}") + "\n";
        final Run result = run(input, "--socket", socket.toString());
        assertThat(result.exit()).as("an error reply was seen").isEqualTo(1);
        final List<JsonNode> lines = new ArrayList<>();
        for (final String line : result.out().lines().toList())
        {
            lines.add(QmpJson.MAPPER.readTree(line));
        }
        assertThat(lines).hasSize(6);
        assertThat(lines.get(0).at("/return/qemu/major").asInt()).isEqualTo(9);
        assertThat(lines.get(1).at("/error/class").asText()).isEqualTo("CommandNotFound");
        assertThat(lines.get(1).get("id").asText()).isEqualTo("raw");
        assertThat(lines.get(2).get("event").asText()).isEqualTo("JOB_STATUS_CHANGE");
        assertThat(lines.get(3).get("event").asText()).isEqualTo("JOB_STATUS_CHANGE");
        assertThat(lines.get(4).at("/return/raised").asInt()).isEqualTo(2);
        assertThat(lines.get(5).at("/return/text").asText()).isEqualTo("done");
        assertThat(result.err()).contains("bad JSON");
    }

    @Test
    void helpIsAvailableAndTheSubcommandIsRegistered()
    {
        final Run help = run("", "--help");
        assertThat(help.exit()).isZero();
        assertThat(help.out()).contains("--socket", "--tcp", "--json", "Exit codes");
        assertThat(new CommandLine(TidemarkMain.class).getSubcommands()).containsKey("qmp");
        assertThat(TidemarkMain.run("qmp", "--help")).isZero();
    }
}
