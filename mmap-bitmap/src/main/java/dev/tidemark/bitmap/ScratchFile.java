package dev.tidemark.bitmap;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;

import org.agrona.IoUtil;

/**
 * Lazily zeroed memory for bitmap levels: a sparse temporary file, deleted as soon as it is opened and
 * mapped shared; confined to the thread that owns the bitmap for creation, {@link #setLength} and
 * {@link #close}, while the mappings it hands out are used by any thread.
 *
 * <p>Why a file: Java 17 has no anonymous {@code mmap}, {@code ByteBuffer.allocateDirect} zeroes eagerly
 * (seconds for 2 GiB) and counts against {@code MaxDirectMemorySize}, and {@code /dev/zero} cannot be
 * mapped through {@code FileChannel}. A sparse file costs nothing until a page is touched; only touched
 * pages take memory (tmpfs) or page cache (a disk file system). Deleting it at once means a crash leaves
 * nothing behind.
 *
 * <p>Where: the directory named by the system property {@code tidemark.bitmap.scratch-dir}, else
 * {@code /dev/shm} when it has room for the whole length, else {@code java.io.tmpdir}. Touched pages must
 * fit there: a write to a page the file system cannot back fails with an {@link InternalError}.
 */
final class ScratchFile implements AutoCloseable
{
    /** System property naming the directory for scratch files. */
    static final String DIR_PROPERTY = "tidemark.bitmap.scratch-dir";

    private final RandomAccessFile file;
    private final FileChannel channel;
    private long length;

    private ScratchFile(final RandomAccessFile file, final long length)
    {
        this.file = file;
        this.channel = file.getChannel();
        this.length = length;
    }

    /**
     * @param length bytes, all zero.
     * @param dir where, or {@code null} to choose as the class comment says.
     * @return the open, already deleted scratch file.
     */
    static ScratchFile create(final long length, final Path dir)
    {
        try
        {
            final Path where = dir != null ? dir : chooseDirectory(length);
            final Path path = Files.createTempFile(where, "tidemark-bitmap-", ".scratch");
            final RandomAccessFile file;
            try
            {
                file = new RandomAccessFile(path.toFile(), "rw");
            }
            finally
            {
                Files.delete(path);
            }
            final ScratchFile scratch = new ScratchFile(file, 0);
            try
            {
                scratch.setLength(length);
            }
            catch (final RuntimeException ex)
            {
                scratch.close();
                throw ex;
            }
            return scratch;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot create a scratch file for bitmap memory", ex);
        }
    }

    private static Path chooseDirectory(final long length) throws IOException
    {
        final String configured = System.getProperty(DIR_PROPERTY);
        if (configured != null && !configured.isEmpty())
        {
            return Path.of(configured);
        }
        final Path shm = Path.of("/dev/shm");
        if (Files.isDirectory(shm) && Files.isWritable(shm) && Files.getFileStore(shm).getUsableSpace() >= length)
        {
            return shm;
        }
        return Path.of(System.getProperty("java.io.tmpdir"));
    }

    /**
     * Grows (with zeros, sparsely) or shrinks the file; mappings beyond a new, smaller end must be gone.
     *
     * @param newLength bytes.
     */
    void setLength(final long newLength)
    {
        try
        {
            // ftruncate: growing adds a hole, shrinking frees the pages past the end.
            file.setLength(newLength);
            length = newLength;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot resize a bitmap scratch file to " + newLength + " bytes", ex);
        }
    }

    /** @return the current length in bytes. */
    long length()
    {
        return length;
    }

    /**
     * @param offset start, within the file.
     * @param size bytes, at most {@code Integer.MAX_VALUE}.
     * @return a shared read-write mapping; release it with {@link #unmap}.
     */
    MappedByteBuffer map(final long offset, final long size)
    {
        try
        {
            return channel.map(FileChannel.MapMode.READ_WRITE, offset, size);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot map " + size + " bytes of a bitmap scratch file", ex);
        }
    }

    static void unmap(final MappedByteBuffer buffer)
    {
        if (buffer != null)
        {
            IoUtil.unmap(buffer);
        }
    }

    @Override
    public void close()
    {
        try
        {
            file.close();
        }
        catch (final IOException ignored)
        {
            // The file is already deleted; closing only returns its pages to the system.
        }
    }
}
