package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.BitSet;

/**
 * A file-backed {@link BlockStore} for tests that tracks allocation per 4 KiB page in memory; safe for
 * concurrent use (positional file I/O, allocation under a lock).
 *
 * <p>A page is allocated once written; zeroing with unmap allowed deallocates whole pages (the file
 * gets zeroes written, since Java cannot punch holes). Pages that read as zero at open are unallocated.
 */
final class TestFileStore implements BlockStore
{
    static final int PAGE = 4096;

    private final FileChannel channel;
    private final long size;
    private final boolean readOnly;
    private final BitSet allocated = new BitSet();

    TestFileStore(final Path file, final boolean readOnly) throws IOException
    {
        this.channel = readOnly ? FileChannel.open(file, StandardOpenOption.READ)
            : FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        this.size = channel.size();
        this.readOnly = readOnly;
        final ByteBuffer page = ByteBuffer.allocate(PAGE);
        for (long at = 0; at < size; at += PAGE)
        {
            page.clear().limit((int)Math.min(PAGE, size - at));
            channel.read(page, at);
            page.flip();
            while (page.hasRemaining())
            {
                if (page.get() != 0)
                {
                    allocated.set((int)(at / PAGE));
                    break;
                }
            }
        }
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
                throw new IOException("short read at " + at);
            }
            at += n;
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        check(offset, src.remaining());
        final long length = src.remaining();
        long at = offset;
        while (src.hasRemaining())
        {
            at += channel.write(src, at);
        }
        mark(offset, length, true);
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
        final ByteBuffer zeroes = ByteBuffer.allocate((int)Math.min(length, 1 << 20));
        for (long at = offset; at < offset + length;)
        {
            zeroes.clear().limit((int)Math.min(zeroes.capacity(), offset + length - at));
            while (zeroes.hasRemaining())
            {
                at += channel.write(zeroes, at);
            }
        }
        // Whole pages inside the range become unallocated when unmapping is allowed; the rest is written zeroes.
        final long first = (offset + PAGE - 1) / PAGE;
        final long end = offset + length == size ? (size + PAGE - 1) / PAGE : (offset + length) / PAGE;
        if (mayUnmap && first < end)
        {
            mark(offset, first * PAGE - offset, true);
            synchronized (allocated)
            {
                allocated.clear((int)first, (int)end);
            }
            if (end * PAGE < offset + length)
            {
                mark(end * PAGE, offset + length - end * PAGE, true);
            }
        }
        else
        {
            mark(offset, length, true);
        }
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
    {
        check(offset, length);
        long at = offset;
        final long end = offset + length;
        while (at < end)
        {
            final boolean isAllocated;
            final long runEnd;
            synchronized (allocated)
            {
                final int page = (int)(at / PAGE);
                isAllocated = allocated.get(page);
                final int nextPage = isAllocated ? allocated.nextClearBit(page) : nextSetOrEnd(page);
                runEnd = Math.min(end, (long)nextPage * PAGE);
            }
            if (!sink.accept(at, runEnd - at, isAllocated, !isAllocated))
            {
                return;
            }
            at = runEnd;
        }
    }

    boolean isAllocated(final long offset)
    {
        synchronized (allocated)
        {
            return allocated.get((int)(offset / PAGE));
        }
    }

    private int nextSetOrEnd(final int page)
    {
        final int next = allocated.nextSetBit(page);
        return next < 0 ? Integer.MAX_VALUE / 2 : next;
    }

    private void mark(final long offset, final long length, final boolean value)
    {
        if (length <= 0)
        {
            return;
        }
        synchronized (allocated)
        {
            allocated.set((int)(offset / PAGE), (int)((offset + length + PAGE - 1) / PAGE), value);
        }
    }

    private void check(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside " + size + " bytes");
        }
    }

    @Override
    public void close() throws IOException
    {
        channel.close();
    }
}
