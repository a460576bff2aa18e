package dev.tidemark.engine.registry;

/**
 * One bitmap as {@code query-named-block-nodes} reports it (QEMU's BlockDirtyInfo); immutable.
 *
 * @param name the bitmap's name.
 * @param recording whether new writes are recorded (by the bitmap or, while busy, by its successor).
 * @param busy whether a job or an export holds it.
 * @param persistent whether it lives in a file beside the image.
 * @param inconsistent whether its bits cannot be trusted; only remove is allowed then.
 * @param granularity bytes per chunk.
 * @param count dirty chunks times granularity, as QEMU counts.
 */
public record BitmapInfo(String name, boolean recording, boolean busy, boolean persistent, boolean inconsistent,
    long granularity, long count)
{
}
