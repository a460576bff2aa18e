package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.MappedBitmap;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Makes the bitmaps a registry holds; implementations must be safe to call from the ring's mark thread and the
 * thread that opens the disk.
 */
public interface BitmapFiles
{
    /**
     * @param name the bitmap's name.
     * @param diskSize bytes of the tracked disk.
     * @param granularity bytes per chunk.
     * @return a bitmap in memory (non-persistent bitmaps, successors of non-persistent bitmaps, backups); every
     *         factory makes them the same way, in direct memory, since no file policy applies to them.
     */
    default DirtyBitmap anonymous(final String name, final long diskSize, final long granularity)
    {
        return MappedBitmap.createAnonymous(name, diskSize, granularity);
    }

    /**
     * @param file the new file; must not exist.
     * @param name the bitmap's name.
     * @param diskSize bytes of the tracked disk.
     * @param granularity bytes per chunk.
     * @return a new, clean, file-backed bitmap.
     * @throws IOException if the file cannot be created.
     */
    DirtyBitmap create(Path file, String name, long diskSize, long granularity) throws IOException;

    /**
     * Opens a bitmap file and applies the trust rule (an untrustworthy file opens {@code inconsistent}).
     *
     * @param file an existing bitmap file.
     * @return the bitmap.
     * @throws IOException if the file cannot be read or is not a bitmap file.
     */
    DirtyBitmap open(Path file) throws IOException;

    /**
     * Switches a bitmap's durable mode: when on, its pending pages are forced now and its file says that every
     * bit reached storage before the data it covers (so it is trusted after a power loss).
     *
     * @param bitmap a bitmap this factory made.
     * @param on the mode.
     */
    void durable(DirtyBitmap bitmap, boolean on);
}
