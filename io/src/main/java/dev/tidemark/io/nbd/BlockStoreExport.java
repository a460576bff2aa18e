package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.IoReason;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * An {@link NbdExport} over any {@link BlockStore}; as thread-safe as the store (which the
 * {@code BlockStore} contract makes safe for concurrent use), completing each operation on the calling
 * thread before returning.
 *
 * <p>Offers {@code base:allocation} from {@link BlockStore#forEachAllocationExtent} (unallocated is
 * {@link NbdProtocol#STATE_HOLE}, known zeroes {@link NbdProtocol#STATE_ZERO}) plus any extra contexts
 * given, such as {@link DirtyBitmapContext}s. FAST_ZERO is accepted only without NO_HOLE, where the store
 * may deallocate (punching a hole is fast for files); with NO_HOLE it fails with ENOTSUP.
 */
public final class BlockStoreExport extends StoreExportBase
{
    private final BlockStore store;

    /**
     * @param name          export name.
     * @param description   free text, may be empty.
     * @param store         the data; not closed by the export.
     * @param readOnly      refuse writes even if the store accepts them.
     * @param extraContexts contexts offered after {@code base:allocation}.
     */
    public BlockStoreExport(final String name, final String description, final BlockStore store,
        final boolean readOnly, final List<MetaContext> extraContexts)
    {
        super(name, description, store, readOnly, true, extraContexts);
        this.store = store;
    }

    /** A writable export with no description and only {@code base:allocation}. */
    public BlockStoreExport(final String name, final BlockStore store)
    {
        this(name, "", store, false, List.of());
    }

    @Override
    public long size()
    {
        return store.size();
    }

    @Override
    public int read(final long offset, final ByteBuffer dst)
    {
        return call(0, () -> store.read(offset, dst));
    }

    @Override
    public void write(final long offset, final ByteBuffer data, final int flags, final NbdCompletion done)
    {
        done.complete(call(flags, () -> store.write(offset, data)));
    }

    @Override
    public void flush(final NbdCompletion done)
    {
        done.complete(call(0, store::flush));
    }

    @Override
    public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        done.complete(call(flags, () -> store.discard(offset, length)));
    }

    @Override
    public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        if (refusedAsNotFast(flags, done))
        {
            return;
        }
        done.complete(call(flags, () -> store.writeZeroes(offset, length, mayUnmap(flags))));
    }

    /** A store call that may fail. */
    @FunctionalInterface
    private interface StoreCall
    {
        void run() throws IOException;
    }

    /** @return the NBD error value of a store call (flushed after it when the request carries FUA), on this thread. */
    private int call(final int flags, final StoreCall call)
    {
        try
        {
            call.run();
            if ((flags & NbdProtocol.CMD_FLAG_FUA) != 0)
            {
                store.flush();
            }
            return NbdProtocol.OK;
        }
        catch (final IOException | RuntimeException ex)
        {
            return errorOf(ex);
        }
    }

    private static int errorOf(final Exception ex)
    {
        return NbdProtocol.errorOf(IoReason.of(ex));
    }
}
