package dev.tidemark.engine.export;

/** How an export is removed (QMP's {@code BlockExportRemoveMode}); an immutable enum. */
public enum RemoveMode
{
    /** Refuse while clients are connected. */
    SAFE,
    /** Disconnect the clients: they stop being read, their in-flight requests are answered, then they close. */
    HARD;

    /**
     * @param qmpName {@code safe} or {@code hard}.
     * @return the mode, or {@code null} when unknown.
     */
    public static RemoveMode fromQmpName(final String qmpName)
    {
        for (final RemoveMode mode : values())
        {
            if (mode.qmpName().equals(qmpName))
            {
                return mode;
            }
        }
        return null;
    }

    /** @return the QMP spelling. */
    public String qmpName()
    {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
