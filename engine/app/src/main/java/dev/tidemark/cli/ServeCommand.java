package dev.tidemark.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.LongNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import dev.tidemark.daemon.Daemon;
import dev.tidemark.daemon.EngineCommands;
import dev.tidemark.engine.warmup.ControlWarmup;
import dev.tidemark.io.BackgroundPriority;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpJson;
import dev.tidemark.qmp.QmpServer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.logging.ConsoleHandler;
import java.util.logging.Formatter;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * {@code tidemark serve}: the daemon, configured like {@code qemu-storage-daemon}; the main thread parses,
 * starts and then waits, commands run on the QMP dispatcher.
 *
 * <p>Options keep QSD's spellings: {@code --blockdev}, {@code --nbd-server}, {@code --export}, {@code --chardev}
 * and {@code --monitor} take QSD's {@code key=value,...} lists (dotted keys nest, {@code on/off} are booleans) or
 * a JSON object. Each is applied by running the matching QMP command ({@code blockdev-add},
 * {@code nbd-server-start}, {@code block-export-add}), so errors read as they would over QMP. {@code --config FILE}
 * reads the same options from a file, one per line ({@code blockdev driver=file,...}); {@code #} starts a comment.
 */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    description = {
        "Run the daemon (QMP control, NBD exports) with qemu-storage-daemon's options.",
        "Disks, bitmaps, backup jobs and exports are driven over QMP as with qemu-storage-daemon.",
        "SIGTERM or QMP 'quit' closes every bitmap cleanly."})
final class ServeCommand implements Callable<Integer>
{
    private static final Set<String> NUMBER_KEYS = Set.of("granularity", "max-connections", "speed", "offset",
        "size", "handshake-max-seconds", "reconnect-delay", "open-timeout", "to", "num-queues", "logical-block-size");

    @Option(names = "--object", paramLabel = "OPTIONS",
        description = "Create an object (as object-add): tls-creds-x509,id=ID,endpoint=server|client,dir=DIR"
            + "[,verify-peer=on|off] | tls-creds-psk,id=ID,endpoint=...,dir=DIR[,username=U] | "
            + "authz-simple,id=ID,identity=NAME | authz-list,id=ID,policy=deny,rules.0.match=M,rules.0.policy=allow.")
    List<String> objects = new ArrayList<>();

    @Option(names = "--blockdev", paramLabel = "OPTIONS", description = "Add a block node (as blockdev-add).")
    List<String> blockdevs = new ArrayList<>();

    @Option(names = "--nbd-insecure",
        description = "Allow --nbd-server to serve in clear text on an address that is not loopback (logged as a"
            + " warning). Without it such a server needs tls-creds.")
    boolean nbdInsecure;

    @Option(names = "--nbd-server", paramLabel = "OPTIONS",
        description = "Start the NBD server: addr.type=unix,addr.path=P | addr.type=inet,addr.host=H,addr.port=N.")
    String nbdServer;

    @Option(names = "--export", paramLabel = "OPTIONS",
        description = "Add an export (as block-export-add): type=nbd,id=E,node-name=N[,name=X][,writable=on]"
            + "[,bitmaps=B], or type=vhost-user-blk,id=E,node-name=N,addr.type=unix,addr.path=SOCK[,writable=on]"
            + "[,num-queues=Q][,logical-block-size=512].")
    List<String> exports = new ArrayList<>();

    @Option(names = "--chardev", paramLabel = "OPTIONS",
        description = "socket,id=ID,path=P,server=on,wait=off (or host=H,port=N on loopback).")
    List<String> chardevs = new ArrayList<>();

    @Option(names = "--monitor", paramLabel = "OPTIONS", description = "chardev=ID: serve QMP on that chardev.")
    List<String> monitors = new ArrayList<>();

    @Option(names = "--qmp-socket", paramLabel = "PATH", description = "Serve QMP on this Unix socket.")
    Path qmpSocket;

