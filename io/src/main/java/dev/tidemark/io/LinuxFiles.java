package dev.tidemark.io;

import com.sun.jna.LastErrorException;
import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Platform;
import com.sun.jna.Memory;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Stateless and safe for concurrent use by any number of threads: the few libc calls the JDK does not
 * expose (hole punching with {@code fallocate}, hole and data seeking with {@code lseek}, the kernel's own
 * file-to-file copy {@code copy_file_range}), bound with JNA.
 *
 * <p>On a platform other than Linux, or when the binding cannot load, {@link #isAvailable()} is false and
 * callers take their portable fallbacks.
 */
final class LinuxFiles
{
    static final int O_RDONLY = 0;
    static final int O_RDWR = 2;
    static final int O_CLOEXEC = 0x80000;

    static final int SEEK_DATA = 3;
    static final int SEEK_HOLE = 4;

    static final int FALLOC_FL_KEEP_SIZE = 0x01;
    static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    static final int FALLOC_FL_ZERO_RANGE = 0x10;

    static final int EINTR = 4;
    static final int ENXIO = 6;
    static final int EINVAL = 22;
    static final int EXDEV = 18;
    static final int ENOSYS = 38;
    static final int EOPNOTSUPP = 95;

    private static final LibC LIBC = load();
    // Two loff_t per copying thread, reused: a fresh LongByReference per call is a malloc, a free and a cleaner.
    private static final ThreadLocal<Memory> OFFSETS = ThreadLocal.withInitial(() -> new Memory(16));

    private LinuxFiles()
    {
    }

    /** The libc functions, as JNA maps them; every call throws {@link LastErrorException} on -1. */
    interface LibC extends Library
    {
        int open(byte[] path, int flags) throws LastErrorException;

        long lseek(int fd, long offset, int whence) throws LastErrorException;

        int fallocate(int fd, int mode, long offset, long length) throws LastErrorException;

        int close(int fd) throws LastErrorException;

        long copy_file_range(int fdIn, Pointer offIn, int fdOut, Pointer offOut, long len, int flags)
            throws LastErrorException;
    }

    private static LibC load()
    {
        if (!Platform.isLinux() || !Platform.is64Bit())
        {
            return null;
        }
        try
        {
            return Native.load("c", LibC.class);
        }
        catch (final LinkageError | RuntimeException ex)
        {
            return null;
        }
    }

    /** @return whether the native calls can be made on this platform. */
    static boolean isAvailable()
    {
        return LIBC != null;
    }

    /** Opens {@code path} (which must exist) and returns the descriptor. */
    static int open(final Path path, final boolean readOnly) throws IOException
    {
        final byte[] raw = path.toAbsolutePath().toString().getBytes(StandardCharsets.UTF_8);
        final byte[] cString = new byte[raw.length + 1];
        System.arraycopy(raw, 0, cString, 0, raw.length);
        while (true)
        {
            try
            {
                return LIBC.open(cString, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
            }
            catch (final LastErrorException ex)
            {
                if (ex.getErrorCode() != EINTR)
                {
                    throw new IOException("open(" + path + ") failed: errno " + ex.getErrorCode(), ex);
                }
            }
        }
    }

    static void close(final int fd) throws IOException
    {
        try
        {
            LIBC.close(fd);
        }
        catch (final LastErrorException ex)
        {
            throw new IOException("close(fd " + fd + ") failed: errno " + ex.getErrorCode(), ex);
        }
    }

    /**
     * @return the new offset, or {@code -1} when {@code errno} is ENXIO (no data/hole at or after
     *         {@code offset} before end of file).
     * @throws LastErrorException for every other errno, so callers can tell "unsupported" apart.
     */
    static long lseek(final int fd, final long offset, final int whence)
    {
        try
        {
            return LIBC.lseek(fd, offset, whence);
        }
        catch (final LastErrorException ex)
        {
            if (ex.getErrorCode() == ENXIO)
            {
                return -1;
            }
            throw ex;
        }
    }

    /**
     * Calls {@code fallocate}, retrying on EINTR.
     *
     * @throws LastErrorException with the errno on failure (EOPNOTSUPP when the file system refuses the mode).
     */
    static void fallocate(final int fd, final int mode, final long offset, final long length)
    {
        while (true)
        {
            try
            {
                LIBC.fallocate(fd, mode, offset, length);
                return;
            }
            catch (final LastErrorException ex)
            {
                if (ex.getErrorCode() != EINTR)
                {
                    throw ex;
                }
            }
        }
    }

    /**
     * Copies up to {@code length} bytes from {@code fdIn} at {@code offIn} to {@code fdOut} at {@code offOut} inside
     * the kernel (page cache to page cache, no user-space buffer), retrying on EINTR; file positions are untouched.
     *
     * @return the bytes copied, 0 at the source's end of file.
     * @throws LastErrorException with the errno on failure (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP: not possible here).
     */
    static long copyFileRange(final int fdIn, final long offIn, final int fdOut, final long offOut, final long length)
    {
        final Memory offsets = OFFSETS.get();
        while (true)
        {
            // Set before every attempt: the kernel advances them, and a call interrupted by EINTR copied nothing.
            offsets.setLong(0, offIn);
            offsets.setLong(8, offOut);
            try
            {
                return LIBC.copy_file_range(fdIn, offsets.share(0), fdOut, offsets.share(8), length, 0);
            }
            catch (final LastErrorException ex)
            {
                if (ex.getErrorCode() != EINTR)
                {
                    throw ex;
                }
            }
        }
    }

    /** @return whether an errno means "this file system or kernel does not do that". */
    static boolean isUnsupported(final int errno)
    {
        return errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL || errno == EXDEV;
    }
}
