package dev.tidemark.io.testing;

import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * A block store in a heap array for tests; safe for concurrent use (every data access holds the monitor), with a
 * hook that runs before each data-changing call on the calling thread, outside the monitor.
 */
public final class HeapStore implements BlockStore
{
    /** Runs before a data-changing store call, on the calling thread; may throw to fail it. */
    @FunctionalInterface
    public interface BeforeChange
    {
        /**
         * @param offset where the change starts.
         * @param length how many bytes it changes.
         * @throws IOException to fail the call.
         */
        void before(long offset, long length) throws IOException;
    }

    private final byte[] data;
    private final boolean readOnly;
    private volatile BeforeChange hook = (offset, length) -> { };
    private volatile int flushes;

    /** @param size bytes, all zero. */
    public HeapStore(final int size)
    {
        this(new byte[size], false);
    }

    /**
     * @param initial the content, copied.
     * @param readOnly whether the store says it is read-only (writes still work: callers must refuse them).
     */
    public HeapStore(final byte[] initial, final boolean readOnly)
    {
        this.data = initial.clone();
        this.readOnly = readOnly;
    }

    /** @param value runs before each later data-changing call. */
    public void hook(final BeforeChange value)
    {
        hook = value;
    }

    /** @return how many flushes the store saw. */
    public int flushes()
    {
        return flushes;
    }

    /** @return a copy of the whole content. */
    public synchronized byte[] snapshot()
    {
        return data.clone();
    }

    /**
     * @param from first byte.
     * @param to end, exclusive.
     * @return a copy of that part of the content.
     */
    public synchronized byte[] copy(final int from, final int to)
    {
        return Arrays.copyOfRange(data, from, to);
    }

    @Override
    public long size()
    {
        return data.length;
    }

    @Override
    public boolean isReadOnly()
    {
        return readOnly;
    }

    @Override
    public synchronized void read(final long offset, final ByteBuffer dst)
    {
        check(offset, dst.remaining());
        dst.put(data, (int) offset, dst.remaining());
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        check(offset, src.remaining());
        hook.before(offset, src.remaining());
        synchronized (this)
        {
            src.get(data, (int) offset, src.remaining());
        }
    }

    @Override
    public synchronized void flush()
    {
        flushes++;
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
        hook.before(offset, length);
        synchronized (this)
        {
            Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
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
    public void close()
    {
        // nothing to release
    }

    private void check(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > data.length || length > data.length - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside " + data.length);
        }
    }
}
