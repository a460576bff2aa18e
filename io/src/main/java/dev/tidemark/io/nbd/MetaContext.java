package dev.tidemark.io.nbd;

import java.io.IOException;

/**
 * One metadata context of an export (such as {@code base:allocation} or {@code qemu:dirty-bitmap:NAME});
 * implementations must be safe for concurrent calls from the connection threads of every client.
 */
public interface MetaContext
{
    /** Name of the allocation context. */
    String BASE_ALLOCATION = "base:allocation";
    /** Prefix of QEMU dirty-bitmap contexts; the bitmap's name follows it. */
    String DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:";

    /** @return the full context name, {@code namespace:leaf}, at most 4096 bytes of UTF-8. */
    String name();

    /**
     * Describes {@code [offset, offset + length)} as consecutive extents starting at {@code offset}.
     * The server has already checked that the range is non-empty and inside the export. Producing
     * fewer bytes than asked is allowed (the client asks again); extents may be given in any sizes,
     * the server merges neighbours with equal flags.
     *
     * @param offset first byte.
     * @param length bytes wanted.
     * @param sink   receives the extents.
     * @throws IOException if the status cannot be determined; the client gets {@code EIO}.
     */
    void blockStatus(long offset, long length, ExtentSink sink) throws IOException;
}
