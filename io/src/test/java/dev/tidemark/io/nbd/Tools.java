package dev.tidemark.io.nbd;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs the real QEMU/libnbd/fio programs from tests; stateless, safe from any thread. */
final class Tools
{
    private Tools()
    {
    }

    /** @throws AssertionError naming the tool when it is not on the PATH. */
    static String require(final String tool)
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
            + "qemu-system-common, libnbd-bin, nbdkit, fio)");
    }

    /**
     * The PATH for tools: the distribution's directories first, so that nbdsh's {@code python3} is the
     * one with the {@code nbd} module even when a private Python (pyenv) comes first in the caller's PATH.
     */
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

    /** Result of one run. */
    static final class Result
    {
        final int exit;
        final String out;
        final String err;

        Result(final int exit, final String out, final String err)
        {
            this.exit = exit;
            this.out = out;
            this.err = err;
        }
    }

    /** Runs a tool and fails unless it exits 0 within the timeout; returns stdout. */
    static String run(final long timeoutSeconds, final String... command) throws IOException, InterruptedException
    {
        final Result result = runAllowingFailure(timeoutSeconds, command);
        if (result.exit != 0)
        {
            throw new AssertionError(String.join(" ", command) + " exited " + result.exit + "\nstdout:\n" + result.out
                + "\nstderr:\n" + result.err);
        }
        return result.out;
    }

    static Result runAllowingFailure(final long timeoutSeconds, final String... command)
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

    /** Starts a long-running tool (a server); the caller destroys it. */
    static Process start(final Path log, final String... command) throws IOException
    {
        final List<String> argv = new ArrayList<>(List.of(command));
        argv.set(0, require(command[0]));
        return builder(argv).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
    }

    /** Waits until a Unix socket accepts connections (the file appears before the server listens). */
    static void awaitSocket(final Path socket, final Process process, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!accepts(socket))
        {
            if (!process.isAlive())
            {
                throw new AssertionError("server exited " + process.exitValue() + ": " + Files.readString(log));
            }
            if (System.nanoTime() > deadline)
            {
                throw new AssertionError("server socket " + socket + " did not appear: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
    }
}
