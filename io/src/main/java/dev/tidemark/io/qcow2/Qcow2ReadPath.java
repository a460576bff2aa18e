package dev.tidemark.io.qcow2;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * Stateless and safe for concurrent use by any number of threads (given a thread-safe {@link Mapping}):
 * the read and block-status walk shared by {@link Qcow2Reader} and {@link Qcow2Writer}, and the opening
 * of backing chains.
 */
final class Qcow2ReadPath
{
    static final int MAX_CHAIN_DEPTH = 64;
    private static final ByteBuffer ZEROES = ByteBuffer.allocateDirect(64 * 1024).asReadOnlyBuffer();

    private Qcow2ReadPath()
    {
    }

    /** Gives the L2 entry of a guest cluster, {@code 0} when no L2 table covers it. */
    @FunctionalInterface
    interface Mapping
    {
        long entry(long guestCluster) throws IOException;
    }

    static boolean isData(final long entry)
    {
        return (entry & Qcow2Header.OFFSET_MASK) != 0 && (entry & Qcow2Header.ZERO) == 0;
    }

    static boolean isZero(final long entry)
    {
        return (entry & Qcow2Header.ZERO) != 0;
    }

    static boolean isUnallocated(final long entry)
    {
        return !isData(entry) && !isZero(entry);
    }

    /**
     * Reads {@code dst.remaining()} bytes at guest {@code offset} (already range-checked) through the image's
     * mapping, falling through to {@code backing} (or zeroes) where a cluster is unallocated.
     */
    static void read(
        final FileChannel channel,
        final int clusterBits,
        final Mapping mapping,
        final BlockStore backing,
        final long offset,
        final ByteBuffer dst) throws IOException
    {
        final long clusterSize = 1L << clusterBits;
        final long end = offset + dst.remaining();
        final int savedLimit = dst.limit();
        long position = offset;
        try
        {
            while (position < end)
            {
                long cluster = position >>> clusterBits;
                final long entry = mapping.entry(cluster);
                long runEnd = Math.min((cluster + 1) << clusterBits, end);
                if (isData(entry))
                {
                    final long host = (entry & Qcow2Header.OFFSET_MASK) + (position & (clusterSize - 1));
                    long expectedNext = (entry & Qcow2Header.OFFSET_MASK) + clusterSize;
                    // Clusters that follow in the file too are read with one call.
                    while (runEnd < end)
                    {
                        final long next = mapping.entry(++cluster);
                        if (!isData(next) || (next & Qcow2Header.OFFSET_MASK) != expectedNext)
                        {
                            break;
                        }
                        expectedNext += clusterSize;
                        runEnd = Math.min((cluster + 1) << clusterBits, end);
                    }
                    dst.limit(dst.position() + (int)(runEnd - position));
                    readHost(channel, host, dst);
                }
                else if (isZero(entry))
                {
                    while (runEnd < end && isZero(mapping.entry(++cluster)))
                    {
                        runEnd = Math.min((cluster + 1) << clusterBits, end);
                    }
                    dst.limit(dst.position() + (int)(runEnd - position));
                    fillZeroes(dst);
                }
                else
                {
                    while (runEnd < end && isUnallocated(mapping.entry(++cluster)))
                    {
                        runEnd = Math.min((cluster + 1) << clusterBits, end);
                    }
                    dst.limit(dst.position() + (int)(runEnd - position));
                    readBacking(backing, position, dst);
                }
                dst.limit(savedLimit);
                position = runEnd;
            }
        }
        finally
        {
            dst.limit(savedLimit);
        }
    }

    /** Reads from the host file; end of file inside a cluster reads as zeroes, as in QEMU. */
    static void readHost(final FileChannel channel, final long host, final ByteBuffer dst) throws IOException
    {
        long position = host;
        while (dst.hasRemaining())
        {
            final int n = channel.read(dst, position);
            if (n < 0)
            {
                fillZeroes(dst);
                return;
            }
            position += n;
        }
    }

    /** Reads the backing file's bytes; past its end (or with no backing) reads zeroes. */
    static void readBacking(final BlockStore backing, final long offset, final ByteBuffer dst) throws IOException
    {
        if (backing != null && offset < backing.size())
        {
            final int inBacking = (int)Math.min(dst.remaining(), backing.size() - offset);
            final int savedLimit = dst.limit();
            dst.limit(dst.position() + inBacking);
            backing.read(offset, dst);
            dst.limit(savedLimit);
        }
        fillZeroes(dst);
    }

    static void fillZeroes(final ByteBuffer dst)
    {
        while (dst.hasRemaining())
        {
            final ByteBuffer zeroes = ZEROES.duplicate();
            zeroes.limit(Math.min(zeroes.capacity(), dst.remaining()));
            dst.put(zeroes);
        }
    }

