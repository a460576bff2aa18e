package dev.tidemark.bench.engine;

import dev.tidemark.io.BlockStore;
import java.nio.ByteBuffer;

/** A store that keeps nothing, to measure the ring alone; stateless and safe for any number of threads. */
final class NullStore implements BlockStore
{
    private final long size;

    NullStore(final long size)
    {
        this.size = size;
    }

    @Override
    public long size()
    {
        return size;
    }

    @Override
    public boolean isReadOnly()
    {
        return false;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst)
    {
        dst.position(dst.limit());
    }

    @Override
    public void write(final long offset, final ByteBuffer src)
    {
        // the data goes nowhere; the buffer is shared by the benchmark and left untouched
    }

    @Override
    public void flush()
    {
        // nothing to make durable
    }

    @Override
    public void discard(final long offset, final long length)
    {
        // nothing to discard
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap)
    {
        // nothing to zero
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
    {
        sink.accept(offset, length, false, true);
    }

    @Override
    public void close()
    {
        // nothing to release
    }
}
