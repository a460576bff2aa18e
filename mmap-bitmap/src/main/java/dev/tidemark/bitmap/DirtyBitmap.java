package dev.tidemark.bitmap;

/**
 * A mutable dirty bitmap: {@link #mark} is lock-free and safe from any number of threads; every other
 * mutator (clear, merge, resize, force, close) must be called from one controlling thread at a time,
 * which may run concurrently with markers and readers. {@code MappedBitmap} relaxes this for
 * {@link #merge}, which it makes safe from any thread.
 *
 * <p>Implementations keep the bits in off-heap memory: a mapped file for persistent bitmaps, lazily zeroed
 * memory for anonymous ones (successors, non-persistent bitmaps).
 */
public interface DirtyBitmap extends BitmapView, AutoCloseable
{
    /**
     * Marks every chunk that {@code [offset, offset + length)} touches. Tests before setting, so a chunk
     * that is already dirty costs one read and no write. Pages of the backing file that gained bits are
     * remembered for {@link #force()}.
     *
     * @param offset first byte written, {@code 0 <= offset < diskSize}.
     * @param length bytes written, {@code length > 0} and {@code offset + length <= diskSize}.
     * @return {@code true} if at least one bit went from 0 to 1.
     * @throws IllegalArgumentException if the range is empty, negative or beyond the disk; no bit changes.
     */
    boolean mark(long offset, long length);

    /**
     * Clears every chunk that lies entirely inside {@code [offset, offset + length)}, and a partial chunk
     * at the disk's end when the range reaches the end (QEMU's rule for reset).
     *
     * @throws IllegalArgumentException if the range is negative or beyond the disk; no bit changes.
     */
    void clear(long offset, long length);

    /** Clears every bit. */
    void clearAll();

    /**
     * ORs {@code source} into this bitmap. Both must track the same disk size. A source with a finer or
     * coarser granularity is merged by marking every chunk of this bitmap that any dirty source chunk
     * touches, so no dirty byte is lost.
     *
     * @throws IllegalArgumentException if the disk sizes differ; this bitmap is then unchanged.
     */
    void merge(BitmapView source);

    /**
     * Makes the pages of the backing file that gained bits since the last force durable, and only those.
     * A no-op for anonymous bitmaps.
     *
     * @return how many pages were forced.
     */
    int force();

    /** @return whether this bitmap is backed by a file. */
    boolean isPersistent();

    /** @return whether the trust rule on open found the bits unreliable (QEMU's {@code inconsistent}). */
    boolean isInconsistent();

    /** @return a view that exposes no mutator, for exporters and backup readers. */
    BitmapView readOnlyView();

    /** Closes the bitmap; for a file this is a clean close that clears the in-use mark. */
    @Override
    void close();
}