    /**
     * Walks block status through the chain: a data cluster in this image is allocated; a zero cluster reads
     * as zero and is reported unallocated (as NBD's base:allocation reports a hole); an unallocated cluster
     * reports what the backing store reports, or a hole past its end.
     */
    static void extents(
        final int clusterBits,
        final Mapping mapping,
        final BlockStore backing,
        final long offset,
        final long length,
        final BlockStore.AllocationSink sink) throws IOException
    {
        final long end = offset + length;
        final Merger merger = new Merger(sink);
        long position = offset;
        while (position < end && !merger.stopped)
        {
            long cluster = position >>> clusterBits;
            final long entry = mapping.entry(cluster);
            long runEnd = Math.min((cluster + 1) << clusterBits, end);
            if (isData(entry))
            {
                merger.add(position, runEnd - position, true, false);
            }
            else if (isZero(entry))
            {
                merger.add(position, runEnd - position, false, true);
            }
            else
            {
                while (runEnd < end && isUnallocated(mapping.entry(++cluster)))
                {
                    runEnd = Math.min((cluster + 1) << clusterBits, end);
                }
                final long inBacking = backing == null ? 0 : Math.max(0, Math.min(runEnd, backing.size()) - position);
                if (inBacking > 0)
                {
                    backing.forEachAllocationExtent(position, inBacking, merger::add);
                }
                if (!merger.stopped && position + inBacking < runEnd)
                {
                    merger.add(position + inBacking, runEnd - position - inBacking, false, true);
                }
            }
            position = runEnd;
        }
        merger.finish();
    }

    /** Not thread-safe: one per walk. Joins adjacent extents of equal status before they reach the sink. */
    private static final class Merger
    {
        private final BlockStore.AllocationSink sink;
        private long pendingOffset;
        private long pendingLength;
        private boolean pendingAllocated;
        private boolean pendingZero;
        private boolean stopped;

        Merger(final BlockStore.AllocationSink sink)
        {
            this.sink = sink;
        }

        boolean add(final long offset, final long length, final boolean allocated, final boolean zero)
        {
            if (stopped)
            {
                return false;
            }
            if (pendingLength > 0 && pendingOffset + pendingLength == offset
                && pendingAllocated == allocated && pendingZero == zero)
            {
                pendingLength += length;
                return true;
            }
            finish();
            pendingOffset = offset;
            pendingLength = length;
            pendingAllocated = allocated;
            pendingZero = zero;
            return !stopped;
        }

        void finish()
        {
            if (pendingLength > 0 && !stopped)
            {
                stopped = !sink.accept(pendingOffset, pendingLength, pendingAllocated, pendingZero);
            }
            pendingLength = 0;
        }
    }

    /**
     * Opens a backing file named in an image header, read-only.
     *
     * @param image      the image whose header names it; relative names resolve against its directory.
     * @param name       the name as stored.
     * @param format     {@code "qcow2"}, {@code "raw"}, or {@code null} to probe the magic.
     * @param depth      how many images lie above it.
     * @param seen       real paths of the images above, to refuse loops.
     */
    static BlockStore openBacking(
        final Path image,
        final String name,
        final String format,
        final int depth,
        final Set<Path> seen) throws IOException
    {
        if (name.startsWith("json:"))
        {
            throw new Qcow2FormatException(image, "backing file given as json: pseudo-protocol is not supported: "
                + name);
        }
        if (depth > MAX_CHAIN_DEPTH)
        {
            throw new Qcow2FormatException(image, "backing chain deeper than " + MAX_CHAIN_DEPTH);
        }
        final Path given = Path.of(name);
        final Path parent = image.toAbsolutePath().getParent();
        final Path resolved = given.isAbsolute() || parent == null ? given : parent.resolve(given);
        if (!Files.isRegularFile(resolved))
        {
            throw new Qcow2FormatException(image, "backing file " + name + " (resolved to " + resolved
                + ") does not exist or is not a regular file");
        }
        final Path real = resolved.toRealPath();
        if (seen.contains(real))
        {
            throw new Qcow2FormatException(image, "backing chain loops back to " + real);
        }
        final String actualFormat = format != null ? format : Qcow2Reader.isQcow2(resolved) ? "qcow2" : "raw";
        switch (actualFormat)
        {
            case "raw":
                return RawFileStore.open(resolved, RawFileStore.Option.READ_ONLY);
            case "qcow2":
                final Set<Path> below = new HashSet<>(seen);
                below.add(real);
                return Qcow2Reader.open(resolved, depth + 1, below);
            default:
                throw new Qcow2FormatException(image, "backing format '" + actualFormat + "' of " + name
                    + " is not supported (qcow2 and raw are)");
        }
    }
}
