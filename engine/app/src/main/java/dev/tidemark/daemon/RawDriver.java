package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.BlockStore;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.nio.file.Path;
import java.util.List;

/**
 * The {@code raw} format driver, a pass-through over a {@code file} child; stateless and safe from any thread, its
 * nodes are confined to the QMP dispatcher thread. A raw node is the disk's top node: bitmaps added through it are
 * reported on it.
 */
final class RawDriver implements BlockDriver
{
    @Override
    public String name()
    {
        return "raw";
    }

    @Override
    public List<QmpField> options(final QmpType blockdevRef)
    {
        return List.of(QmpField.required("file", blockdevRef), QmpField.optional("offset", QmpType.int64()),
            QmpField.optional("size", QmpType.int64()));
    }

    @Override
    public State open(final BlockNode node, final ObjectNode args, final Context context)
    {
        if (args.has("offset") && args.get("offset").asLong() != 0 || args.has("size"))
        {
            throw EngineException.generic("raw nodes with 'offset' or 'size' are not supported by Tidemark");
        }
        final BlockNode file = context.child(args.get("file"), "file");
        if (!"file".equals(file.driver))
        {
            throw EngineException.generic("A raw node's file must be a 'file' node (Tidemark tracks raw disk"
                + " files), not '" + file.driver + "'");
        }
        if (!node.readOnly && file.readOnly)
        {
            throw new EngineException(EngineException.Reason.READ_ONLY, "Block node is read-only");
        }
        return new RawState(file);
    }

    /** Everything goes to the file child. */
    private record RawState(BlockNode file) implements State
    {
        @Override
        public List<BlockNode> children()
        {
            return List.of(file);
        }

        @Override
        public Path localFile()
        {
            return file.state.localFile();
        }

        @Override
        public long size()
        {
            return file.state.size();
        }

        @Override
        public BlockNode trackedFile()
        {
            return file;
        }

        @Override
        public TrackedDisk disk(final BlockNode self)
        {
            return file.state.disk(file);
        }

        @Override
        public BlockStore backupTarget(final BlockNode self)
        {
            return file.state.backupTarget(file);
        }

        @Override
        public void close()
        {
            // The file child is closed by itself.
        }
    }
}
