package dev.tidemark.engine;

import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A block store in a heap array for tests; safe for concurrent use (every call holds the monitor), with a hook
 * that runs before each data-changing call on the calling thread.
 */
class HeapStore implements BlockStore
{
    /** Runs before a data-changing store call; may throw to fail it. */
    @FunctionalInterface
    interface BeforeChange
    {
        void before(long offset, long length) throws IOException;
    }

    private final byte[] data;
    private volatile BeforeChange hook = (offset, length) -> { };
    private volatile int flushes;

    HeapStore(final int size)
    {
        data = new byte[size];
    }

    void hook(final BeforeChange value)
    {
        hook = value;
    }

    int flushes()
    {
        return flushes;
    }

    synchronized byte[] snapshot()
    {
        return data.clone();
    }

    @Override
    public long size()
    {
        return data.length;
    }

    @Override
    public boolean isReadOnly()
    {
        return false;
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
            java.util.Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
        }
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
    {
        check(offset, length);
        sink.accept(offset, length, true, false);
    }

    @Override
    public void close()
    {
        // nothing to release
    }

    private void check(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset + length > data.length)
        {
            throw new IllegalArgumentException("range " + offset + "+" + length + " outside " + data.length);
        }
    }
}
