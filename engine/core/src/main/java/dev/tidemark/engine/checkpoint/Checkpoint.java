package dev.tidemark.engine.checkpoint;

import java.util.List;

/**
 * One checkpoint of a disk as the catalogue holds it; immutable and safe to share between threads.
 *
 * @param name unique on its disk.
 * @param epoch the epoch map's epoch that began at the checkpoint: chunks stamped with it or later changed since.
 * @param createdMillis creation time, epoch millis.
 * @param disks the disks (node or disk names) of the transaction that made it, in its order.
 */
public record Checkpoint(String name, long epoch, long createdMillis, List<String> disks)
{
    /** Copies the list. */
    public Checkpoint
    {
        disks = List.copyOf(disks);
    }
}
