package dev.tidemark.io;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * As thread-safe as the store it wraps: a {@link BlockStore} that passes every call to another, for wrappers that
 * change a few calls (inject failures, record writes) and override only those.
 */
public abstract class ForwardingBlockStore implements BlockStore
{
    private final BlockStore delegate;

    /** @param delegate the store that does the work. */
    protected ForwardingBlockStore(final BlockStore delegate)
    {
        this.delegate = delegate;
    }

    /** @return the wrapped store. */
    public BlockStore delegate()
    {
        return delegate;
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
        delegate.write(offset, src);
    }

    @Override
    public void flush() throws IOException
    {
        delegate.flush();
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        delegate.discard(offset, length);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
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
