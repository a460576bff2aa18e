package dev.tidemark.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SelectableChannel;
import java.nio.channels.WritableByteChannel;

/**
 * Stateless and safe for concurrent use by any number of threads (each call uses its own pooled buffer;
 * a file-to-file {@link Method#TRANSFER_TO} sets the destination channel's position, so such calls on one
 * destination serialize on it): copies byte ranges from a file to a file or to
 * a socket, each call looping until the whole range has moved.
 *
 * <p>Two methods: {@link Method#TRANSFER_TO} ({@code FileChannel.transferTo}, which the kernel may turn
 * into {@code sendfile}/{@code copy_file_range}) and {@link Method#DIRECT_BUFFER} (positional reads into
 * a pooled, aligned 1 MiB direct buffer and writes from it). The defaults, {@link #FILE_TO_FILE_DEFAULT}
 * and {@link #FILE_TO_SOCKET_DEFAULT}, are whichever measured faster on this machine type
 * (an earlier {@code TransferBenchmark}, figures in docs/benchmarks.md). The backup pump does not use this class:
 * it copies with {@link RawFileStore#copyTo} or a pooled buffer, measured by the bench module's
 * {@code PumpBenchmark}.
 *
 * <p>A source that ends before the range does is an {@link IOException} naming where; negative offsets or
 * lengths are an {@link IllegalArgumentException}; a non-blocking socket is refused, since a loop over it
 * would spin.
 */
public final class Transfer
{
    /** How the bytes move. */
    public enum Method
    {
        /** {@link FileChannel#transferTo}: the kernel copies without a user-space buffer. */
        TRANSFER_TO,
        /** Positional reads into a direct buffer and writes from it. */
        DIRECT_BUFFER
    }

    /**
     * The faster method for file to file copies between disk file systems, as measured (ext4: the buffer
     * loop ~1.3x faster); see {@link #fileToFileMethod(String)} for tmpfs, where it is the other way round.
     */
    public static final Method FILE_TO_FILE_DEFAULT = Method.DIRECT_BUFFER;
    /** The faster method for file to socket copies, as measured. */
    public static final Method FILE_TO_SOCKET_DEFAULT = Method.DIRECT_BUFFER;

    private static final int CHUNK = 1 << 20;
    private static final AlignedBufferPool POOL = new AlignedBufferPool(4096, CHUNK, CHUNK, 16);

    private Transfer()
    {
    }

    /**
     * @param fileSystemType the destination's file system type, as {@link RawFileStore#fileSystemType()}.
     * @return the faster file-to-file method there, as measured: {@code transferTo} on tmpfs (~1.3x),
     *         the direct-buffer loop elsewhere.
     */
    public static Method fileToFileMethod(final String fileSystemType)
    {
        return "tmpfs".equals(fileSystemType) ? Method.TRANSFER_TO : FILE_TO_FILE_DEFAULT;
    }

    /**
     * Copies {@code length} bytes between two raw stores, with the faster method for the destination's file
     * system; stores opened with O_DIRECT go through their own aligned read and write.
     *
     * @throws IllegalArgumentException if a range lies outside its store.
     * @throws IllegalStateException if {@code dst} is read-only.
     */
    public static void copy(
        final RawFileStore src,
        final long srcOffset,
        final RawFileStore dst,
        final long dstOffset,
        final long length) throws IOException
    {
        checkArguments(srcOffset, length);
        checkArguments(dstOffset, length);
        if (srcOffset > src.size() - length || dstOffset > dst.size() - length)
        {
            throw new IllegalArgumentException("copy of " + length + " bytes from " + src + " at " + srcOffset
                + " to " + dst + " at " + dstOffset + " leaves a store's range");
        }
        if (dst.isReadOnly())
        {
            throw new IllegalStateException("store " + dst.path() + " is read-only");
        }
        if (src.isDirect() || dst.isDirect())
        {
            throughBuffer(length,
                (done, chunk) -> src.read(srcOffset + done, chunk),
                (done, chunk) -> dst.write(dstOffset + done, chunk));
            return;
        }
        copy(src.channel(), srcOffset, dst.channel(), dstOffset, length, fileToFileMethod(dst.fileSystemType()));
    }

    /** Copies {@code length} bytes from {@code src} at {@code srcOffset} to {@code dst} at {@code dstOffset}. */
    public static void copy(
        final FileChannel src,
        final long srcOffset,
        final FileChannel dst,
        final long dstOffset,
        final long length) throws IOException
    {
        copy(src, srcOffset, dst, dstOffset, length, FILE_TO_FILE_DEFAULT);
    }

