package dev.tidemark.engine.export;

import java.io.File;
import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs the real QEMU, libnbd, nbdkit and fio programs from engine tests; stateless, safe from any thread. */
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
            + "qemu-system-common, libnbd-bin, python3-libnbd, nbdkit, fio)");
    }

    /** The distribution's directories first, so that python3 is the one with libnbd's {@code nbd} module. */
    static String searchPath()
    {
        return "/usr/bin:/bin:/usr/sbin:/sbin" + File.pathSeparator + System.getenv().getOrDefault("PATH", "");
    }

    private static ProcessBuilder builder(final List<String> argv)
    {
        final ProcessBuilder builder = new ProcessBuilder(argv);
        builder.environment().put("PATH", searchPath());
        return builder;
    }

    /**
     * Runs a tool and fails unless it exits 0 within the timeout.
     *
     * @return its standard output.
     */
    public static String run(final long timeoutSeconds, final String... command)
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
            final String stdout = Files.readString(out, StandardCharsets.UTF_8);
            if (process.exitValue() != 0)
            {
                throw new AssertionError(String.join(" ", command) + " exited " + process.exitValue() + "\nstdout:\n"
                    + stdout + "\nstderr:\n" + Files.readString(err, StandardCharsets.UTF_8));
            }
            return stdout;
        }
        finally
        {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /**
     * Starts a server process listening on {@code socket} and waits until it accepts connections.
     *
     * @return the process; the caller destroys it.
     */
    public static Process startServer(final Path socket, final Path log, final String... command) throws Exception
    {
        final List<String> argv = new ArrayList<>(List.of(command));
        argv.set(0, require(command[0]));
        final Process process = builder(argv).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!accepts(socket))
        {
            if (!process.isAlive())
            {
                throw new AssertionError(command[0] + " exited " + process.exitValue() + ": " + Files.readString(log));
            }
            if (System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new AssertionError(command[0] + " socket " + socket + " did not appear: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
        return process;
    }

    /** Stops a server process and waits for it. */
    public static void stop(final Process process) throws InterruptedException
    {
        process.destroy();
        if (!process.waitFor(10, TimeUnit.SECONDS))
        {
            process.destroyForcibly().waitFor();
        }
    }

    private static boolean accepts(final Path socket)
    {
        if (!Files.exists(socket))
        {
            return false;
        }
        try (SocketChannel channel = SocketChannel.open(UnixDomainSocketAddress.of(socket)))
        {
            return channel.isConnected();
        }
        catch (final IOException ex)
        {
            return false;
        }
    }

    /** @return {@code nbd+unix:///NAME?socket=PATH}. */
    public static String uri(final String exportName, final Path socket)
    {
        return "nbd+unix:///" + exportName + "?socket=" + socket;
    }
}
