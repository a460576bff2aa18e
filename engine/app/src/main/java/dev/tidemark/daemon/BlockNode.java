package dev.tidemark.daemon;

import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.io.BlockStore;

import java.nio.file.Path;

/**
 * One named block node of the daemon's graph (QEMU's {@code BlockDriverState}); not thread-safe: confine to the
 * QMP dispatcher thread, which runs every command (the daemon's big lock).
 *
 * <p>Drivers: {@code file} (a raw image file; the node whose writes a {@link TrackedDisk} records, opened on first
 * use or at once when it has persistent bitmaps), {@code raw} (a pass-through over a {@code file} child),
 * {@code qcow2} (a backup target, a read-only backup image, or a fleecing node once a {@code sync: none} backup
 * binds a {@link FleecingView} to it) and {@code nbd} (a remote export, a push-backup target).
 */
final class BlockNode
{
    final String name;
    final String driver;
    final boolean readOnly;
    /** Image file of {@code file} and {@code qcow2} nodes (the qcow2's own file); {@code null} for others. */
    final Path filename;
    /** The {@code file} child of {@code raw} and {@code qcow2} nodes. */
    final BlockNode file;
    /** The backing node named by a qcow2 node's {@code backing} option, or {@code null}. */
    final BlockNode backing;
    /** Whether the daemon created this node as an inline child (not owned by the monitor). */
    final boolean implicit;
    /** Remote address for {@code nbd} nodes, for queries. */
    final String remote;
    /** Directory for persistent bitmaps of {@code file} nodes. */
    final Path bitmapDirectory;

    /** The store of nodes that are not tracked disks (qcow2 target/image, nbd client, untracked file target). */
    BlockStore store;
    /** The tracked disk of a {@code file} node, once opened. */
    TrackedDisk disk;
    /** Set while a {@code sync: none} backup exports this node as a point-in-time view. */
    FleecingView view;
    /** The disk the view was taken of. */
    TrackedDisk viewDisk;
    /** Number of nodes that use this one as a child. */
    int parents;
    /** Id of the job using this node as source or target, or {@code null}. */
    String jobId;

    BlockNode(final String name, final String driver, final boolean readOnly, final Path filename,
        final BlockNode file, final BlockNode backing, final boolean implicit, final String remote,
        final Path bitmapDirectory)
    {
        this.name = name;
        this.driver = driver;
        this.readOnly = readOnly;
        this.filename = filename;
        this.file = file;
        this.backing = backing;
        this.implicit = implicit;
        this.remote = remote;
        this.bitmapDirectory = bitmapDirectory;
    }

    /** @return the file this node's data ultimately lives in, for queries. */
    String imageFilename()
    {
        if (filename != null)
        {
            return filename.toString();
        }
        if (file != null)
        {
            return file.imageFilename();
        }
        return remote == null ? "" : remote;
    }

    /** @return the format QEMU would report for the image ({@code raw} for file and raw nodes). */
    String format()
    {
        return driver;
    }
}
