package dev.tidemark.io;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Safe for concurrent use by any number of threads until {@link #close()}, which must not race with a copy: a
 * second, native write descriptor of a file that is not a {@link RawFileStore} (a qcow2 image being written), so
 * that {@link RawFileStore#copyTo(long, KernelCopyTarget, long, long)} can copy into it with the kernel's
 * {@code copy_file_range}. It has no size: a copy past the end of the file extends it, as a positional write would.
 */
public final class KernelCopyTarget implements Closeable
{
    private final Path path;
    private final int fd;
    private volatile boolean supported = true;
    private boolean closed;

    private KernelCopyTarget(final Path path, final int fd)
    {
        this.path = path;
        this.fd = fd;
    }

    /**
     * @param path an existing file, opened read-write.
     * @return the target, or {@code null} where the native binding is unavailable (callers copy through buffers).
     */
    public static KernelCopyTarget open(final Path path) throws IOException
    {
        return LinuxFiles.isAvailable() ? new KernelCopyTarget(path, LinuxFiles.open(path, false)) : null;
    }

    /** @return the file. */
    public Path path()
    {
        return path;
    }

    int fd()
    {
        return closed || !supported ? -1 : fd;
    }

    void refuse()
    {
        supported = false;
    }

    @Override
    public synchronized void close() throws IOException
    {
        if (!closed)
        {
            closed = true;
            LinuxFiles.close(fd);
        }
    }

    @Override
    public String toString()
    {
        return "KernelCopyTarget[" + path + "]";
    }
}
