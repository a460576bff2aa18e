package dev.tidemark.engine.job;

import dev.tidemark.io.qcow2.Qcow2Writer;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Creates qcow2 backup targets whose chains QEMU's tools read; stateless and safe from any thread.
 *
 * <p>The cluster size is the bitmap's granularity clamped to what qcow2 allows (512 B to 2 MiB), so an incremental
 * copies whole clusters: each copied chunk replaces whole clusters of the backing file and never needs a
 * read-modify-write through the chain. An incremental names the previous link as its backing file (qcow2
 * format), so the top of the chain reads as the disk at the last cut.
 */
public final class Qcow2Targets
{
    /** Smallest qcow2 cluster. */
    public static final int MIN_CLUSTER = 512;
    /** Largest qcow2 cluster. */
    public static final int MAX_CLUSTER = 2 << 20;

    private Qcow2Targets()
    {
    }

    /**
     * @param granularity a bitmap's granularity, a power of two.
     * @return the cluster size for a target copied at that granularity.
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
     * Creates a full backup's target: a qcow2 image without backing file.
     *
     * @param image the new file (must not exist).
     * @param size the disk's size.
     * @param granularity the granularity of the bitmap that will track the next incremental.
     * @return the open writer; close it when the job has finished (that writes the metadata).
     * @throws IOException if the file cannot be created.
     */
    public static Qcow2Writer full(final Path image, final long size, final long granularity) throws IOException
    {
        return Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()
            .withClusterSize(clusterSizeFor(granularity)));
    }

    /**
     * Creates an incremental's target backed by the previous link of the chain.
     *
     * @param image the new file (must not exist).
     * @param size the disk's size.
     * @param granularity the granularity of the bitmap the incremental copies.
     * @param previous the previous qcow2 link; stored relative to {@code image}'s directory when it lies in it.
     * @return the open writer; close it when the job has finished.
     * @throws IOException if the file cannot be created or the backing file cannot be opened.
     */
    public static Qcow2Writer incremental(final Path image, final long size, final long granularity,
        final Path previous) throws IOException
    {
        final Path parent = image.toAbsolutePath().getParent();
        final Path backing = previous.toAbsolutePath();
        final String name = parent != null && parent.equals(backing.getParent())
            ? backing.getFileName().toString() : backing.toString();
        return Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()
            .withClusterSize(clusterSizeFor(granularity)).withBacking(name, "qcow2"));
    }
}
