package dev.tidemark.io;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Positional block storage; implementations are safe for concurrent calls from any number of threads
 * on disjoint or overlapping ranges (overlapping writes land in some order, never torn below 512 bytes).
 *
 * <p>Offsets and lengths are bytes. Every call checks its range against {@link #size()} and throws
 * {@link IllegalArgumentException} before any I/O when the range is negative or beyond the end.
 * Short reads and writes are completed or reported as {@link IOException}, never returned silently.
 */
public interface BlockStore extends AutoCloseable
{
    /** @return size in bytes. */
    long size();

    /** @return whether writes are refused. */
    boolean isReadOnly();

    /**
     * Reads {@code dst.remaining()} bytes at {@code offset} into {@code dst}, advancing its position.
     * Holes read as zeroes.
     */
    void read(long offset, ByteBuffer dst) throws IOException;

    /** Writes {@code src.remaining()} bytes at {@code offset}, advancing its position. */
    void write(long offset, ByteBuffer src) throws IOException;

    /** Makes every completed write durable. */
    void flush() throws IOException;

    /** Tells the store the range is no longer needed; it then reads as zeroes (may punch a hole). */
    void discard(long offset, long length) throws IOException;

    /** Makes the range read as zeroes, deallocating it where the store can and {@code mayUnmap} allows. */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException;

    /**
     * Reports allocation: walks {@code [offset, offset + length)} as alternating extents.
     *
     * @param sink receives {@code (offset, length, allocated, zero)}; {@code zero} is a guarantee that the
     *             extent reads as zeroes ({@code !allocated} implies it for a plain file).
     */
    void forEachAllocationExtent(long offset, long length, AllocationSink sink) throws IOException;

    /** Receives allocation extents in ascending order. */
    @FunctionalInterface
    interface AllocationSink
    {
        /** @return {@code false} to stop the walk. */
        boolean accept(long offset, long length, boolean allocated, boolean zero);
    }

    @Override
    void close() throws IOException;
}
