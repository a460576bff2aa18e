package dev.tidemark.bench.nbd;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A plain file as a {@link BlockStore} for the NBD benchmark's server side; safe for concurrent use
 * (positional FileChannel I/O only).
 *
 * <p>Reports the whole file as allocated data (Java has no SEEK_HOLE) and writes zeroes for
 * {@link #discard} and {@link #writeZeroes}. It stands in until the io module's raw file store is
 * merged; the harness only needs reads, writes and flushes.
 */
public final class FileChannelStore implements BlockStore
{
    private static final int ZERO_CHUNK = 1 << 20;

    private final FileChannel channel;
    private final long size;
    private final boolean readOnly;

    /**
     * @param file     an existing file.
     * @param readOnly open it read-only.
     */
    public FileChannelStore(final Path file, final boolean readOnly) throws IOException
    {
        this.channel = readOnly ? FileChannel.open(file, StandardOpenOption.READ)
            : FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        this.size = channel.size();
        this.readOnly = readOnly;
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public boolean isReadOnly()
    {
        return readOnly;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        check(offset, dst.remaining());
        long at = offset;
        while (dst.hasRemaining())
        {
            final int n = channel.read(dst, at);
            if (n < 0)
            {
                throw new IOException("file shrank: short read at " + at);
            }
            at += n;
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        check(offset, src.remaining());
        long at = offset;
        while (src.hasRemaining())
        {
            at += channel.write(src, at);
        }
    }

    @Override
    public void flush() throws IOException
    {
        channel.force(false);
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        writeZeroes(offset, length, true);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        check(offset, length);
        final ByteBuffer zeroes = ByteBuffer.allocateDirect((int)Math.min(ZERO_CHUNK, Math.max(1, length)));
        long at = offset;
        while (at < offset + length)
        {
            zeroes.clear().limit((int)Math.min(zeroes.capacity(), offset + length - at));
            while (zeroes.hasRemaining())
            {
                at += channel.write(zeroes, at);
            }
        }
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
    {
        check(offset, length);
        if (length > 0)
        {
            sink.accept(offset, length, true, false);
        }
    }

    @Override
    public void close() throws IOException
    {
        channel.close();
    }

    private void check(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") lies outside the "
                + size + "-byte file");
        }
    }
}
