package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.DirtyBitmap;

/**
 * A busy bitmap's successor, which records new writes while a job reads the frozen parent; its lifecycle
 * (created, abdicated, reclaimed) is driven on the ring's mark thread, its bitmaps may be read from any thread.
 *
 * <p>QEMU's model: on success with {@code on-success} the successor {@link BitmapRegistry#abdicate abdicates}
 * into the parent's place; otherwise the parent {@link BitmapRegistry#reclaim reclaims} it (parent |= successor),
 * so no dirty bit is lost. A job in bitmap-mode {@code always} may clear chunks of {@link #frozenParent()} as it
 * copies them, from its own thread, because nothing else touches a frozen parent.
 */
public final class Successor
{
    private final String bitmapName;
    private final DirtyBitmap frozenParent;
    private final DirtyBitmap bitmap;
    private final long fileId;
    private volatile boolean resolved;

    Successor(final String bitmapName, final DirtyBitmap frozenParent, final DirtyBitmap bitmap, final long fileId)
    {
        this.bitmapName = bitmapName;
        this.frozenParent = frozenParent;
        this.bitmap = bitmap;
        this.fileId = fileId;
    }

    /** @return the name of the bitmap this successor belongs to. */
    public String bitmapName()
    {
        return bitmapName;
    }

    /** @return the frozen parent: its bits are the chunks dirty at the cut; only the owning job may clear them. */
    public DirtyBitmap frozenParent()
    {
        return frozenParent;
    }

    /** @return the successor's own bits: writes after the cut. */
    public DirtyBitmap bitmap()
    {
        return bitmap;
    }

    /** @return the successor's file number, 0 when it is anonymous. */
    public long fileId()
    {
        return fileId;
    }

    /** @return whether it was abdicated or reclaimed already. */
    public boolean isResolved()
    {
        return resolved;
    }

    void markResolved()
    {
        resolved = true;
    }
}
