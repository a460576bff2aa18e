package dev.tidemark.io.nbd;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Set;

/**
 * Something the NBD server serves; implementations must accept concurrent calls from the reader
 * threads of every connection and may complete operations on any thread.
 *
 * <p>Reads are synchronous: {@link #read} runs on the connection's reader thread and returns when
 * {@code dst} is filled. Every modifying operation is asynchronous: it returns promptly and calls its
 * {@link NbdCompletion} once (from any thread, possibly before returning). The buffer handed to
 * {@link #write} stays valid and unchanged until its completion is called; the export must not keep it
 * afterwards. Throwing a {@link RuntimeException} instead of completing is reported to the client as
 * {@code EIO}.
 *
 * <p>Flush semantics are export-wide: {@link #flush} makes durable every write that has completed, on
 * any connection. That is what lets the server advertise {@code CAN_MULTI_CONN} when
 * {@link Feature#MULTI_CONN} is offered.
 *
 * <p>The server has validated every request before calling: ranges are non-empty and inside
 * {@link #size()}, writes never reach a read-only export, and flags are among those the export offers.
 */
public interface NbdExport
{
    /** Optional abilities an export offers; each enables a transmission flag. */
    enum Feature
    {
        /** FLUSH is meaningful. */
        FLUSH,
        /** FUA on writes is honoured. */
        FUA,
        /** TRIM is implemented. */
        TRIM,
        /** WRITE_ZEROES is implemented (with NO_HOLE). */
        WRITE_ZEROES,
        /** FAST_ZERO is honoured: WRITE_ZEROES with it fails with ENOTSUP unless fast. */
        FAST_ZERO,
        /** CACHE is meaningful. */
        CACHE,
        /** Flush and FUA are consistent across connections. */
        MULTI_CONN
    }

    /** @return the export name clients ask for, at most 4096 bytes of UTF-8 (may be empty). */
    String name();

    /** @return a free-text description, empty if none. */
    default String description()
    {
        return "";
    }

    /** @return size in bytes; constant while exported. */
    long size();

    /** @return whether modifying commands are refused with {@code EPERM}. */
    boolean isReadOnly();

    /** @return the optional abilities offered. */
    Set<Feature> features();

    /** @return the metadata contexts offered, names unique; empty if none. */
    default List<MetaContext> metaContexts()
    {
        return List.of();
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code offset} into {@code dst} on the calling thread.
     *
     * @return {@link NbdProtocol#OK} or an NBD error value.
     */
    int read(long offset, ByteBuffer dst);

    /**
     * Writes {@code data.remaining()} bytes at {@code offset}.
     *
     * @param flags {@link NbdProtocol#CMD_FLAG_FUA} or 0.
     */
    void write(long offset, ByteBuffer data, int flags, NbdCompletion done);

    /** Makes every completed write durable, whichever connection carried it. */
    void flush(NbdCompletion done);

    /**
     * Discards a range (advisory; its content afterwards is unspecified). Only called with
     * {@link Feature#TRIM}.
     */
    void trim(long offset, long length, int flags, NbdCompletion done);

    /**
     * Makes a range read as zeroes. Only called with {@link Feature#WRITE_ZEROES}.
     *
     * @param flags any of {@link NbdProtocol#CMD_FLAG_FUA}, {@link NbdProtocol#CMD_FLAG_NO_HOLE} (keep it
     *              allocated) and {@link NbdProtocol#CMD_FLAG_FAST_ZERO} (complete with
     *              {@link NbdProtocol#ENOTSUP}, changing nothing, unless it is faster than writing).
     */
    void writeZeroes(long offset, long length, int flags, NbdCompletion done);

    /** Prefetch hint; the default completes at once. */
    default void cache(final long offset, final long length, final NbdCompletion done)
    {
        done.complete(NbdProtocol.OK);
    }
}
