package dev.tidemark.io.testing;

import dev.tidemark.io.BlockStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A store that fails its n-th data-changing call and every one after, or its next reads; safe for concurrent use.
 *
 * <p>The daemon ships a store of its own for its test command ({@code dev.tidemark.daemon.FaultyStore}, flipped by
 * {@code __dev.tidemark_x-inject-error}); this one is for tests, which count calls.
 */
public final class FaultyStore implements BlockStore
{
    private final BlockStore delegate;
    private final AtomicLong changes = new AtomicLong();
    private volatile long failFrom = Long.MAX_VALUE;
    private volatile String message = "Input/output error";
    private final java.util.concurrent.atomic.AtomicInteger readFailures = new java.util.concurrent.atomic.AtomicInteger();

    public FaultyStore(final BlockStore delegate)
    {
        this.delegate = delegate;
    }

    /**
     * @param nth the first failing call (1-based), counted from now.
     * @param text the error text.
     */
    public void failFrom(final long nth, final String text)
    {
        message = text;
        failFrom = changes.get() + nth;
    }

    /** @param count how many of the next reads fail. */
    public void failReads(final int count)
    {
        readFailures.set(count);
    }

    /** Ends the failures. */
    public void heal()
    {
        failFrom = Long.MAX_VALUE;
    }

    private void check() throws IOException
    {
        if (changes.incrementAndGet() >= failFrom)
        {
            throw new IOException(message);
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
        if (readFailures.getAndUpdate(n -> Math.max(0, n - 1)) > 0)
        {
            throw new IOException("Input/output error");
        }
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
}
