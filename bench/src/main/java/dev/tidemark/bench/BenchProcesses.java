package dev.tidemark.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.channels.SocketChannel;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Helpers the end-to-end harnesses share to run tools, wait for and stop servers, build QMP arguments and clean up;
 * stateless and safe from any thread.
 */
public final class BenchProcesses
{
    private static final ObjectMapper JSON = new ObjectMapper();

    private BenchProcesses()
    {
    }

    /**
     * Runs a command to its end with standard input from /dev/null.
     *
     * @param command the program and its arguments.
     * @return what it printed (standard output and error together).
     * @throws Exception if it could not start, was interrupted, or exited with a non-zero code.
     */
    public static String run(final String... command) throws Exception
    {
        final Process process = new ProcessBuilder(command).redirectErrorStream(true)
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (process.waitFor() != 0)
        {
            throw new IOException(String.join(" ", command) + " failed: " + output);
        }
        return output;
    }

    /**
     * Asks a server to stop (SIGTERM) and kills it if it is still there after 20 s.
     *
     * @param process the server.
     * @throws InterruptedException if interrupted while waiting.
     */
    public static void stop(final Process process) throws InterruptedException
    {
        process.destroy();
        if (!process.waitFor(20, TimeUnit.SECONDS))
        {
            process.destroyForcibly().waitFor();
        }
    }

    /**
     * @param pairs QMP argument names and values, alternating; Integer, Long and Boolean values keep their JSON
     *              type, anything else becomes a string.
     * @return the arguments object.
     */
    public static ObjectNode args(final Object... pairs)
    {
        final ObjectNode node = JSON.createObjectNode();
        for (int i = 0; i < pairs.length; i += 2)
        {
            final String key = (String)pairs[i];
            final Object value = pairs[i + 1];
            if (value instanceof Integer number)
            {
                node.put(key, number);
            }
            else if (value instanceof Long number)
            {
                node.put(key, number);
            }
            else if (value instanceof Boolean flag)
            {
                node.put(key, flag);
            }
            else
            {
                node.put(key, String.valueOf(value));
            }
        }
        return node;
    }

    /**
     * Deletes a folder and everything under it; nothing happens if it does not exist.
     *
     * @param root the folder.
     * @throws IOException if a file cannot be deleted.
     */
    public static void deleteTree(final Path root) throws IOException
    {
        if (!Files.exists(root))
        {
            return;
        }
        try (Stream<Path> walk = Files.walk(root))
        {
            final List<Path> paths = walk.sorted(Collections.reverseOrder()).toList();
            for (final Path path : paths)
            {
                Files.deleteIfExists(path);
            }
        }
    }

    /**
     * @return a TCP port on the loopback address that was free a moment ago.
     * @throws IOException if no port can be bound.
     */
    public static int freePort() throws IOException
    {
        try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress()))
        {
            return probe.getLocalPort();
        }
    }

    /**
     * Waits until a server accepts TCP connections on the loopback address.
     *
     * @param port its port.
     * @param process the server.
     * @param log its output, quoted when it fails.
     * @throws Exception if it exits or does not listen within 60 s.
     */
    public static void awaitTcp(final int port, final Process process, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true)
        {
            try
            {
                SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), port)).close();
                return;
            }
            catch (final IOException notYet)
            {
                if (!process.isAlive() || System.nanoTime() > deadline)
                {
                    throw new IOException("server did not listen: " + Files.readString(log), notYet);
                }
                Thread.sleep(50);
            }
        }
    }

    /**
     * Starts a server and waits until its Unix socket exists and it still runs 300 ms later (a server that fails its
     * configuration may create the socket and exit right after).
     *
     * @param log where its output goes.
     * @param socket the socket it creates.
     * @param command the program and its arguments.
     * @return the process; the caller stops it.
     * @throws Exception if it exits or does not create the socket within 60 s.
     */
    public static Process startServer(final Path log, final Path socket, final List<String> command) throws Exception
    {
        final Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!Files.exists(socket))
        {
            if (!process.isAlive() || System.nanoTime() > deadline)
            {
                process.destroyForcibly();
                throw new IOException(String.join(" ", command) + " did not start: " + Files.readString(log));
            }
            Thread.sleep(20);
        }
        Thread.sleep(300);
        if (!process.isAlive())
        {
            throw new IOException(String.join(" ", command) + " exited: " + Files.readString(log));
        }
        return process;
    }

    /**
     * Waits until a {@code tidemark serve --verbose} has finished its start-up warm-up (its log says
     * {@code event=warmup}), so that a measurement sees a daemon as it serves after its first seconds, not the
     * warm-up's background load; returns at once for a daemon started with {@code --warmup-rounds 0}.
     *
     * @param process the daemon.
     * @param log its output.
     * @throws Exception if it exits, or the warm-up fails or takes more than 120 s.
     */
    public static void awaitWarmup(final Process process, final Path log) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (true)
        {
            final String text = Files.readString(log);
            if (text.contains("event=warmup ") || text.contains("event=warmup-failed"))
            {
                return;
            }
            if (!process.isAlive() || System.nanoTime() > deadline)
            {
                throw new IOException("tidemark serve did not finish its warm-up: " + text);
            }
            Thread.sleep(50);
        }
    }

    /**
     * Creates an image with non-zero data everywhere, so that no server can skip holes (the same bytes every run).
     *
     * @param image the new file.
     * @param size its size, a multiple of 1 MiB.
     * @throws IOException if it cannot be written.
     */
    public static void fill(final Path image, final long size) throws IOException
    {
        final ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 20);
        final byte[] bytes = new byte[1 << 20];
        new SplittableRandom(1).nextBytes(bytes);
        chunk.put(bytes);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            for (long at = 0; at < size; at += chunk.capacity())
            {
                chunk.clear();
                long position = at;
                while (chunk.hasRemaining())
                {
                    position += channel.write(chunk, position);
                }
            }
        }
    }

    /**
     * Prints {@code ready} and blocks until the JVM shuts down (SIGTERM from the harness), closing the resources in
     * the given order on the shutdown thread; the child servers of the harnesses end this way.
     *
     * @param threadName the shutdown thread's name.
     * @param resources what to close, in order.
     * @throws InterruptedException if interrupted while waiting.
     */
    public static void serveUntilShutdown(final String threadName, final AutoCloseable... resources)
        throws InterruptedException
    {
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() ->
        {
            for (final AutoCloseable resource : resources)
            {
                try
                {
                    resource.close();
                }
                catch (final Exception ex)
                {
                    System.err.println("close failed: " + ex);
                }
            }
            stopped.countDown();
        }, threadName));
        System.out.println("ready");
        System.out.flush();
        stopped.await();
    }
}
