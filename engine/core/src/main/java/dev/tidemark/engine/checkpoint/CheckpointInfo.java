package dev.tidemark.engine.checkpoint;

import java.util.List;

/**
 * What {@code query-checkpoints} reports about one checkpoint; immutable.
 *
 * @param name the checkpoint's name.
 * @param epoch its epoch.
 * @param createdMillis creation time, epoch millis.
 * @param disks the disks of the transaction that made it.
 * @param changedBytes bytes of the disk changed since it (whole chunks of the map, clipped at the disk's end).
 * @param exact false when the epoch map was not trusted after a crash: the checkpoint then reports everything.
 */
public record CheckpointInfo(String name, long epoch, long createdMillis, List<String> disks, long changedBytes,
    boolean exact)
{
    /** Copies the list. */
    public CheckpointInfo
    {
        disks = List.copyOf(disks);
    }
}
