package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;

import java.nio.ByteBuffer;

/** A heap {@link BlockStore} for tests; safe for concurrent use (every method synchronises on the store). */
final class MemoryStore implements BlockStore
{
    private final byte[] bytes;
    private final boolean readOnly;

    MemoryStore(final byte[] initial, final boolean readOnly)
    {
        this.bytes = initial.clone();
        this.readOnly = readOnly;
    }

    @Override
    public long size()
    {
        return bytes.length;
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
        dst.put(bytes, (int)offset, dst.remaining());
    }

    @Override
    public synchronized void write(final long offset, final ByteBuffer src)
    {
        check(offset, src.remaining());
        src.get(bytes, (int)offset, src.remaining());
    }

    @Override
    public void flush()
    {
    }

    @Override
    public synchronized void discard(final long offset, final long length)
    {
        writeZeroes(offset, length, true);
    }

    @Override
    public synchronized void writeZeroes(final long offset, final long length, final boolean mayUnmap)
    {
        check(offset, length);
        java.util.Arrays.fill(bytes, (int)offset, (int)(offset + length), (byte)0);
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

    synchronized byte[] copy(final int from, final int to)
    {
        return java.util.Arrays.copyOfRange(bytes, from, to);
    }

    private void check(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > bytes.length || length > bytes.length - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside " + bytes.length);
        }
    }

    @Override
    public void close()
    {
    }
}
