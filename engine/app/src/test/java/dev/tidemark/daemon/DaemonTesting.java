package dev.tidemark.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.io.testing.ExternalTools;
import dev.tidemark.qmp.QmpClient;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpJson;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * What the daemon tests share: QMP arguments written with single quotes, commands run in process and their errors,
 * {@code tidemark serve} as a child process and its QMP socket, {@code qemu-img}, cleanup; stateless, safe from any
 * thread.
 */
final class DaemonTesting
{
    private DaemonTesting()
    {
    }

    /** @return the arguments {@code {'a':1}} written with single quotes for readability. */
    static ObjectNode args(final String singleQuoted) throws IOException
    {
        return (ObjectNode)QmpJson.MAPPER.readTree(singleQuoted.replace('\'', '"'));
    }

    /** Runs a command in process, as a client would. */
    static JsonNode exec(final Daemon daemon, final String command, final String singleQuoted) throws Exception
    {
        return daemon.execute(command, args(singleQuoted));
    }

    /** Waits (at most 60 s) until {@code query-jobs} is empty: every job ran to its end and was dismissed. */
    static void awaitNoJobs(final Daemon daemon) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!daemon.execute("query-jobs", QmpJson.object()).isEmpty())
        {
            assertThat(System.nanoTime()).as("jobs to finish").isLessThan(deadline);
            Thread.sleep(20);
        }
    }

    /** @return the error text of a command that must fail. */
    static String error(final Daemon daemon, final String command, final String singleQuoted)
    {
        try
        {
            exec(daemon, command, singleQuoted);
        }
        catch (final QmpError ex)
        {
            return ex.desc();
        }
        catch (final Exception ex)
        {
            throw new AssertionError(ex);
        }
        throw new AssertionError(command + " " + singleQuoted + " was accepted");
    }

    /** Runs {@code qemu-img} and fails the test unless it succeeds; @return its output. */
    static String qemuImg(final String... args) throws Exception
    {
        final List<String> command = new ArrayList<>(List.of("qemu-img"));
        command.addAll(List.of(args));
        return ExternalTools.run(120, command.toArray(String[]::new));
    }

    /**
     * Starts {@code tidemark serve ARGS} in a child JVM, its output appended to {@code work/serve.log}.
     *
     * @param work the test's folder.
     * @param args the arguments after {@code serve}.
     * @return the process.
     */
    static Process serve(final Path work, final List<String> args) throws IOException
    {
        final List<String> command = new ArrayList<>(List.of("serve"));
        command.addAll(args);
        return new ProcessBuilder(DaemonEndToEndTest.javaCommand(command.toArray(String[]::new)))
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(work.resolve("serve.log").toFile())).start();
    }

    /**
     * Connects to the QMP socket {@code work/qmp.sock} of a daemon started by {@link #serve}, once it listens.
     *
     * @param work the test's folder.
     * @param daemon the daemon's process; the test fails with its log if it exits meanwhile.
     * @param wait how long the daemon may take to listen.
     * @return a negotiated client.
     */
    static QmpClient connect(final Path work, final Process daemon, final Duration wait) throws Exception
    {
        final Path socket = work.resolve("qmp.sock");
        final long deadline = System.nanoTime() + wait.toNanos();
        while (true)
        {
            assertThat(daemon.isAlive()).as(Files.readString(work.resolve("serve.log"))).isTrue();
            if (Files.exists(socket))
            {
                final QmpClient client;
                try
                {
                    client = QmpClient.connectUnix(socket);
                }
                catch (final IOException ex)
                {
                    // Bound but not listening yet.
                    assertThat(System.nanoTime()).as("QMP socket: " + ex).isLessThan(deadline);
                    Thread.sleep(50);
                    continue;
                }
                client.negotiate();
                return client;
            }
            assertThat(System.nanoTime()).as("QMP socket").isLessThan(deadline);
            Thread.sleep(50);
        }
    }

    /**
     * @param prefix the folder name's prefix.
     * @param size the size of the sparse raw image {@code disk.raw} made in it.
     * @return a new temporary folder for a test.
     */
    static Path folderWithDisk(final String prefix, final long size) throws IOException
    {
        final Path dir = Files.createTempDirectory(prefix);
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve("disk.raw").toFile(), "rw"))
        {
            f.setLength(size);
        }
        return dir;
    }

    /** Kills a daemon process still running, then deletes the test's folder and everything in it. */
    static void killAndDelete(final Process daemon, final Path dir) throws Exception
    {
        if (daemon != null && daemon.isAlive())
        {
            daemon.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        deleteTree(dir);
    }

    /** Closes the daemon, then deletes the test's folder and everything in it. */
    static void closeAndDelete(final Daemon daemon, final Path dir) throws IOException
    {
        if (daemon != null)
        {
            daemon.close();
        }
        deleteTree(dir);
    }

    /** Deletes a folder and everything in it; nothing happens when it does not exist. */
    static void deleteTree(final Path dir) throws IOException
    {
        if (dir == null || !Files.exists(dir))
        {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir))
        {
            for (final Path p : walk.sorted(Comparator.reverseOrder()).toList())
            {
                Files.deleteIfExists(p);
            }
        }
    }
}
