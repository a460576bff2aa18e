package dev.tidemark.bitmap;

/**
 * Receives extents from a bitmap walk on the walking thread; implementations need no synchronisation
 * of their own unless they hand the extents to other threads.
 *
 * <p>Extents arrive in ascending order, never overlap, and adjacent extents of the same kind are
 * already coalesced. Offsets and lengths are in bytes of the tracked disk.
 */
@FunctionalInterface
public interface ExtentConsumer
{
    /**
     * Accepts one extent.
     *
     * @param offset first byte of the extent.
     * @param length bytes in the extent, always greater than zero.
     * @return {@code true} to continue the walk, {@code false} to stop it early.
     */
    boolean accept(long offset, long length);
}
