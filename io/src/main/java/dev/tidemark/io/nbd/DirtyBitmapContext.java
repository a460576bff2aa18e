package dev.tidemark.io.nbd;

/**
 * A {@code qemu:dirty-bitmap:NAME} context over any source of dirty extents; as thread-safe as that
 * source (the server calls it from every connection's reader thread).
 *
 * <p>The engine wires a bitmap view without {@code io} depending on the bitmap module, for example
 * {@code new DirtyBitmapContext(view.name(), (o, l, v) -> view.forEachDirtyExtent(o, l, v::accept))}.
 * Clean stretches become extents with flags 0, dirty ones {@link NbdProtocol#STATE_DIRTY}, as QEMU
 * reports them.
 */
public final class DirtyBitmapContext implements MetaContext
{
    private final String name;
    private final DirtyExtents source;

    /**
     * @param bitmapName the bitmap's own name; the context is {@code qemu:dirty-bitmap:} + it.
     * @param source     walks dirty extents in ascending order.
     */
    public DirtyBitmapContext(final String bitmapName, final DirtyExtents source)
    {
        if (bitmapName.isEmpty())
        {
            throw new IllegalArgumentException("bitmap name must not be empty");
        }
        this.name = DIRTY_BITMAP_PREFIX + bitmapName;
        this.source = source;
    }

    @Override
    public String name()
    {
        return name;
    }

    @Override
    public void blockStatus(final long offset, final long length, final ExtentSink sink)
    {
        final long end = offset + length;
        final long[] cursor = {offset};
        final boolean[] stopped = {false};
        source.forEach(offset, length, (dirtyOffset, dirtyLength) ->
        {
            final long from = Math.max(dirtyOffset, cursor[0]);
            final long to = Math.min(dirtyOffset + dirtyLength, end);
            if (to <= from)
            {
                return to < end;
            }
            if (from > cursor[0] && !sink.extent(from - cursor[0], 0))
            {
                stopped[0] = true;
                return false;
            }
            cursor[0] = to;
            if (!sink.extent(to - from, NbdProtocol.STATE_DIRTY))
            {
                stopped[0] = true;
                return false;
            }
            return to < end;
        });
        if (!stopped[0] && cursor[0] < end)
        {
            sink.extent(end - cursor[0], 0);
        }
    }

    /** Walks dirty extents; called on the server's reader threads. */
    @FunctionalInterface
    public interface DirtyExtents
    {
        /**
         * Visits the dirty extents intersecting {@code [offset, offset + length)} in ascending order.
         *
         * @param visitor returns {@code false} to stop the walk.
         */
        void forEach(long offset, long length, Visitor visitor);
    }

    /** Receives one dirty extent. */
    @FunctionalInterface
    public interface Visitor
    {
        /** @return {@code false} to stop. */
        boolean accept(long offset, long length);
    }
}
