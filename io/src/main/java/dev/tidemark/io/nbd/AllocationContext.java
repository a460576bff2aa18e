package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;
import java.io.IOException;

/**
 * {@code base:allocation} from a store's allocation walk, for every export of a {@link BlockStore}; as thread-safe
 * as the store.
 */
public final class AllocationContext implements MetaContext
{
    private final BlockStore store;

    /** @param store the store whose holes and zero extents are reported. */
    public AllocationContext(final BlockStore store)
    {
        this.store = store;
    }

    @Override
    public String name()
    {
        return BASE_ALLOCATION;
    }

    @Override
    public void blockStatus(final long offset, final long length, final ExtentSink sink) throws IOException
    {
        final long end = offset + length;
        final long[] cursor = {offset};
        store.forEachAllocationExtent(offset, length, (extentOffset, extentLength, allocated, zero) ->
        {
            // Stores may report whole extents that start before the request: clip to it.
            final long to = Math.min(end, extentOffset + extentLength);
            if (to <= cursor[0])
            {
                return true;
            }
            final long clipped = to - cursor[0];
            cursor[0] = to;
            final int flags = (allocated ? 0 : NbdProtocol.STATE_HOLE) | (zero ? NbdProtocol.STATE_ZERO : 0);
            return sink.extent(clipped, flags) && to < end;
        });
    }
}
