package dev.tidemark.engine.job;

import java.util.Locale;

/**
 * What happens to a backup's bitmap when the job ends (QEMU's {@code BitmapSyncMode}); immutable.
 */
public enum BitmapMode
{
    /** Success: the bitmap keeps only the writes made during the job. Failure: nothing is lost (parent | new). */
    ON_SUCCESS,
    /** On any outcome the bitmap keeps the chunks not successfully copied plus the writes made during the job. */
    ALWAYS,
    /** The bitmap keeps everything: parent | new writes. */
    NEVER;

    /** @return the QMP spelling ({@code on-success}, ...). */
    public String qmpName()
    {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    /**
     * @param qmpName a QMP bitmap-mode name.
     * @return the mode, or {@code null} when unknown.
     */
    public static BitmapMode fromQmpName(final String qmpName)
    {
        for (final BitmapMode m : values())
        {
            if (m.qmpName().equals(qmpName))
            {
                return m;
            }
        }
        return null;
    }
}
