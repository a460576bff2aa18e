package dev.tidemark.engine;

/**
 * Something besides the recording bitmaps that the mark step updates for every data-changing request; every
 * method runs on the disk's mark thread only.
 *
 * <p>The checkpoints' epoch map is one ({@code dev.tidemark.engine.checkpoint}): it stamps the request's chunks
 * with the current checkpoint epoch. Like a bitmap's, its stores are forced by the ring's group commit in durable
 * mode before the data they cover is written (I1, I5).
 */
public interface MarkHook
{
    /**
     * Records a data-changing request.
     *
     * @param offset first byte.
     * @param length bytes, {@code > 0}.
     * @return whether anything changed that {@link #force()} must make durable.
     */
    boolean mark(long offset, long length);

    /**
     * Makes durable what the marks since the last call changed.
     *
     * @return pages forced.
     */
    int force();

    /**
     * Follows the disk's durable mode, switched at a cut; turning it on makes everything marked so far durable.
     *
     * @param on the mode.
     */
    default void durable(final boolean on)
    {
    }
}
