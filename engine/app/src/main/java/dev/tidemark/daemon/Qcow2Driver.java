package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.FaultyStore;
import dev.tidemark.io.qcow2.Qcow2Reader;
import dev.tidemark.io.qcow2.Qcow2Writer;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * The {@code qcow2} format driver over a {@code file} child; stateless and safe from any thread, its nodes are
 * confined to the QMP dispatcher thread.
 *
 * <p>A writable node over an image that holds no data yet (made by {@code qemu-img create} or
 * {@code blockdev-create} for a backup) is a backup target ({@link BackupTargets#reuseEmptyQcow2}); a read-only
 * node reads an image and its backing chain. A writable node over an image with data is refused.
 */
final class Qcow2Driver implements BlockDriver
{
    @Override
    public String name()
    {
        return "qcow2";
    }

    @Override
    public List<QmpField> options(final QmpType blockdevRef)
    {
        return List.of(QmpField.required("file", blockdevRef), QmpField.optional("backing", QmpType.any()),
            QmpField.optional("lazy-refcounts", QmpType.bool()),
            QmpField.optional("pass-discard-request", QmpType.bool()),
            QmpField.optional("pass-discard-snapshot", QmpType.bool()),
            QmpField.optional("pass-discard-other", QmpType.bool()), QmpField.optional("cache-size", QmpType.int64()),
            QmpField.optional("l2-cache-size", QmpType.int64()),
            QmpField.optional("refcount-cache-size", QmpType.int64()),
            QmpField.optional("cache-clean-interval", QmpType.int64()));
    }

    @Override
    public State open(final BlockNode node, final ObjectNode args, final Context context)
    {
        final JsonNode backingRef = args.get("backing");
        if (backingRef != null && !backingRef.isNull() && !backingRef.isTextual() && !backingRef.isObject())
        {
            throw EngineException.generic("Invalid parameter type for 'backing', expected: BlockdevRefOrNull");
        }
        final BlockNode file = context.child(args.get("file"), "file");
        if (!"file".equals(file.driver))
        {
            throw EngineException.generic("A qcow2 node's file must be a 'file' node, not '" + file.driver + "'");
        }
        if (file.state.ownDisk() != null)
        {
            throw EngineException.generic("Node '" + file.name + "' is a tracked disk and cannot hold a qcow2 image");
        }
        final BlockNode backing = backingRef == null || backingRef.isNull() ? null
            : context.child(backingRef, "backing");
        final Path path = file.state.localFile();
        try
        {
            return new Qcow2State(file, backing, path, context.wrap(node.readOnly ? Qcow2Reader.open(path)
                : BackupTargets.reuseEmptyQcow2(path)));
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Could not open '" + path + "': " + BlockGraph.describe(ex));
        }
    }

    /** An open image: a reader, or the writer of a backup target. */
    private static final class Qcow2State extends StoreState
    {
        private final BlockNode file;
        private final BlockNode backing;
        private final Path path;

        Qcow2State(final BlockNode file, final BlockNode backing, final Path path, final BlockStore store)
        {
            super(store);
            this.file = file;
            this.backing = backing;
            this.path = path;
        }

        @Override
        public List<BlockNode> children()
        {
            return backing == null ? List.of(file) : List.of(file, backing);
        }

        @Override
        public Path localFile()
        {
            return path;
        }

        @Override
        public void describe(final ObjectNode info, final ObjectNode image)
        {
            BlockGraph.putActualSize(image, path);
            final BlockStore own = store instanceof FaultyStore faulty ? faulty.delegate() : store;
            if (own instanceof Qcow2Reader reader && reader.backingFile() != null)
            {
                info.put("backing_file", reader.backingFile());
                info.put("backing_file_depth", reader.chainLength() - 1);
                image.put("backing-filename", reader.backingFile());
            }
            else if (own instanceof Qcow2Writer writer && writer.backing() != null)
            {
                info.put("backing_file_depth", 1);
            }
        }
    }
}