    @Option(names = "--qmp-tcp", paramLabel = "HOST:PORT", description = "Serve QMP on a loopback TCP port.")
    String qmpTcp;

    @Option(names = "--bitmap-root", paramLabel = "DIR",
        description = "Keep each file node's bitmaps in DIR/<node-name> (default: <image>.bitmaps beside it).")
    Path bitmapRoot;

    @Option(names = "--durable", description = "Start disks in durable mode.")
    boolean durable;

    @Option(names = "--warmup-rounds", paramLabel = "N",
        description = "Once serving, run every control command N times on scratch disks in the temporary folder,"
            + " at a low priority, so that the first real command's cut runs loaded, compiled code (default "
            + ControlWarmup.DEFAULT_ROUNDS + "; 0: none).")
    int warmupRounds = ControlWarmup.DEFAULT_ROUNDS;

    @Option(names = "--config", paramLabel = "FILE", description = "Read options from FILE, one per line.")
    Path config;

    @Option(names = "--pidfile", paramLabel = "FILE", description = "Write the process id here.")
    Path pidfile;

    @Option(names = "--verbose", description = "Log at INFO (structured key=value lines on stderr).")
    boolean verbose;

    @Option(names = "--x-test-commands", hidden = true, description = "Register test-only QMP commands.")
    boolean testCommands;

    @Override
    public Integer call() throws Exception
    {
        configureLogging(verbose);
        if (config != null)
        {
            if (!readConfig(config))
            {
                return TidemarkMain.EXIT_USAGE;
            }
        }
        if (warmupRounds < 0)
        {
            return usage("--warmup-rounds: must be 0 or more, not " + warmupRounds);
        }
        final Map<String, ObjectNode> chardevById = new HashMap<>();
        for (final String spec : chardevs)
        {
            final ObjectNode c = parseOptions(spec, "socket");
            if (!"socket".equals(c.path("backend").asText()))
            {
                return usage("--chardev: only 'socket' is supported: " + spec);
            }
            if (!c.hasNonNull("id"))
            {
                return usage("--chardev: 'id' is missing: " + spec);
            }
            chardevById.put(c.get("id").asText(), c);
        }
        final List<ObjectNode> qmpEndpoints = new ArrayList<>();
        for (final String spec : monitors)
        {
            final ObjectNode m = parseOptions(spec, "chardev");
            final ObjectNode chardev = chardevById.get(m.path("chardev").asText());
            if (chardev == null)
            {
                return usage("--monitor: chardev '" + m.path("chardev").asText() + "' not found");
            }
            qmpEndpoints.add(chardev);
        }
        if (qmpSocket == null && qmpTcp == null && qmpEndpoints.isEmpty())
        {
            return usage("no QMP endpoint: give --qmp-socket PATH, --qmp-tcp HOST:PORT or --chardev + --monitor");
        }
        final Daemon daemon = Daemon.create(bitmapRoot, durable, testCommands);
        try
        {
            for (final String spec : objects)
            {
                daemon.execute("object-add", parseOptions(spec, "qom-type"));
            }
            for (final String spec : blockdevs)
            {
                daemon.execute("blockdev-add", parseOptions(spec, null));
            }
            if (nbdServer != null)
            {
                final ObjectNode start = nbdServerArgs(parseOptions(nbdServer, null));
                if (nbdInsecure)
                {
                    start.put(EngineCommands.NBD_INSECURE, true);
                }
                daemon.execute("nbd-server-start", start);
            }
            for (final String spec : exports)
            {
                final ObjectNode e = parseOptions(spec, null);
                final JsonNode bitmaps = e.get("bitmaps");
                if (bitmaps != null && bitmaps.isTextual())
                {
                    final ArrayNode list = e.putArray("bitmaps");
                    for (final String b : bitmaps.asText().split(":"))
                    {
                        list.add(b);
                    }
                }
                daemon.execute("block-export-add", e);
            }
        }
        catch (final QmpError ex)
        {
            System.err.println("tidemark serve: " + ex.desc());
            daemon.close();
            return TidemarkMain.EXIT_USAGE;
        }
        try
        {
            if (qmpSocket != null)
            {
                daemon.listenUnix(qmpSocket);
            }
            if (qmpTcp != null)
            {
                daemon.listenTcp(tcpAddress(qmpTcp));
            }
            for (final ObjectNode c : qmpEndpoints)
            {
                if (c.hasNonNull("path"))
                {
                    daemon.listenUnix(Path.of(c.get("path").asText()));
                }
                else
                {
                    daemon.listenTcp(tcpAddress(c.path("host").asText("127.0.0.1") + ":" + c.path("port").asText()));
                }
            }
        }
        catch (final IOException | IllegalArgumentException ex)
        {
            System.err.println("tidemark serve: cannot listen for QMP: " + ex.getMessage());
            daemon.close();
            return TidemarkMain.EXIT_ERROR;
        }
        if (pidfile != null)
        {
            Files.writeString(pidfile, ProcessHandle.current().pid() + "\n", StandardCharsets.US_ASCII);
        }
        final Thread hook = new Thread(daemon::close, "tidemark-sigterm");
        Runtime.getRuntime().addShutdownHook(hook);
        System.getLogger("dev.tidemark").log(System.Logger.Level.INFO, () -> "event=ready " + daemon.summary());
        startWarmup(warmupRounds, daemon.server());
        daemon.terminated().join();
        try
        {
            Runtime.getRuntime().removeShutdownHook(hook);
        }
        catch (final IllegalStateException alreadyShuttingDown)
        {
            // SIGTERM: the hook is running and will finish the close.
        }
        if (pidfile != null)
        {
            Files.deleteIfExists(pidfile);
        }
        return TidemarkMain.EXIT_OK;
    }

