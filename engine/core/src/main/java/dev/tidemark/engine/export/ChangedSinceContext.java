package dev.tidemark.engine.export;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.checkpoint.Checkpoint;
import dev.tidemark.engine.checkpoint.DiskCheckpoints;
import dev.tidemark.io.nbd.DirtyBitmapContext;
import dev.tidemark.io.nbd.ExtentSink;
import dev.tidemark.io.nbd.MetaContext;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * The NBD context {@code tidemark:changed-since:NAME}: the chunks of a disk changed since checkpoint NAME, answered
 * from the disk's epoch map without building a bitmap; safe for concurrent calls from every connection thread (the
 * epoch map's readers are).
 *
 * <p>Extents are reported as {@code qemu:dirty-bitmap:} contexts report them (flag 1 = changed, 0 = not), so a
 * client that reads dirty bitmaps reads this too. The checkpoint is looked up by name at every request: once it
 * is removed the context answers with an error (EIO) instead of stale extents.
 */
public final class ChangedSinceContext implements MetaContext
{
    /** Prefix of the context names; the checkpoint's name follows it. */
    public static final String PREFIX = "tidemark:changed-since:";

    private final String name;
    private final DirtyBitmapContext walk;

    private ChangedSinceContext(final DiskCheckpoints checkpoints, final String checkpoint)
    {
        this.name = PREFIX + checkpoint;
        this.walk = new DirtyBitmapContext(checkpoint,
            (offset, length, visitor) -> checkpoints.changedSince(checkpoint, offset, length, visitor::accept));
    }

    /**
     * @param disk a disk.
     * @return one context per checkpoint the disk has now, oldest first.
     */
    public static List<MetaContext> of(final TrackedDisk disk)
    {
        final List<MetaContext> out = new ArrayList<>();
        for (final Checkpoint checkpoint : disk.checkpoints().checkpoints())
        {
            out.add(new ChangedSinceContext(disk.checkpoints(), checkpoint.name()));
        }
        return out;
    }

    @Override
    public String name()
    {
        return name;
    }

    @Override
    public void blockStatus(final long offset, final long length, final ExtentSink sink) throws IOException
    {
        try
        {
            walk.blockStatus(offset, length, sink);
        }
        catch (final EngineException ex)
        {
            throw new IOException(name + ": " + ex.getMessage(), ex);
        }
    }
}
