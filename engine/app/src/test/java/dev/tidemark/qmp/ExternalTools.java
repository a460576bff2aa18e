package dev.tidemark.qmp;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;

/** Finds required external programs; a missing one fails the test that needs it. Stateless. */
final class ExternalTools
{
    private ExternalTools()
    {
    }

    /**
     * @param name program name.
     * @return its path on PATH.
     * @throws AssertionError naming the tool when it is missing.
     */
    static Path require(final String name)
    {
        for (final String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
        {
            final Path candidate = Path.of(dir, name);
            if (Files.isExecutable(candidate))
            {
                return candidate;
            }
        }
        throw new AssertionError("required tool '" + name + "' is not installed (install it: see .ci/test)");
    }
}