    private static int usage(final String message)
    {
        System.err.println("tidemark serve: " + message);
        return TidemarkMain.EXIT_USAGE;
    }

    private boolean readConfig(final Path file) throws IOException
    {
        if (!Files.isRegularFile(file))
        {
            System.err.println("tidemark serve: config file " + file + " not found");
            return false;
        }
        int lineNo = 0;
        for (final String raw : Files.readAllLines(file, StandardCharsets.UTF_8))
        {
            lineNo++;
            final String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#"))
            {
                continue;
            }
            final String[] kv = line.split("\\s+", 2);
            final String key = kv[0].startsWith("--") ? kv[0].substring(2) : kv[0];
            final String value = kv.length > 1 ? kv[1].strip() : "";
            switch (key)
            {
                case "object" -> objects.add(value);
                case "nbd-insecure" -> nbdInsecure = value.isEmpty() || "on".equals(value) || "true".equals(value);
                case "blockdev" -> blockdevs.add(value);
                case "nbd-server" -> nbdServer = value;
                case "export" -> exports.add(value);
                case "chardev" -> chardevs.add(value);
                case "monitor" -> monitors.add(value);
                case "qmp-socket" -> qmpSocket = Path.of(value);
                case "qmp-tcp" -> qmpTcp = value;
                case "bitmap-root" -> bitmapRoot = Path.of(value);
                case "durable" -> durable = value.isEmpty() || "on".equals(value) || "true".equals(value);
                case "pidfile" -> pidfile = Path.of(value);
                case "verbose" -> verbose = true;
                default ->
                {
                    System.err.println("tidemark serve: " + file + ":" + lineNo + ": unknown option '" + key + "'");
                    return false;
                }
            }
        }
        configureLogging(verbose);
        return true;
    }

    private static InetSocketAddress tcpAddress(final String hostPort)
    {
        final int colon = hostPort.lastIndexOf(':');
        if (colon < 0)
        {
            throw new IllegalArgumentException("'" + hostPort + "' is not HOST:PORT");
        }
        try
        {
            return new InetSocketAddress(InetAddress.getByName(hostPort.substring(0, colon)),
                Integer.parseInt(hostPort.substring(colon + 1)));
        }
        catch (final IOException | NumberFormatException ex)
        {
            throw new IllegalArgumentException("'" + hostPort + "' is not HOST:PORT: " + ex.getMessage(), ex);
        }
    }