    /** As {@link #copy(FileChannel, long, FileChannel, long, long)}, with the method chosen. */
    public static void copy(
        final FileChannel src,
        final long srcOffset,
        final FileChannel dst,
        final long dstOffset,
        final long length,
        final Method method) throws IOException
    {
        checkArguments(srcOffset, length);
        if (dstOffset < 0)
        {
            throw new IllegalArgumentException("negative destination offset " + dstOffset);
        }
        if (method == Method.TRANSFER_TO)
        {
            // The kernel path needs the real channel as target, and it writes at the target's position:
            // callers that share a destination serialize on it here.
            synchronized (dst)
            {
                transferAll(src, srcOffset, length, dst, dstOffset);
            }
            return;
        }
        throughBuffer(length,
            (done, chunk) -> readFully(src, srcOffset + done, chunk, srcOffset, length, done),
            (done, chunk) ->
            {
                long position = dstOffset + done;
                while (chunk.hasRemaining())
                {
                    position += dst.write(chunk, position);
                }
            });
    }

    /** Sends {@code length} bytes of {@code src} from {@code offset} to a blocking socket (or any channel). */
    public static void send(final FileChannel src, final long offset, final long length,
        final WritableByteChannel socket) throws IOException
    {
        send(src, offset, length, socket, FILE_TO_SOCKET_DEFAULT);
    }

    /** As {@link #send(FileChannel, long, long, WritableByteChannel)}, with the method chosen. */
    public static void send(
        final FileChannel src,
        final long offset,
        final long length,
        final WritableByteChannel socket,
        final Method method) throws IOException
    {
        checkArguments(offset, length);
        if (socket instanceof SelectableChannel && !((SelectableChannel)socket).isBlocking())
        {
            throw new IllegalArgumentException("socket " + socket + " is non-blocking; Transfer needs blocking mode");
        }
        if (method == Method.TRANSFER_TO)
        {
            transferAll(src, offset, length, socket, -1);
            return;
        }
        throughBuffer(length,
            (done, chunk) -> readFully(src, offset + done, chunk, offset, length, done),
            (done, chunk) ->
            {
                while (chunk.hasRemaining())
                {
                    socket.write(chunk);
                }
            });
    }

    /**
     * Calls {@link FileChannel#transferTo} until the range has moved. With {@code targetOffset} at 0 or above the
     * target is a file written from there (its position is set before each call); with -1, a stream written where
     * it stands.
     */
    private static void transferAll(final FileChannel src, final long offset, final long length,
        final WritableByteChannel target, final long targetOffset) throws IOException
    {
        long done = 0;
        while (done < length)
        {
            if (targetOffset >= 0)
            {
                ((FileChannel)target).position(targetOffset + done);
            }
            final long n = src.transferTo(offset + done, length - done, target);
            if (n <= 0)
            {
                throw shortSource(offset, length, done, src);
            }
            done += n;
        }
    }

    /** Runs on the copying thread: one step of a buffered copy; {@code done} counts the range's bytes before it. */
    @FunctionalInterface
    private interface ChunkStep
    {
        void apply(long done, ByteBuffer chunk) throws IOException;
    }

    /** Moves {@code length} bytes a pooled chunk at a time: {@code fill} reads each chunk, {@code drain} writes it. */
    private static void throughBuffer(final long length, final ChunkStep fill, final ChunkStep drain)
        throws IOException
    {
        final ByteBuffer buffer = POOL.acquire(CHUNK);
        try
        {
            long done = 0;
            while (done < length)
            {
                buffer.clear().limit((int)Math.min(CHUNK, length - done));
                fill.apply(done, buffer);
                buffer.flip();
                drain.apply(done, buffer);
                done += buffer.limit();
            }
        }
        finally
        {
            POOL.release(buffer);
        }
    }

    private static void readFully(
        final FileChannel src,
        final long position,
        final ByteBuffer buffer,
        final long rangeStart,
        final long rangeLength,
        final long doneBefore) throws IOException
    {
        long at = position;
        while (buffer.hasRemaining())
        {
            final int n = src.read(buffer, at);
            if (n < 0)
            {
                throw shortSource(rangeStart, rangeLength, doneBefore + buffer.position(), src);
            }
            at += n;
        }
    }

    private static IOException shortSource(final long offset, final long length, final long done,
        final FileChannel src) throws IOException
    {
        return new IOException("source ended at offset " + (offset + done) + " (size " + src.size() + "), "
            + (length - done) + " bytes short of the range [" + offset + ", " + (offset + length) + ")");
    }

    private static void checkArguments(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > Long.MAX_VALUE - length)
        {
            throw new IllegalArgumentException("bad range [offset " + offset + ", length " + length + "]");
        }
    }
}
