package dev.tidemark.engine.export;

import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.IoReason;
import dev.tidemark.io.nbd.MetaContext;
import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.nbd.StoreExportBase;
import dev.tidemark.io.nbd.NbdProtocol;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.function.Function;

/**
 * An NBD export of a {@link TrackedDisk}; safe for concurrent calls from every connection's reader thread, and
 * completes modifying requests on the ring thread that writes (see {@link dev.tidemark.engine.Pipeline}).
 *
 * <p>Writes, write-zeroes and trims enter the disk's write ring like any guest write, so they are marked in every
 * recording bitmap before they complete; the NBD reply is sent from the ring's completion. FUA travels with the
 * request (the ring makes it durable before completing it); FLUSH is a ring flush, which makes durable every write
 * completed before it on any connection, so {@code CAN_MULTI_CONN} is honest. Reads go to the store directly and
 * see every completed write. {@code base:allocation} comes from the store; dirty-bitmap contexts are given by
 * the caller.
 */
public final class TrackedDiskExport extends StoreExportBase
{
    /** The ring's completion callback for an NBD completion; one constant, as {@link NbdCompletion#adapter} asks. */
    private static final Function<NbdCompletion, IoCompletion> TO_IO_COMPLETION = done ->
        (sequence, error) -> done.complete(error == null ? NbdProtocol.OK : errorOf(error));

    private final TrackedDisk disk;

    /**
     * @param name export name.
     * @param description free text, may be empty.
     * @param disk the disk; not closed by the export.
     * @param readOnly refuse modifying commands even if the disk accepts them.
     * @param multiConn whether to offer {@code CAN_MULTI_CONN} (QEMU withholds it when the server allows one
     *                  connection).
     * @param bitmapContexts contexts offered after {@code base:allocation}.
     */
    public TrackedDiskExport(final String name, final String description, final TrackedDisk disk,
        final boolean readOnly, final boolean multiConn, final List<MetaContext> bitmapContexts)
    {
        super(name, description, disk.store(), readOnly, multiConn, bitmapContexts);
        this.disk = disk;
    }

    @Override
    public long size()
    {
        return disk.size();
    }

    @Override
    public int read(final long offset, final ByteBuffer dst)
    {
        try
        {
            disk.read(offset, dst);
            return NbdProtocol.OK;
        }
        catch (final IOException | RuntimeException ex)
        {
            return errorOf(ex);
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer data, final int flags, final NbdCompletion done)
    {
        submit(RequestKind.WRITE, offset, data.remaining(), data, fua(flags), false, done);
    }

    @Override
    public void flush(final NbdCompletion done)
    {
        submit(RequestKind.FLUSH, 0, 0, null, false, false, done);
    }

    @Override
    public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        submit(RequestKind.DISCARD, offset, length, null, fua(flags), true, done);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        if (refusedAsNotFast(flags, done))
        {
            return;
        }
        submit(RequestKind.WRITE_ZEROES, offset, length, null, fua(flags), mayUnmap(flags), done);
    }

    private void submit(final RequestKind kind, final long offset, final long length, final ByteBuffer data,
        final boolean fua, final boolean mayUnmap, final NbdCompletion done)
    {
        // Made once per reusable server completion, not per request: no allocation on the write path.
        final IoCompletion completion = done.adapter(IoCompletion.class, TO_IO_COMPLETION);
        try
        {
            disk.submit(kind, offset, length, data, fua, mayUnmap, completion);
        }
        catch (final RuntimeException ex)
        {
            done.complete(errorOf(ex));
        }
    }

    private static boolean fua(final int flags)
    {
        return (flags & NbdProtocol.CMD_FLAG_FUA) != 0;
    }

    static int errorOf(final Throwable error)
    {
        return NbdProtocol.errorOf(IoReason.of(error));
    }
}