    /** QSD's flat {@code addr.type=unix,addr.path=P} to nbd-server-start's legacy nested address. */
    static ObjectNode nbdServerArgs(final ObjectNode flat)
    {
        final ObjectNode args = flat.deepCopy();
        final JsonNode addr = flat.get("addr");
        if (addr instanceof ObjectNode a && a.has("type") && !a.has("data"))
        {
            final ObjectNode legacy = QmpJson.object();
            legacy.set("type", a.get("type"));
            final ObjectNode data = a.deepCopy();
            data.remove("type");
            legacy.set("data", data);
            args.set("addr", legacy);
        }
        return args;
    }

    /**
     * Parses QSD's option syntax: a JSON object, or {@code key=value} pairs separated by commas ({@code ,,} is a
     * literal comma), dotted keys nesting objects and numeric segments making arrays; {@code on}/{@code off} and
     * {@code true}/{@code false} become booleans, known numeric keys numbers.
     *
     * @param spec the text.
     * @param implicitKey the key of a leading bare word ({@code socket} in {@code --chardev socket,...}), or
     *                    {@code null}.
     * @return the object.
     */
    static ObjectNode parseOptions(final String spec, final String implicitKey)
    {
        final String text = spec.strip();
        if (text.startsWith("{"))
        {
            try
            {
                final JsonNode node = QmpJson.MAPPER.readTree(text);
                if (node instanceof ObjectNode object)
                {
                    return object;
                }
            }
            catch (final IOException ex)
            {
                throw new CommandLine.ParameterException(new CommandLine(new ServeCommand()),
                    "invalid JSON option '" + text + "': " + ex.getMessage(), ex, null, text);
            }
        }
        final ObjectNode root = QmpJson.object();
        final List<String> parts = splitCommas(text);
        for (int i = 0; i < parts.size(); i++)
        {
            final String part = parts.get(i);
            final int eq = part.indexOf('=');
            if (eq < 0)
            {
                if (i == 0 && implicitKey != null)
                {
                    // --chardev's leading word is its backend; --monitor's and --object's name their key.
                    root.put("socket".equals(implicitKey) ? "backend" : implicitKey, part);
                    continue;
                }
                throw new CommandLine.ParameterException(new CommandLine(new ServeCommand()),
                    "option '" + part + "' in '" + text + "' has no value (expected key=value)");
            }
            put(root, part.substring(0, eq), part.substring(eq + 1));
        }
        return toArrays(root);
    }

    private static List<String> splitCommas(final String text)
    {
        final List<String> parts = new ArrayList<>();
        final StringBuilder current = new StringBuilder();
        for (int i = 0; i < text.length(); i++)
        {
            final char c = text.charAt(i);
            if (c == ',')
            {
                if (i + 1 < text.length() && text.charAt(i + 1) == ',')
                {
                    current.append(',');
                    i++;
                    continue;
                }
                parts.add(current.toString());
                current.setLength(0);
            }
            else
            {
                current.append(c);
            }
        }
        if (current.length() > 0)
        {
            parts.add(current.toString());
        }
        return parts;
    }

    private static void put(final ObjectNode root, final String key, final String value)
    {
        final String[] path = key.split("\\.");
        ObjectNode at = root;
        for (int i = 0; i < path.length - 1; i++)
        {
            final JsonNode next = at.get(path[i]);
            at = next instanceof ObjectNode o ? o : at.putObject(path[i]);
        }
        final String leaf = path[path.length - 1];
        at.set(leaf, scalar(leaf, value));
    }

