package dev.tidemark.engine.export;

import dev.tidemark.engine.TrackedDisk;
import java.util.Objects;

/**
 * A bitmap to export as {@code qemu:dirty-bitmap:NAME} (QMP's {@code BlockDirtyBitmapOrStr}); immutable.
 *
 * @param disk the disk that holds the bitmap, or {@code null} for the export node's own disk (the plain-string
 *             form, which QEMU looks up on the node and the nodes beneath it).
 * @param name the bitmap's name; also the context's leaf name.
 */
public record BitmapRef(TrackedDisk disk, String name)
{
    /** Checks the name. */
    public BitmapRef
    {
        Objects.requireNonNull(name, "name");
    }

    /**
     * @param name a bitmap of the export node's disk.
     * @return the reference.
     */
    public static BitmapRef of(final String name)
    {
        return new BitmapRef(null, name);
    }
}
