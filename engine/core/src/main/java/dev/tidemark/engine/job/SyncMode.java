package dev.tidemark.engine.job;

import java.util.Locale;

/**
 * What a backup copies (QEMU's {@code MirrorSyncMode} as {@code blockdev-backup} accepts it); immutable.
 */
public enum SyncMode
{
    /** Everything. */
    FULL,
    /**
     * The top layer's allocated data. A raw disk has one layer, so this copies the extents the store reports
     * allocated ({@code SEEK_DATA}/{@code SEEK_HOLE}); unallocated ranges become holes in the target.
     */
    TOP,
    /** Nothing by itself: only copy-before-write (image fleecing). */
    NONE,
    /** Legacy alias of {@link #BITMAP} with bitmap-mode {@code on-success}. */
    INCREMENTAL,
    /** The chunks dirty in a bitmap. */
    BITMAP;

    /** @return the QMP spelling. */
    public String qmpName()
    {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * @param qmpName a QMP sync name.
     * @return the mode, or {@code null} when unknown.
     */
    public static SyncMode fromQmpName(final String qmpName)
    {
        for (final SyncMode m : values())
        {
            if (m.qmpName().equals(qmpName))
            {
                return m;
            }
        }
        return null;
    }
}
