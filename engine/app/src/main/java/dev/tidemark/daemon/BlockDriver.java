package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.nio.file.Path;
import java.util.List;

/**
 * A block driver ({@code blockdev-add}'s {@code driver}); implementations are stateless and safe from any thread,
 * the {@link State} of each node they open is confined to the QMP dispatcher thread (the daemon's big lock).
 *
 * <p>A driver says which options it takes (the schema {@code blockdev-add} validates before {@link #open} runs),
 * opens a node from validated options, and its node's {@link State} answers what the rest of the daemon asks of a
 * node: its tracked disk, the store a backup writes into, its export, its size and its query output. Adding a
 * driver is one class implementing this and one line in {@link BlockDrivers#ALL}; see docs/architecture.md
 * ("Adding a block driver").
 */
interface BlockDriver
{
    /** @return the {@code driver} value, e.g. {@code qcow2}. */
    String name();

    /** @return whether a node of this driver may be given inline as another node's child (a protocol driver). */
    default boolean protocol()
    {
        return false;
    }

    /**
     * @param blockdevRef the type of a child reference (a node name, or an inline protocol node); {@code null}
     *                    when the inline form of a protocol driver is built (a protocol node has no children).
     * @return this driver's {@code blockdev-add} members beyond the common ones ({@link BlockDrivers}).
     */
    List<QmpField> options(QmpType blockdevRef);

    /**
     * Opens a node from options the schema validated; the common checks (name, read-only, force-share) are done.
     *
     * @param node the node being added; its {@link BlockNode#state} is set to the result.
     * @param args the node's {@code blockdev-add} arguments.
     * @param context what a driver may use of the graph.
     * @return the node's state.
     * @throws EngineException with QEMU's text; whatever the driver opened is closed then.
     */
    State open(BlockNode node, ObjectNode args, Context context);

    /** What a driver may use of the daemon while it opens a node; confined to the QMP dispatcher thread. */
    interface Context
    {
        /**
         * @param ref a node name or an inline node (added as an implicit node).
         * @param role the option's name, for the error text.
         * @return the child node; the graph counts the parent once {@link #open} returned.
         */
        BlockNode child(JsonNode ref, String role);

        /** @return the store, wrapped for fault injection when the daemon runs test commands. */
        BlockStore wrap(BlockStore store);

        /** @return the TLS credentials object {@code id} for an endpoint; QEMU's text when missing or wrong. */
        TlsCredentials tlsCredentials(String id, TlsCredentials.Endpoint endpoint);

        /** @return where a file node keeps its persistent bitmaps. */
        Path bitmapDirectory(String nodeName, Path image);

        /**
         * Opens a raw image as a tracked disk (events, durable mode and open messages as the daemon sets them).
         *
         * @throws EngineException {@code Could not open ...}.
         */
        TrackedDisk openDisk(String nodeName, Path image, boolean readOnly, Path bitmapDirectory);
    }

    /**
     * One opened node's driver side (QEMU's {@code BlockDriverState}); confined to the QMP dispatcher thread.
     * The defaults are those of a node that is neither a disk nor exportable.
     */
    interface State
    {
        /** @return the node's children (file, backing), in the order they are released. */
        default List<BlockNode> children()
        {
            return List.of();
        }

        /** @return the local file holding the node's data, or {@code null} (remote nodes). */
        default Path localFile()
        {
            return null;
        }

        /** @return the file this node's data lives in, or its remote address, for queries; {@code ""} if none. */
        default String filename()
        {
            return localFile() == null ? "" : localFile().toString();
        }

        /** @return the virtual size in bytes. */
        long size();

        /**
         * @return the {@code file} node whose tracked disk this node's writes go through (the node itself for
         *     {@code file}, the child for {@code raw}), or {@code null}.
         */
        default BlockNode trackedFile()
        {
            return null;
        }

        /** @return the tracked disk this node owns, if opened ({@code file} nodes only), or {@code null}. */
        default TrackedDisk ownDisk()
        {
            return null;
        }

        /** @return the disk a point-in-time view bound to this node shows, or {@code null}. */
        default TrackedDisk fleecedDisk()
        {
            return null;
        }

        /**
         * @param self the node.
         * @return the tracked disk of the node, opened now if needed.
         * @throws EngineException when the driver cannot carry bitmaps.
         */
        default TrackedDisk disk(final BlockNode self)
        {
            throw EngineException.generic("Node '" + self.name + "' is a " + self.driver
                + " node; Tidemark tracks writes of raw disks (file and raw nodes) only");
        }

        /**
         * @param self the node.
         * @return the store a backup into this node writes.
         * @throws EngineException when the node cannot be a target now.
         */
        BlockStore backupTarget(BlockNode self);

        /**
         * @param self the node.
         * @param writable whether the export accepts writes.
         * @return what an export of the node serves: its tracked disk, if it has one.
         * @throws EngineException when the node cannot be exported.
         */
        default ExportNode export(final BlockNode self, final boolean writable)
        {
            if (trackedFile() != null)
            {
                if (writable && self.readOnly)
                {
                    throw EngineException.generic("Cannot export read-only node as writable");
                }
                return ExportNode.disk(self.name, disk(self));
            }
            throw EngineException.generic("Node '" + self.name + "' (" + self.driver + ") cannot be exported:"
                + " Tidemark exports disks (file, raw nodes) and fleecing nodes (targets of sync=none backups)");
        }

        /**
         * Adds the driver's members to a {@code BlockDeviceInfo} whose common members are set.
         *
         * @param info the {@code BlockDeviceInfo}.
         * @param image its {@code image} ({@code ImageInfo}).
         */
        default void describe(final ObjectNode info, final ObjectNode image)
        {
        }

        /** Closes what the node opened; called once. */
        void close();
    }

    /** A node whose data is one store it opened (an image, a connection); confined to the QMP dispatcher thread. */
    abstract class StoreState implements State
    {
        /** The store, closed with the node. */
        protected final BlockStore store;

        protected StoreState(final BlockStore store)
        {
            this.store = store;
        }

        @Override
        public long size()
        {
            return store.size();
        }

        @Override
        public BlockStore backupTarget(final BlockNode self)
        {
            return store;
        }

        @Override
        public void close()
        {
            BlockGraph.closeQuietly(store);
        }
    }
}
