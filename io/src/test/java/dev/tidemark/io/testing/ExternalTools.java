package dev.tidemark.io.testing;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs the real QEMU, libnbd, nbdkit and fio programs from the tests of every module; stateless, safe from any
 * thread. A missing program fails the test that needs it (no skips).
 */
public final class ExternalTools
{
    private ExternalTools()
    {
    }

    /**
     * @param tool a program name.
     * @return its path.
     * @throws AssertionError naming the tool when it is not installed.
     */
    public static String require(final String tool)
    {
        for (final String dir : searchPath().split(File.pathSeparator))
        {
            final Path candidate = Path.of(dir, tool);
            if (Files.isExecutable(candidate))
            {
                return candidate.toString();
            }
        }
        throw new AssertionError("required tool '" + tool + "' is not installed (install qemu-utils, "
            + "qemu-system-common, libnbd-bin, python3-libnbd, nbdkit, fio, gnutls-bin)");
    }

    /**
     * The PATH for tools: the distribution's directories first, so that nbdsh's {@code python3} is the
     * one with the {@code nbd} module even when a private Python (pyenv) comes first in the caller's PATH.
     */
    /** @return the PATH the tools run with. */
    public static String searchPath()
    {
        return "/usr/bin:/bin:/usr/sbin:/sbin" + File.pathSeparator + System.getenv().getOrDefault("PATH", "");
    }

    private static ProcessBuilder builder(final List<String> argv)
    {
        final ProcessBuilder builder = new ProcessBuilder(argv);
        builder.environment().put("PATH", searchPath());
        return builder;
    }

    private static boolean accepts(final Path socket)
    {
        if (!Files.exists(socket))
        {
            return false;
        }
        try (java.nio.channels.SocketChannel probe = java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX))
        {
            return probe.connect(java.net.UnixDomainSocketAddress.of(socket));
        }
        catch (final IOException ex)
        {
            return false;
        }
    }

    /**
     * The outcome of one run; immutable.
     *
     * @param exit the exit status.
     * @param out standard output.
     * @param err standard error.
     */
    public record Result(int exit, String out, String err)
    {
    }

    /**
     * Runs a tool and fails unless it exits 0 within the timeout.
     *
     * @param timeoutSeconds how long it may run.
     * @param command the program and its arguments.
     * @return its standard output.
     * @throws IOException if it cannot be started.
     * @throws InterruptedException if interrupted while waiting.
     */
    public static String run(final long timeoutSeconds, final String... command) throws IOException, InterruptedException
    {
        final Result result = runAllowingFailure(timeoutSeconds, command);
        if (result.exit != 0)
        {
            throw new AssertionError(String.join(" ", command) + " exited " + result.exit + "\nstdout:\n" + result.out
                + "\nstderr:\n" + result.err);
        }
        return result.out;
    }

    /**
     * Runs a tool within the timeout, whatever its exit status.
     *
     * @param timeoutSeconds how long it may run.
     * @param command the program and its arguments.
     * @return its exit status and output.
     * @throws IOException if it cannot be started.
     * @throws InterruptedException if interrupted while waiting.
     */
    public static Result runAllowingFailure(final long timeoutSeconds, final String... command)
        throws IOException, InterruptedException
    {
        final List<String> argv = new ArrayList<>(List.of(command));
        argv.set(0, require(command[0]));
        final Path out = Files.createTempFile("tool-out", ".txt");
        final Path err = Files.createTempFile("tool-err", ".txt");
        try
        {
            final Process process = builder(argv).redirectOutput(out.toFile()).redirectError(err.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
            if (!process.waitFor(timeoutSeconds, TimeUnit.SECONDS))
            {
                process.destroyForcibly().waitFor();
                throw new AssertionError(String.join(" ", command) + " did not finish within " + timeoutSeconds
                    + " s\nstderr:\n" + Files.readString(err, StandardCharsets.UTF_8));
            }
            return new Result(process.exitValue(), Files.readString(out, StandardCharsets.UTF_8),
                Files.readString(err, StandardCharsets.UTF_8));
        }
        finally
        {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /**
     * Starts a long-running tool (a server) with its output in {@code log}; the caller destroys it.
     *
     * @param log where its output goes.
     * @param command the program and its arguments.
     * @return the process.
     * @throws IOException if it cannot be started.
     */
    public static Process start(final Path log, final String... command) throws IOException
    {
        final List<String> argv = new ArrayList<>(List.of(command));
        argv.set(0, require(command[0]));
        return builder(argv).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
    }

    /**
     * Waits until a Unix socket accepts connections (the file appears before the server listens).
     *
     * @param socket the server's socket.
     * @param process the server.
     * @param log its output, quoted when it fails.
     * @throws Exception if it exits or the socket does not answer within 20 s.
     */
    public static void awaitSocket(final Path socket, final Process process, final Path log) throws Exception
    {
        awaitListening("server socket " + socket, () -> accepts(socket), process, log);
    }

    /**
     * Waits until a server accepts TCP connections on the loopback address.
     *
     * @param port its port.
     * @param process the server.
     * @param log its output, quoted when it fails.
     * @throws Exception if it exits or the port does not answer within 20 s.
     */
    public static void awaitTcp(final int port, final Process process, final Path log) throws Exception
    {
        awaitListening("port " + port, () ->
        {
            try (java.nio.channels.SocketChannel probe = java.nio.channels.SocketChannel.open(
                new java.net.InetSocketAddress(java.net.InetAddress.getLoopbackAddress(), port)))
            {
                return probe.isConnected();
            }
            catch (final IOException notYet)
            {
                return false;
            }
        }, process, log);
    }

    /**
     * @return a TCP port on the loopback address that was free a moment ago.
     * @throws IOException if no port can be bound.
     */
    public static int freePort() throws IOException
    {
        try (java.net.ServerSocket probe = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()))
        {
            return probe.getLocalPort();
        }
    }

    private static void awaitListening(final String what, final java.util.function.BooleanSupplier accepts,
        final Process process, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!accepts.getAsBoolean())
        {
            if (!process.isAlive())
            {
                throw new AssertionError("server exited " + process.exitValue() + ": " + Files.readString(log));
            }
            if (System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new AssertionError(what + " did not answer: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
    }

    /**
     * Starts a server process listening on {@code socket} and waits until it accepts connections.
     *
     * @param socket the socket it listens on.
     * @param log where its output goes.
     * @param command the program and its arguments.
     * @return the process; the caller stops it.
     * @throws Exception if it cannot start or does not listen.
     */
    public static Process startServer(final Path socket, final Path log, final String... command) throws Exception
    {
        final Process process = start(log, command);
        awaitSocket(socket, process, log);
        return process;
    }

    /**
     * Stops a server process and waits for it.
     *
     * @param process the server.
     * @throws InterruptedException if interrupted while waiting.
     */
    public static void stop(final Process process) throws InterruptedException
    {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS))
        {
            process.destroyForcibly().waitFor();
        }
    }

    /**
     * @param exportName the export.
     * @param socket the server's socket.
     * @return {@code nbd+unix:///NAME?socket=PATH}.
     */
    public static String uri(final String exportName, final Path socket)
    {
        return "nbd+unix:///" + exportName + "?socket=" + socket;
    }
}
