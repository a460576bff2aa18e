package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.io.BlockStore;

import java.nio.file.Path;
import java.util.List;

/**
 * The fleecing node: the target of a {@code blockdev-backup sync: none} once the backup started, showing the
 * source disk as it was at the backup's cut (QEMU's {@code copy-before-write} filter with a
 * {@code snapshot-access} node on top, folded into one); confined to the QMP dispatcher thread.
 *
 * <p>It wraps the target's own state, which it closes after the view. It reads as {@code qcow2} in queries (as
 * QEMU's fleecing image), exports the view, and can no longer be a backup target.
 */
final class FleecingNode implements BlockDriver.State
{
    private final BlockDriver.State target;
    private final FleecingView view;
    private final TrackedDisk disk;

    /**
     * @param target the state of the node the view is bound to.
     * @param view the point-in-time view, opened at the backup's cut.
     * @param disk the disk the view was taken of.
     */
    FleecingNode(final BlockDriver.State target, final FleecingView view, final TrackedDisk disk)
    {
        this.target = target;
        this.view = view;
        this.disk = disk;
    }

    @Override
    public List<BlockNode> children()
    {
        return target.children();
    }

    @Override
    public String filename()
    {
        return target.filename();
    }

    @Override
    public Path localFile()
    {
        return target.localFile();
    }

    @Override
    public long size()
    {
        return view.size();
    }

    @Override
    public BlockNode trackedFile()
    {
        return target.trackedFile();
    }

    @Override
    public TrackedDisk ownDisk()
    {
        return target.ownDisk();
    }

    @Override
    public TrackedDisk fleecedDisk()
    {
        return disk;
    }

    @Override
    public TrackedDisk disk(final BlockNode self)
    {
        return target.disk(self);
    }

    @Override
    public BlockStore backupTarget(final BlockNode self)
    {
        throw EngineException.generic("Node '" + self.name + "' is busy: it is a fleecing view");
    }

    @Override
    public ExportNode export(final BlockNode self, final boolean writable)
    {
        return ExportNode.fleecing(self.name, view, disk);
    }

    @Override
    public void describe(final ObjectNode info, final ObjectNode image)
    {
        target.describe(info, image);
        info.put("drv", "qcow2");
    }

    @Override
    public void close()
    {
        BlockGraph.closeQuietly(view);
        target.close();
    }
}
