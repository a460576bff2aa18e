package dev.tidemark.daemon;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * A store whose writes can be made to fail on demand, for tests of job error paths; safe for concurrent use by
 * any number of threads when the wrapped store is (the switch is a volatile flag).
 *
 * <p>Only a daemon started with test commands wraps target stores in it; {@code __dev.tidemark_x-inject-error}
 * flips the switch.
 */
final class FaultyStore implements BlockStore
{
    private final BlockStore delegate;
    private volatile boolean failWrites;

    FaultyStore(final BlockStore delegate)
    {
        this.delegate = delegate;
    }

    BlockStore delegate()
    {
        return delegate;
    }

    void failWrites(final boolean on)
    {
        failWrites = on;
    }

    private void check() throws IOException
    {
        if (failWrites)
        {
            throw new IOException("Input/output error (injected)");
        }
    }

    @Override
    public long size()
    {
        return delegate.size();
    }

    @Override
    public boolean isReadOnly()
    {
        return delegate.isReadOnly();
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        delegate.read(offset, dst);
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        check();
        delegate.write(offset, src);
    }

    @Override
    public void flush() throws IOException
    {
        check();
        delegate.flush();
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        check();
        delegate.discard(offset, length);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        check();
        delegate.writeZeroes(offset, length, mayUnmap);
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
        throws IOException
    {
        delegate.forEachAllocationExtent(offset, length, sink);
    }

    @Override
    public void close() throws IOException
    {
        delegate.close();
    }

    @Override
    public String toString()
    {
        return delegate.toString();
    }
}
