package dev.tidemark.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Helpers the end-to-end harnesses share to run tools, stop servers, build QMP arguments and clean up; stateless and
 * safe from any thread.
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
}