    private static JsonNode scalar(final String key, final String value)
    {
        switch (value.toLowerCase(Locale.ROOT))
        {
            case "on", "true", "yes":
                return BooleanNode.TRUE;
            case "off", "false", "no":
                return BooleanNode.FALSE;
            default:
                break;
        }
        if (NUMBER_KEYS.contains(key) && value.matches("-?\\d+"))
        {
            return LongNode.valueOf(Long.parseLong(value));
        }
        return TextNode.valueOf(value);
    }

    /** Objects whose keys are all 0..n-1 become arrays ({@code bitmaps.0=a,bitmaps.1=b}). */
    private static ObjectNode toArrays(final ObjectNode object)
    {
        final List<String> names = new ArrayList<>();
        object.fieldNames().forEachRemaining(names::add);
        for (final String name : names)
        {
            final JsonNode child = object.get(name);
            if (child instanceof ObjectNode o)
            {
                toArrays(o);
                if (isIndexed(o))
                {
                    final ArrayNode array = object.putArray(name);
                    for (int i = 0; i < o.size(); i++)
                    {
                        array.add(o.get(Integer.toString(i)));
                    }
                }
            }
        }
        return object;
    }

    private static boolean isIndexed(final ObjectNode o)
    {
        if (o.isEmpty())
        {
            return false;
        }
        for (int i = 0; i < o.size(); i++)
        {
            if (!o.has(Integer.toString(i)))
            {
                return false;
            }
        }
        return true;
    }

    /**
     * Chooses the backend of the System.Logger API the modules log through: java.util.logging, its default, set up
     * for structured, quiet output: WARNING by default, INFO with --verbose; one key=value line per record.
     */
    static void configureLogging(final boolean verbose)
    {
        final Logger root = Logger.getLogger("");
        for (final java.util.logging.Handler h : root.getHandlers())
        {
            root.removeHandler(h);
        }
        final ConsoleHandler handler = new ConsoleHandler();
        handler.setLevel(Level.ALL);
        handler.setFormatter(new Formatter()
        {
            @Override
            public String format(final LogRecord record)
            {
                final String message = formatMessage(record).replace("\"", "'").replace('\n', ' ');
                final StringBuilder line = new StringBuilder();
                line.append("ts=").append(Instant.ofEpochMilli(record.getMillis())).append(" level=")
                    .append(record.getLevel().getName().toLowerCase(Locale.ROOT)).append(" logger=")
                    .append(record.getLoggerName()).append(" msg=\"").append(message).append('"');
                if (record.getThrown() != null)
                {
                    line.append(" error=\"").append(String.valueOf(record.getThrown()).replace("\"", "'"))
                        .append('"');
                }
                return line.append(System.lineSeparator()).toString();
            }
        });
        root.addHandler(handler);
        root.setLevel(verbose ? Level.INFO : Level.WARNING);
    }

    /** Runs {@link ControlWarmup} on a daemon thread of its own; its outcome is logged, never fatal. */
    private static void startWarmup(final int rounds, final QmpServer server)
    {
        if (rounds == 0)
        {
            return;
        }
        final Thread thread = new Thread(() ->
        {
            BackgroundPriority.applyToCurrentThread();
            final System.Logger log = System.getLogger("dev.tidemark");
            final long start = System.nanoTime();
            try
            {
                // Through the server's own event path, queued for no client: its classes are loaded and its code
                // compiled before a real job's first event leaves a write ring at a cut.
                ControlWarmup.run(Path.of(System.getProperty("java.io.tmpdir")), rounds, server::rehearseEngineEvent);
                log.log(System.Logger.Level.INFO, () -> "event=warmup rounds=" + rounds + " millis="
                    + (System.nanoTime() - start) / 1_000_000);
            }
            catch (final IOException | RuntimeException ex)
            {
                // The daemon serves as well without it; only the first commands cost the write path more.
                log.log(System.Logger.Level.WARNING, () -> "event=warmup-failed rounds=" + rounds + " reason=" + ex);
            }
        }, "tidemark-warmup");
        thread.setDaemon(true);
        thread.start();
    }
}
