package dev.tidemark.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.qmp.QmpClient;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpJson;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code tidemark qmp}: a one-shot or interactive QMP client; runs on the calling thread (the
 * interactive mode adds the client's reader thread, which prints events as they arrive).
 *
 * <p>Exit codes: 0 success; 1 the server answered with an error (class and desc on stderr);
 * 2 bad usage or bad JSON arguments; 3 connection or I/O failure.
 */
@Command(
    name = "qmp",
    mixinStandardHelpOptions = true,
    description = {
        "Send QMP commands to a Tidemark daemon (or any QMP server such as qemu-storage-daemon).",
        "With COMMAND: negotiate, run it, print its return value and exit.",
        "Without COMMAND: read commands from standard input, one per line, either",
        "  NAME [JSON-ARGUMENTS]   e.g.  block-dirty-bitmap-add {\"node\":\"d0\",\"name\":\"b0\"}",
        "or a raw QMP message      e.g.  {\"execute\":\"query-jobs\",\"id\":1}",
        "and print every reply and event as one JSON line."},
    exitCodeListHeading = "Exit codes:%n",
    exitCodeList = {
        "0:success",
        "1:the server answered with an error",
        "2:bad usage or bad JSON arguments",
        "3:connection or I/O failure"})
public final class QmpCli implements Callable<Integer>
{
    @Spec
    private CommandLine.Model.CommandSpec spec;

    @ArgGroup(exclusive = true, multiplicity = "1")
    private Endpoint endpoint;

    @Option(names = "--json", description = "Print the return value as compact JSON instead of indented JSON.")
    private boolean json;

    @Option(names = "--timeout", paramLabel = "SECONDS", defaultValue = "60",
        description = "How long to wait for each reply (default: ${DEFAULT-VALUE}).")
    private long timeoutSeconds;

    @Option(names = "--no-negotiate",
        description = "Do not send qmp_capabilities first (to talk to the server in capabilities mode).")
    private boolean noNegotiate;

    @Parameters(index = "0", arity = "0..1", paramLabel = "COMMAND", description = "Command to run once.")
    private String command;

    @Parameters(index = "1", arity = "0..1", paramLabel = "JSON-ARGS",
        description = "Arguments as a JSON object, e.g. '{\"node\":\"d0\",\"name\":\"b0\"}'.")
    private String arguments;

    private final InputStream stdin;

    /** Where to connect. */
    static final class Endpoint
    {
        @Option(names = "--socket", paramLabel = "PATH", description = "QMP Unix socket.")
        Path socket;

        @Option(names = "--tcp", paramLabel = "HOST:PORT", description = "QMP TCP address.")
        String tcp;
    }

    /** Reads interactive commands from {@code System.in}. */
    public QmpCli()
    {
        this(System.in);
    }

    QmpCli(final InputStream stdin)
    {
        this.stdin = stdin;
    }

    @Override
    public Integer call()
    {
        final PrintWriter out = spec.commandLine().getOut();
        final PrintWriter err = spec.commandLine().getErr();
        ObjectNode args = null;
        if (arguments != null)
        {
            args = parseArguments(arguments, err);
            if (args == null)
            {
                return TidemarkMain.EXIT_USAGE;
            }
        }
        if (endpoint.tcp != null && parsePort(endpoint.tcp) < 0)
        {
            err.println("tidemark qmp: --tcp wants HOST:PORT, got '" + endpoint.tcp + "'");
            return TidemarkMain.EXIT_USAGE;
        }
        try (QmpClient client = connect())
        {
            client.setTimeout(Duration.ofSeconds(timeoutSeconds));
            if (!noNegotiate)
            {
                client.negotiate();
            }
            if (command != null)
            {
                return oneShot(client, args, out, err);
            }
            return interactive(client, out, err);
        }
        catch (final QmpError ex)
        {
            err.println(ex.errorClass() + ": " + ex.desc());
            return TidemarkMain.EXIT_CHECK_FAILED;
        }
        catch (final IOException ex)
        {
            err.println("tidemark qmp: " + ex.getMessage());
            return TidemarkMain.EXIT_ERROR;
        }
    }

    private QmpClient connect() throws IOException
    {
        if (endpoint.socket != null)
        {
            return QmpClient.connectUnix(endpoint.socket);
        }
        final int colon = endpoint.tcp.lastIndexOf(':');
        return QmpClient.connectTcp(endpoint.tcp.substring(0, colon), parsePort(endpoint.tcp));
    }

    private static int parsePort(final String hostPort)
    {
        final int colon = hostPort.lastIndexOf(':');
        if (colon <= 0)
        {
            return -1;
        }
        try
        {
            final int port = Integer.parseInt(hostPort.substring(colon + 1));
            return port > 0 && port < 65536 ? port : -1;
        }
        catch (final NumberFormatException ex)
        {
            return -1;
        }
    }

    private int oneShot(final QmpClient client, final ObjectNode args, final PrintWriter out, final PrintWriter err)
        throws IOException
    {
        try
        {
            final JsonNode result = client.execute(command, args);
            final ObjectWriter writer = json ? QmpJson.MAPPER.writer() : QmpJson.MAPPER.writerWithDefaultPrettyPrinter();
            out.println(writer.writeValueAsString(result));
            out.flush();
            return TidemarkMain.EXIT_OK;
        }
        catch (final QmpError ex)
        {
            err.println(ex.errorClass() + ": " + ex.desc());
            err.flush();
            return TidemarkMain.EXIT_CHECK_FAILED;
        }
    }

    private int interactive(final QmpClient client, final PrintWriter out, final PrintWriter err) throws IOException
    {
        final AtomicBoolean sawError = new AtomicBoolean();
        final Object printLock = new Object();
        client.setTap(message ->
        {
            if (message.has("error"))
            {
                sawError.set(true);
            }
            synchronized (printLock)
            {
                out.println(QmpJson.compact(message));
                out.flush();
            }
        });
        for (final JsonNode early : client.drainEvents())
        {
            synchronized (printLock)
            {
                out.println(QmpJson.compact(early));
            }
        }
        final BufferedReader lines = new BufferedReader(new InputStreamReader(stdin, StandardCharsets.UTF_8));
        long sequence = 0;
        String line;
        while ((line = lines.readLine()) != null)
        {
            final String trimmed = line.strip();
            if (trimmed.isEmpty() || trimmed.startsWith("#"))
            {
                continue;
            }
            final ObjectNode message;
            if (trimmed.startsWith("{"))
            {
                message = parseArguments(trimmed, err);
            }
            else
            {
                final int space = indexOfWhitespace(trimmed);
                final String name = space < 0 ? trimmed : trimmed.substring(0, space);
                final ObjectNode args = space < 0 ? null : parseArguments(trimmed.substring(space + 1).strip(), err);
                if (space >= 0 && args == null)
                {
                    sawError.set(true);
                    continue;
                }
                message = QmpJson.object();
                message.put("execute", name);
                if (args != null)
                {
                    message.set("arguments", args);
                }
                message.put("id", ++sequence);
            }
            if (message == null)
            {
                sawError.set(true);
                continue;
            }
            client.sendRaw(QmpJson.encode(message));
            // Wait for this command's reply so output stays in input order.
            try
            {
                client.nextReply(Duration.ofSeconds(timeoutSeconds));
                // Events were printed by the tap; do not keep them queued for the whole session.
                client.drainEvents();
            }
            catch (final TimeoutException ex)
            {
                err.println("tidemark qmp: no reply within " + timeoutSeconds + " s");
                return TidemarkMain.EXIT_ERROR;
            }
        }
        return sawError.get() ? TidemarkMain.EXIT_CHECK_FAILED : TidemarkMain.EXIT_OK;
    }

    private static int indexOfWhitespace(final String text)
    {
        for (int i = 0; i < text.length(); i++)
        {
            if (Character.isWhitespace(text.charAt(i)))
            {
                return i;
            }
        }
        return -1;
    }

    private static ObjectNode parseArguments(final String text, final PrintWriter err)
    {
        final JsonNode node;
        try
        {
            node = QmpJson.parse(text.getBytes(StandardCharsets.UTF_8));
        }
        catch (final QmpError ex)
        {
            err.println("tidemark qmp: bad JSON '" + text + "': " + ex.desc());
            err.flush();
            return null;
        }
        if (!node.isObject())
        {
            err.println("tidemark qmp: expected a JSON object, got '" + text + "'");
            err.flush();
            return null;
        }
        return (ObjectNode) node;
    }
}
