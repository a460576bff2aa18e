package dev.tidemark.engine.export;

import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingView;
import java.util.Objects;

/**
 * The block node an export serves, as the caller resolved its {@code node-name}; immutable and safe to share
 * between threads (the objects it names have their own thread contracts).
 */
public sealed interface ExportNode
{
    /** @return the node name reported by {@code query-block-exports} (and the default export name). */
    String nodeName();

    /** @return the tracked disk whose bitmaps the export may offer (for a fleecing view: the disk underneath). */
    TrackedDisk disk();

    /** @return whether the node itself accepts writes. */
    boolean isWritable();

    /**
     * @param nodeName the node's name.
     * @param disk the disk; writes through the export go through its ring and are tracked.
     * @return a tracked-disk node.
     */
    static ExportNode disk(final String nodeName, final TrackedDisk disk)
    {
        return new Disk(nodeName, disk);
    }

    /**
     * @param nodeName the view's node name.
     * @param view the point-in-time view (read-only).
     * @param disk the disk the view was taken of; its bitmaps can be exported next to the view.
     * @return a fleecing node.
     */
    static ExportNode fleecing(final String nodeName, final FleecingView view, final TrackedDisk disk)
    {
        return new Fleecing(nodeName, view, disk);
    }

    /**
     * A tracked disk.
     *
     * @param nodeName the node name.
     * @param disk the disk.
     */
    record Disk(String nodeName, TrackedDisk disk) implements ExportNode
    {
        /** Checks the values. */
        public Disk
        {
            Objects.requireNonNull(nodeName, "nodeName");
            Objects.requireNonNull(disk, "disk");
        }

        @Override
        public boolean isWritable()
        {
            return !disk.store().isReadOnly();
        }
    }

    /**
     * A fleecing view of a disk.
     *
     * @param nodeName the view's node name.
     * @param view the view.
     * @param disk the disk underneath.
     */
    record Fleecing(String nodeName, FleecingView view, TrackedDisk disk) implements ExportNode
    {
        /** Checks the values. */
        public Fleecing
        {
            Objects.requireNonNull(nodeName, "nodeName");
            Objects.requireNonNull(view, "view");
            Objects.requireNonNull(disk, "disk");
        }

        @Override
        public boolean isWritable()
        {
            return false;
        }
    }
}
