package dev.tidemark.io.testing;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;

import java.nio.ByteBuffer;
import java.util.Set;

/**
 * A writable export that keeps no data, for tests of how requests are completed: reads return without filling,
 * and every modifying request goes to {@link #modify}; as thread-safe as a subclass's {@code modify}.
 */
public abstract class DiscardingExport implements NbdExport
{
    private final String name;
    private final long size;
    private final Set<Feature> features;

    /**
     * @param name the export's name.
     * @param size its size in bytes.
     * @param features what it offers.
     */
    protected DiscardingExport(final String name, final long size, final Set<Feature> features)
    {
        this.name = name;
        this.size = size;
        this.features = Set.copyOf(features);
    }

    @Override
    public String name()
    {
        return name;
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
    public Set<Feature> features()
    {
        return features;
    }

    @Override
    public int read(final long offset, final ByteBuffer dst)
    {
        dst.position(dst.limit());
        return NbdProtocol.OK;
    }

    @Override
    public void write(final long offset, final ByteBuffer data, final int flags, final NbdCompletion done)
    {
        modify(offset, done);
    }

    @Override
    public void flush(final NbdCompletion done)
    {
        modify(-1, done);
    }

    @Override
    public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        modify(offset, done);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        modify(offset, done);
    }

    /**
     * Answers one modifying request.
     *
     * @param offset the request's offset, or -1 for a flush.
     * @param done its completion.
     */
    protected abstract void modify(long offset, NbdCompletion done);
}
