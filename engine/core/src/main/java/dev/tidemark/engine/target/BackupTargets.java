package dev.tidemark.engine.target;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Reader;
import dev.tidemark.io.qcow2.Qcow2Writer;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The one factory for backup targets (the daemon's block drivers, the demo, benchmarks and tests use it);
 * stateless and safe to use from any thread.
 *
 * <p>A backup target is any {@link BlockStore} of exactly the source disk's size: the job writes each copied range
 * at the same offset and turns all-zero or unallocated ranges into {@link BlockStore#writeZeroes} so that holes
 * stay holes. Two kinds are made here: a raw sparse file (a full backup is a bootable copy; an incremental holds
 * only its copied extents, listed by {@code BackupJob.forEachCopiedExtent}), and a qcow2 image whose backing file
 * is the previous backup of the chain, so {@code qemu-img} reads the chain directly. An NBD client store plugs in
 * the same way (the daemon's {@code nbd} driver connects one).
 *
 * <p>A qcow2 target's cluster size is the bitmap's granularity clamped to what qcow2 allows (512 B to 2 MiB), so
 * an incremental copies whole clusters: each copied chunk replaces whole clusters of the backing file and never
 * needs a read-modify-write through the chain.
 */
public final class BackupTargets
{
    /** Smallest qcow2 cluster. */
    public static final int MIN_CLUSTER = 512;
    /** Largest qcow2 cluster. */
    public static final int MAX_CLUSTER = 2 << 20;

    private BackupTargets()
    {
    }

    /**
     * @param granularity a bitmap's granularity, a power of two.
     * @return the cluster size for a qcow2 target copied at that granularity.
     */
    public static int clusterSizeFor(final long granularity)
    {
        if (granularity <= 0 || Long.bitCount(granularity) != 1)
        {
            throw new IllegalArgumentException("granularity must be a power of two, was " + granularity);
        }
        return (int)Math.max(MIN_CLUSTER, Math.min(MAX_CLUSTER, granularity));
    }

    /**
     * @param path a file that must not exist yet.
     * @param size the source disk's size.
     * @return a new, all-hole raw file.
     * @throws IOException when the file cannot be created.
     */
    public static RawFileStore createRaw(final Path path, final long size) throws IOException
    {
        return RawFileStore.create(Objects.requireNonNull(path, "path"), size);
    }

    /**
     * @param path an existing raw file (made by the admin, e.g. {@code qemu-img create -f raw}).
     * @param readOnly whether to open it read-only (a backup into it then fails at its first write).
     * @return the file as a target.
     * @throws IOException when it cannot be opened.
     */
    public static RawFileStore openRaw(final Path path, final boolean readOnly) throws IOException
    {
        return readOnly ? RawFileStore.open(path, RawFileStore.Option.READ_ONLY) : RawFileStore.open(path);
    }

    /**
     * Creates a full backup's target: a qcow2 image without backing file.
     *
     * @param image the new file (must not exist).
     * @param size the disk's size.
     * @param granularity the granularity of the bitmap that will track the next incremental.
     * @return the open writer; close it when the job has finished (that writes the metadata).
     * @throws IOException if the file cannot be created.
     */
    public static Qcow2Writer createQcow2(final Path image, final long size, final long granularity)
        throws IOException
    {
        return Qcow2Writer.create(Objects.requireNonNull(image, "image"), size,
            Qcow2Writer.Options.defaults().withClusterSize(clusterSizeFor(granularity)));
    }

    /**
     * Creates an incremental's target backed by the previous link of the chain, so the top of the chain reads as
     * the disk at the last cut.
     *
     * @param image the new file (must not exist).
     * @param size the disk's size.
     * @param granularity the granularity of the bitmap the incremental copies.
     * @param previous the previous qcow2 link; stored relative to {@code image}'s directory when it lies in it,
     *                 absolute otherwise.
     * @return the open writer; close it when the job has finished.
     * @throws IOException if the file cannot be created or the backing file cannot be opened.
     */
    public static Qcow2Writer createQcow2(final Path image, final long size, final long granularity,
        final Path previous) throws IOException
    {
        final Path parent = image.toAbsolutePath().getParent();
        final Path backing = previous.toAbsolutePath();
        final String name = parent != null && parent.equals(backing.getParent())
            ? backing.getFileName().toString() : backing.toString();
        return Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()
            .withClusterSize(clusterSizeFor(granularity)).withBacking(name, "qcow2"));
    }

    /**
     * Takes over a qcow2 image that holds no data yet (made by {@code qemu-img create} or {@code blockdev-create}
     * for a backup): it is written again with the same size, cluster size and backing file by this process.
     *
     * @param image an existing qcow2 image.
     * @return the writer of the image.
     * @throws IOException when the image cannot be read, or already holds data (a backup never overwrites one).
     */
    public static Qcow2Writer reuseEmptyQcow2(final Path image) throws IOException
    {
        final long size;
        final int cluster;
        final String backingFile;
        final String backingFormat;
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            size = reader.size();
            cluster = reader.clusterSize();
            backingFile = reader.backingFile();
            backingFormat = reader.backingFormat();
            if (reader.holdsData())
            {
                throw new IOException("image already holds data; Tidemark writes backups only into new, empty"
                    + " qcow2 images (open it with read-only=true to read it)");
            }
        }
        Qcow2Writer.Options options = Qcow2Writer.Options.defaults().withClusterSize(cluster);
        if (backingFile != null)
        {
            options = options.withBacking(backingFile, backingFormat == null ? "qcow2" : backingFormat);
        }
        // Qcow2Writer creates its own file: the empty image is replaced by an equal one.
        Files.delete(image);
        return Qcow2Writer.create(image, size, options);
    }
}
