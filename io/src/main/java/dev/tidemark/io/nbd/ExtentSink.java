package dev.tidemark.io.nbd;

/**
 * Receives block-status extents on the thread that produces them; implementations need no
 * synchronisation.
 *
 * <p>Extents are consecutive: the first starts at the requested offset and each next one starts where
 * the previous ended.
 */
@FunctionalInterface
public interface ExtentSink
{
    /**
     * @param length bytes in the extent, greater than zero.
     * @param flags  the context's status flags for the extent.
     * @return {@code false} to stop producing extents.
     */
    boolean extent(long length, int flags);
}
