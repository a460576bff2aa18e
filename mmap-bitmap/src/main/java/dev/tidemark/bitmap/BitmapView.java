package dev.tidemark.bitmap;

/**
 * A read-only view of a dirty bitmap, safe to read from any number of threads while writers mark.
 *
 * <p>Reads are not a snapshot: a walk that races with marking may or may not see bits set after it
 * started, but it never sees a bit that was set before it started as clean, and never sees a clean
 * bit as dirty unless a writer set it. Exporters and backup readers that need a fixed picture take
 * it from a bitmap that is frozen (busy) for them.
 *
 * <p>Every offset and length is in bytes of the tracked disk. A chunk is {@link #granularity()} bytes;
 * chunk {@code i} covers {@code [i * granularity, min((i + 1) * granularity, diskSize))}.
 */
public interface BitmapView
{
    /** @return the bitmap's name, 1..1023 bytes of UTF-8. */
    String name();

    /** @return bytes per chunk, a power of two between 512 B and 2 GiB. */
    long granularity();

    /** @return size in bytes of the disk the bitmap tracks. */
    long diskSize();

    /** @return {@code ceil(diskSize / granularity)}. */
    long chunkCount();

    /**
     * @param offset a byte of the disk, {@code 0 <= offset < diskSize}.
     * @return whether the chunk holding {@code offset} is dirty.
     */
    boolean isDirty(long offset);

    /**
     * @param offset where to start looking, {@code 0 <= offset <= diskSize}.
     * @return the first byte at or after {@code offset} whose chunk is dirty (clamped up to
     *         {@code offset} itself when its chunk is dirty), or {@code -1} if there is none.
     */
    long nextDirty(long offset);

    /**
     * @param offset where to start looking, {@code 0 <= offset <= diskSize}.
     * @return the first byte at or after {@code offset} whose chunk is clean, or {@code -1} if there is none.
     */
    long nextClean(long offset);

    /**
     * Walks the dirty extents that intersect {@code [offset, offset + length)}, clipped to that range,
     * coalesced, in ascending order. Cost is proportional to the number of dirty extents, not to the range.
     *
     * @param offset first byte of the range.
     * @param length bytes in the range; the range must lie within the disk.
     * @param consumer receives each extent; returning {@code false} stops the walk.
     */
    void forEachDirtyExtent(long offset, long length, ExtentConsumer consumer);

    /** @return how many chunks are dirty. */
    long dirtyChunkCount();

    /** @return dirty chunks times granularity, the {@code count} QEMU reports (it may pass the disk's end). */
    long dirtyByteCount();

    /**
     * @return SHA-256 of the bitmap's data words laid out as QEMU lays them out (64-bit little-endian
     *         words, {@code max(1, ceil(chunkCount / 64))} of them), equal to
     *         {@code x-debug-block-dirty-bitmap-sha256} for the same dirty chunks.
     */
    byte[] sha256();
}
