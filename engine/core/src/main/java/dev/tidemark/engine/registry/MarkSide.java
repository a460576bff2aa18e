package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.DirtyBitmap;

/**
 * The write ring's side of one {@link BitmapRegistry}; {@link #bindMarkThread} is called once by the mark thread as
 * it starts, every other method on the mark thread only (asserted or checked).
 *
 * <p>Only the ring may hold it: the registry hands out its one instance once ({@link BitmapRegistry#claimMarkSide()},
 * which the disk's ring calls when it is built), and ArchitectureTest fails the build if code outside
 * {@code dev.tidemark.engine.ring} uses this class or claims it. Java has no friend access across packages, so the
 * hooks are public methods of a class nobody else can obtain, not public methods of the registry an embedder
 * holds.
 */
public final class MarkSide
{
    private final BitmapRegistry registry;

    MarkSide(final BitmapRegistry registry)
    {
        this.registry = registry;
    }

    /**
     * Binds the registry to the ring's mark thread: from now on only that thread may change it.
     *
     * @param thread the mark thread.
     */
    public void bindMarkThread(final Thread thread)
    {
        registry.bindMarkThread(thread);
    }

    /** @return the bitmaps that record writes now; mark thread only (the array is replaced, never changed). */
    public DirtyBitmap[] recorders()
    {
        return registry.recorders();
    }

    /** Recomputes the recording set after a control request committed or rolled back; mark thread only. */
    public void recomputeRecorders()
    {
        registry.computeRecordersAfterChange();
    }
}
