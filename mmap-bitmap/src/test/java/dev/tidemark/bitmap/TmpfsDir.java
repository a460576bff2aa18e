package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * A fresh temporary directory on tmpfs ({@code /dev/shm}) when there is one, else a fallback, confined to
 * the test thread that made it; for tests whose timing must not include a disk's block allocation and
 * msync.
 */
final class TmpfsDir implements AutoCloseable
{
    private final Path path;
    private final boolean owned;

    private TmpfsDir(final Path path, final boolean owned)
    {
        this.path = path;
        this.owned = owned;
    }

    static TmpfsDir create(final Path fallback) throws IOException
    {
        final Path shm = Path.of("/dev/shm");
        if (Files.isDirectory(shm) && Files.isWritable(shm))
        {
            return new TmpfsDir(Files.createTempDirectory(shm, "tidemark-test-"), true);
        }
        return new TmpfsDir(fallback, false);
    }

    Path path()
    {
        return path;
    }

    @Override
    public void close() throws IOException
    {
        if (owned)
        {
            try (Stream<Path> files = Files.walk(path))
            {
                for (final Path file : (Iterable<Path>)files.sorted(Comparator.reverseOrder())::iterator)
                {
                    Files.delete(file);
                }
            }
        }
    }
}
