package dev.tidemark.io.nbd;

import java.util.BitSet;

/**
 * A test dirty bitmap: a {@link BitSet} of chunks at a granularity; safe for concurrent use (every
 * access synchronises on the bit set).
 */
final class BitSetBitmap
{
    final long granularity;
    final long diskSize;
    final BitSet bits = new BitSet();

    BitSetBitmap(final long granularity, final long diskSize)
    {
        this.granularity = granularity;
        this.diskSize = diskSize;
    }

    void mark(final long offset, final long length)
    {
        if (length <= 0)
        {
            return;
        }
        synchronized (bits)
        {
            bits.set((int)(offset / granularity), (int)((offset + length - 1) / granularity) + 1);
        }
    }

    boolean isDirty(final long offset)
    {
        synchronized (bits)
        {
            return bits.get((int)(offset / granularity));
        }
    }

    BitSet snapshot()
    {
        synchronized (bits)
        {
            return (BitSet)bits.clone();
        }
    }

    /** Dirty extents clipped to the request, as the engine's bitmap view would walk them. */
    DirtyBitmapContext.DirtyExtents source()
    {
        return (offset, length, visitor) ->
        {
            final BitSet copy = snapshot();
            final long end = offset + length;
            int chunk = copy.nextSetBit((int)(offset / granularity));
            while (chunk >= 0 && (long)chunk * granularity < end)
            {
                final int clear = copy.nextClearBit(chunk);
                final long from = Math.max(offset, chunk * granularity);
                final long to = Math.min(end, Math.min(diskSize, clear * granularity));
                if (to > from && !visitor.accept(from, to - from))
                {
                    return;
                }
                chunk = copy.nextSetBit(clear);
            }
        };
    }
}
