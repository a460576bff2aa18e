package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.BlockStore;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The {@code file} driver, a raw image file; stateless and safe from any thread, its nodes are confined to the QMP
 * dispatcher thread.
 *
 * <p>A file node is the node whose writes a {@link TrackedDisk} records. The disk is opened on first use (a bitmap
 * command, an export, a backup from it), or at once when the node's bitmap directory holds a journal: persistent
 * bitmaps of an earlier run are reloaded and repaired before any write. Used as a backup target before that, the
 * file is opened as a plain raw store.
 */
final class FileDriver implements BlockDriver
{
    @Override
    public String name()
    {
        return "file";
    }

    @Override
    public boolean protocol()
    {
        return true;
    }

    @Override
    public List<QmpField> options(final QmpType blockdevRef)
    {
        return List.of(QmpField.required("filename", QmpType.str()), QmpField.optional("pr-manager", QmpType.str()),
            QmpField.optional("locking", QmpType.enumOf("off", "on", "auto")),
            QmpField.optional("aio", QmpType.enumOf("threads", "native", "io_uring")),
            QmpField.optional("aio-max-batch", QmpType.int64()), QmpField.optional("drop-cache", QmpType.bool()),
            QmpField.optional("x-check-cache-dropped", QmpType.bool()));
    }

    @Override
    public State open(final BlockNode node, final ObjectNode args, final Context context)
    {
        final Path path = Path.of(args.get("filename").asText());
        if (!Files.exists(path))
        {
            throw EngineException.generic("Could not open '" + path + "': No such file or directory");
        }
        if (!Files.isRegularFile(path))
        {
            throw EngineException.generic("Could not open '" + path + "': not a regular file");
        }
        if (!node.readOnly && !Files.isWritable(path))
        {
            throw EngineException.generic("Could not open '" + path + "': Permission denied");
        }
        final FileState state = new FileState(node, path, context.bitmapDirectory(node.name, path), context);
        if (Files.exists(state.bitmaps.resolve(Journal.FILE_NAME)))
        {
            state.disk(node);
        }
        return state;
    }

    /** A file node: its tracked disk once opened, or the raw store a backup writes into. */
    private static final class FileState implements State
    {
        private final BlockNode node;
        private final Path path;
        private final Path bitmaps;
        private final Context context;
        private TrackedDisk disk;
        private BlockStore target;

        FileState(final BlockNode node, final Path path, final Path bitmaps, final Context context)
        {
            this.node = node;
            this.path = path;
            this.bitmaps = bitmaps;
            this.context = context;
        }

        @Override
        public Path localFile()
        {
            return path;
        }

        @Override
        public long size()
        {
            if (disk != null)
            {
                return disk.size();
            }
            if (target != null)
            {
                return target.size();
            }
            try
            {
                return Files.size(path);
            }
            catch (final IOException ex)
            {
                return 0;
            }
        }

        @Override
        public BlockNode trackedFile()
        {
            return node;
        }

        @Override
        public TrackedDisk ownDisk()
        {
            return disk;
        }

        @Override
        public TrackedDisk disk(final BlockNode self)
        {
            if (disk == null)
            {
                disk = context.openDisk(node.name, path, node.readOnly, bitmaps);
            }
            return disk;
        }

        @Override
        public BlockStore backupTarget(final BlockNode self)
        {
            if (disk != null)
            {
                return disk.store();
            }
            if (target == null)
            {
                try
                {
                    target = context.wrap(BackupTargets.openRaw(path, node.readOnly));
                }
                catch (final IOException ex)
                {
                    throw EngineException.generic("Could not open '" + path + "': " + BlockGraph.describe(ex));
                }
            }
            return target;
        }

        @Override
        public void describe(final ObjectNode info, final ObjectNode image)
        {
            BlockGraph.putActualSize(image, path);
        }

        @Override
        public void close()
        {
            if (target != null)
            {
                BlockGraph.closeQuietly(target);
                target = null;
            }
            if (disk != null)
            {
                BlockGraph.closeQuietly(disk);
                disk = null;
            }
        }
    }
}
