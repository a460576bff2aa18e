package dev.tidemark.engine.target;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * Creates backup targets; stateless and safe to use from any thread.
 *
 * <p>A backup target is any {@link BlockStore} of exactly the source disk's size: the job writes each copied range
 * at the same offset and turns all-zero or unallocated ranges into {@link BlockStore#writeZeroes} so that holes
 * stay holes. Two kinds exist today: a raw sparse file (a full backup is a bootable copy; an incremental holds
 * only its copied extents, listed by {@code BackupJob.forEachCopiedExtent}), and a qcow2 image whose backing file
 * is the previous backup of the chain, so {@code qemu-img} reads the chain directly. An NBD client store plugs in
 * the same way.
 */
public final class BackupTargets
{
    private BackupTargets()
    {
    }

    /**
     * @param path a file that must not exist yet.
     * @param size the source disk's size.
     * @return a new, all-hole raw file.
     * @throws IOException when the file cannot be created.
     */
    public static BlockStore createRaw(final Path path, final long size) throws IOException
    {
        return RawFileStore.create(Objects.requireNonNull(path, "path"), size);
    }

    /**
     * @param path a file that must not exist yet.
     * @param size the source disk's size.
     * @param backing the previous qcow2 backup of the chain, or {@code null} for a full backup.
     * @return a new qcow2 image with 64 KiB clusters.
     * @throws IOException when the image cannot be created or the backing file is not qcow2.
     */
    public static BlockStore createQcow2(final Path path, final long size, final Path backing) throws IOException
    {
        Qcow2Writer.Options options = Qcow2Writer.Options.defaults();
        if (backing != null)
        {
            options = options.withBacking(backing.toAbsolutePath().toString(), "qcow2");
        }
        return Qcow2Writer.create(Objects.requireNonNull(path, "path"), size, options);
    }
}
