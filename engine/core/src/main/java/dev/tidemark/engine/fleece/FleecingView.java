package dev.tidemark.engine.fleece;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.WriteInterceptor;
import dev.tidemark.engine.job.ChunkClaims;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.BlockStoreException;
import dev.tidemark.io.IoReason;
import dev.tidemark.io.RawFileStore;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A read-only point-in-time view of a disk (image fleecing, {@code sync: none}); reads are safe from any number of
 * threads, the copy-before-write side runs on the ring thread that runs copy-before-write (see
 * {@link dev.tidemark.engine.Pipeline}).
 *
 * <p>The view is taken at a cut ({@link #openAction} in a transaction, or {@link #open}). From that cut its
 * interceptor copies the old data of every chunk (4 KiB by default, {@link FleecingOptions#chunkSize()}) a guest
 * write is about to change, once per chunk and a run of adjacent chunks in one copy, into a
 * copy-before-write (CBW) store: a sparse temporary file with the disk's offsets, bounded by
 * {@link FleecingOptions#cbwLimitBytes()}. A read of a chunk already copied reads the CBW store; a read of any
 * other chunk reads the live disk. Reader and interceptor share a striped read-write lock keyed by chunk: a reader
 * holds the stripes of a run of chunks shared while it decides where to read and reads, the interceptor holds them
 * exclusively while it copies and publishes the run as copied (both take stripes in ascending index), and the guest write lands only after the interceptor
 * returns. So a guest write can never change what a reader sees in the middle of a read.
 *
 * <p><b>When the CBW space runs out</b> (or the CBW store fails) the policy decides, never silent corruption:
 * <ul>
 *   <li>{@link OnCbwError#BREAK_SNAPSHOT} (default): the view breaks. The guest write proceeds; every later read
 *       of the view fails with an {@link IOException} naming the cause; the disk emits
 *       {@code __dev.tidemark_FLEECING_BROKEN {"node","reason"}} once. Reads that completed before were correct.</li>
 *   <li>{@link OnCbwError#BREAK_GUEST_WRITE}: the guest write fails (ENOSPC, nothing of it is written) and the
 *       view stays valid.</li>
 * </ul>
 * These are QEMU's {@code on-cbw-error} values. {@link #close()} removes the interceptor at a cut and deletes the
 * CBW file.
 */
public final class FleecingView implements BlockStore
{
    /** What happens when copy-before-write cannot preserve old data. */
    public enum OnCbwError
    {
        /** The view breaks, guest writes proceed. */
        BREAK_SNAPSHOT,
        /** The guest write fails with ENOSPC, the view stays valid. */
        BREAK_GUEST_WRITE;

        /** @return the QMP spelling. */
        public String qmpName()
        {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }

        /**
         * @param qmpName {@code break-snapshot} or {@code break-guest-write}.
         * @return the policy, or {@code null} when unknown.
         */
        public static OnCbwError fromQmpName(final String qmpName)
        {
            for (final OnCbwError e : values())
            {
                if (e.qmpName().equals(qmpName))
                {
                    return e;
                }
            }
            return null;
        }
    }

    private static final int STRIPES = 256;

    private final TrackedDisk disk;
    private final BlockStore source;
    private final FleecingOptions options;
    private final ChunkClaims copied;
    private final Path cbwFile;
    private final BlockStore cbw;
    private final AtomicLong cbwBytes = new AtomicLong();
    private final ReentrantReadWriteLock[] stripes = new ReentrantReadWriteLock[STRIPES];
    private final Interceptor interceptor = new Interceptor();
    private final AtomicLong guestWritesRefused = new AtomicLong();
    private CompletableFuture<Void> writesBeforeCut;
    private volatile boolean cutReached;
    private volatile String broken;
    private volatile boolean closed;
    private boolean open;

    private FleecingView(final TrackedDisk disk, final FleecingOptions options) throws IOException
    {
        this.disk = disk;
        this.source = disk.store();
        this.options = options;
        this.copied = new ChunkClaims(disk.size(), options.chunkSize());
        this.copied.needAll();
        Files.createDirectories(options.cbwDirectory());
        this.cbwFile = Files.createTempFile(options.cbwDirectory(), "fleece-" + disk.name() + "-", ".cbw");
        Files.delete(cbwFile);
        this.cbw = RawFileStore.create(cbwFile, disk.size());
        for (int i = 0; i < STRIPES; i++)
        {
            stripes[i] = new ReentrantReadWriteLock();
        }
    }

    /**
     * Creates a view that is not yet attached; attach it with {@link #openAction()} inside a transaction.
     *
     * @param disk the disk.
     * @param options CBW store and policy.
     * @return the unattached view.
     * @throws IOException when the CBW file cannot be created.
     */
    public static FleecingView create(final TrackedDisk disk, final FleecingOptions options) throws IOException
    {
        return new FleecingView(disk, options);
    }

    /**
     * Opens a view at a cut of its own and waits until it is readable.
     *
     * @param disk the disk.
     * @param options CBW store and policy.
     * @return the open view.
     * @throws IOException when the CBW file cannot be created or writes before the cut failed.
     */
    public static FleecingView open(final TrackedDisk disk, final FleecingOptions options) throws IOException
    {
        final FleecingView view = new FleecingView(disk, options);
        try
        {
            disk.transaction(List.of(view.openAction()));
            view.awaitCut();
        }
        catch (final RuntimeException | IOException ex)
        {
            view.deleteCbw();
            throw ex;
        }
        return view;
    }

    /** @return a control action that attaches this view at its transaction's cut. */
    public ControlAction openAction()
    {
        return new ControlAction()
        {
            @Override
            public void prepare(final CutContext ctx)
            {
                if (open || closed)
                {
                    throw EngineException.generic("Fleecing view of '" + disk.name() + "' was already opened");
                }
            }

            @Override
            public void commit(final CutContext ctx)
            {
                writesBeforeCut = ctx.writesBeforeCutDone();
                ctx.addInterceptor(interceptor);
                open = true;
            }

            @Override
            public void abort(final CutContext ctx)
            {
                // Nothing applied in prepare.
            }

            @Override
            public String type()
            {
                return "x-fleecing-open";
            }
        };
    }

    private void awaitCut() throws IOException
    {
        if (cutReached)
        {
            return;
        }
        final CompletableFuture<Void> future = writesBeforeCut;
        if (future == null)
        {
            throw new IOException("fleecing view of '" + disk.name() + "' is not attached to a cut");
        }
        try
        {
            future.get();
            cutReached = true;
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting for the fleecing view's cut", ex);
        }
        catch (final ExecutionException ex)
        {
            throw new IOException("writes before the fleecing view's cut failed: " + ex.getCause().getMessage(), ex);
        }
    }

    /** @return why the view broke, or {@code null} while it is valid. */
    public String brokenReason()
    {
        return broken;
    }

    /** @return bytes of old data held in the CBW store. */
    public long cbwBytesUsed()
    {
        return cbwBytes.get();
    }

    /** @return guest writes failed by {@link OnCbwError#BREAK_GUEST_WRITE}. */
    public long guestWritesRefused()
    {
        return guestWritesRefused.get();
    }

    /** @return the options. */
    public FleecingOptions options()
    {
        return options;
    }

    @Override
    public long size()
    {
        return source.size();
    }

    @Override
    public boolean isReadOnly()
    {
        return true;
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        final long length = dst.remaining();
        checkRange(offset, length);
        checkUsable();
        awaitCut();
        long at = offset;
        final long end = offset + length;
        while (at < end)
        {
            // One read per run of chunks on the same side (CBW store or live disk), at most STRIPES chunks so
            // that the run's stripes are distinct and can be locked together.
            final long first = copied.chunkOf(at);
            final boolean fromCbw = copied.isDone(first);
            final long lastChunk = copied.chunkOf(end - 1);
            long last = first;
            while (last < lastChunk && last - first + 1 < STRIPES && copied.isDone(last + 1) == fromCbw)
            {
                last++;
            }
            final int count = (int)(last - first + 1);
            lockRun(first, count, false);
            try
            {
                checkUsable();
                // Chunks of the run may have been copied since they were looked at (never the other way round):
                // decide again under the locks and read up to the first chunk on the other side.
                final boolean side = copied.isDone(first);
                long runEnd = first + 1;
                while (runEnd <= last && copied.isDone(runEnd) == side)
                {
                    runEnd++;
                }
                final long pieceEnd = Math.min(end, copied.offsetOf(runEnd - 1) + copied.lengthOf(runEnd - 1));
                final int piece = (int)(pieceEnd - at);
                final ByteBuffer slice = dst.slice(dst.position(), piece);
                if (side)
                {
                    cbw.read(at, slice);
                }
                else
                {
                    source.read(at, slice);
                }
                // Once the view broke, guest writes skip copy-before-write and no longer take this lock: a write
                // may have changed the source under the read. It broke before any such write, so a view still
                // unbroken now read data that no write had touched.
                checkUsable();
                dst.position(dst.position() + piece);
                at = pieceEnd;
            }
            finally
            {
                unlockRun(first, count, false);
            }
        }
    }

    private void checkUsable() throws IOException
    {
        if (closed)
        {
            throw new IOException("fleecing view of '" + disk.name() + "' is closed");
        }
        final String reason = broken;
        if (reason != null)
        {
            throw new IOException("fleecing view of '" + disk.name() + "' is broken: " + reason);
        }
    }

    private void checkRange(final long offset, final long length)
    {
        if (offset < 0 || length < 0 || offset > size() || length > size() - offset)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside the view of "
                + size() + " bytes");
        }
    }

    /**
     * Locks the stripes of {@code count <= STRIPES} consecutive chunks, in ascending stripe index (not chunk order,
     * which wraps round): readers and the interceptor take stripes in one global order, so they cannot deadlock.
     */
    private void lockRun(final long firstChunk, final int count, final boolean exclusive)
    {
        final int start = (int)(firstChunk & (STRIPES - 1));
        final int wrapped = start + count - STRIPES;
        for (int i = 0; i < wrapped; i++)
        {
            lock(i, exclusive);
        }
        for (int i = start; i < Math.min(STRIPES, start + count); i++)
        {
            lock(i, exclusive);
        }
    }

    private void unlockRun(final long firstChunk, final int count, final boolean exclusive)
    {
        final int start = (int)(firstChunk & (STRIPES - 1));
        for (int i = 0; i < count; i++)
        {
            final ReentrantReadWriteLock stripe = stripes[(start + i) & (STRIPES - 1)];
            if (exclusive)
            {
                stripe.writeLock().unlock();
            }
            else
            {
                stripe.readLock().unlock();
            }
        }
    }

    private void lock(final int stripe, final boolean exclusive)
    {
        if (exclusive)
        {
            stripes[stripe].writeLock().lock();
        }
        else
        {
            stripes[stripe].readLock().lock();
        }
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        throw new BlockStoreException(IoReason.READ_ONLY, "fleecing view of '" + disk.name() + "' is read-only");
    }

    @Override
    public void flush()
    {
        // Nothing to make durable: the view is read-only.
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        throw new BlockStoreException(IoReason.READ_ONLY, "fleecing view of '" + disk.name() + "' is read-only");
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        throw new BlockStoreException(IoReason.READ_ONLY, "fleecing view of '" + disk.name() + "' is read-only");
    }

    @Override
    public void forEachAllocationExtent(final long offset, final long length, final AllocationSink sink)
    {
        checkRange(offset, length);
        // The view's allocation is the union of two stores at one moment; report data, which is always safe.
        if (length > 0)
        {
            sink.accept(offset, length, true, false);
        }
    }

    /**
     * Removes the interceptor at a cut and deletes the CBW file; later reads fail.
     *
     * @throws IOException when the CBW file cannot be deleted.
     */
    @Override
    public void close() throws IOException
    {
        if (closed)
        {
            return;
        }
        if (open)
        {
            disk.transaction(List.of(new ControlAction()
            {
                @Override
                public void prepare(final CutContext ctx)
                {
                    // Removal cannot fail.
                }

                @Override
                public void commit(final CutContext ctx)
                {
                    ctx.removeInterceptor(interceptor);
                }

                @Override
                public void abort(final CutContext ctx)
                {
                    // Nothing applied in prepare.
                }

                @Override
                public String type()
                {
                    return "x-fleecing-close";
                }
            }));
        }
        for (final ReentrantReadWriteLock stripe : stripes)
        {
            stripe.writeLock().lock();
        }
        try
        {
            closed = true;
        }
        finally
        {
            for (final ReentrantReadWriteLock stripe : stripes)
            {
                stripe.writeLock().unlock();
            }
        }
        deleteCbw();
    }

    private void deleteCbw() throws IOException
    {
        cbw.close();
        Files.deleteIfExists(cbwFile);
    }

    private void breakView(final String reason)
    {
        if (broken != null)
        {
            return;
        }
        broken = reason;
        copied.abandon();
        final Map<String, Object> data = new LinkedHashMap<>();
        data.put("node", disk.name());
        data.put("reason", reason);
        disk.emit("__dev.tidemark_FLEECING_BROKEN", data);
    }

    /** Copies old data before guest writes; called on the ring's copy-before-write thread only (see Pipeline). */
    private final class Interceptor implements WriteInterceptor
    {
        private ByteBuffer buffer;

        @Override
        public void beforeWrite(final long offset, final long length) throws IOException
        {
            if (broken != null || closed)
            {
                return;
            }
            final long first = copied.chunkOf(offset);
            final long last = copied.chunkOf(offset + length - 1);
            long chunk = first;
            while (chunk <= last)
            {
                if (copied.isDone(chunk))
                {
                    chunk++;
                    continue;
                }
                // A run of chunks not yet copied, copied in one piece (at most STRIPES chunks: distinct stripes).
                // Only this thread marks chunks done, so the run cannot change under us.
                long runEnd = chunk + 1;
                while (runEnd <= last && runEnd - chunk < STRIPES && !copied.isDone(runEnd))
                {
                    runEnd++;
                }
                final int count = (int)(runEnd - chunk);
                awaitCut();
                lockRun(chunk, count, true);
                try
                {
                    if (broken != null || closed)
                    {
                        return;
                    }
                    if (!preserve(chunk, count, offset))
                    {
                        return;
                    }
                }
                finally
                {
                    unlockRun(chunk, count, true);
                }
                chunk = runEnd;
            }
        }

        /** @return {@code false} when the view broke and nothing more needs preserving. */
        private boolean preserve(final long firstChunk, final int count, final long writeOffset) throws IOException
        {
            final long at = copied.offsetOf(firstChunk);
            final long lastChunk = firstChunk + count - 1;
            final int len = (int)(copied.offsetOf(lastChunk) + copied.lengthOf(lastChunk) - at);
            if (cbwBytes.get() + len > options.cbwLimitBytes())
            {
                return outOfSpace("copy-before-write space of " + options.cbwLimitBytes()
                    + " bytes is exhausted (a guest write at offset " + writeOffset + " needed " + len + " more)");
            }
            try
            {
                // The kernel's copy (one copy, no user-space buffer) when the disk is a raw file; whatever it did
                // not copy goes through the buffer, which reports the error.
                final long kernel = source instanceof RawFileStore raw && cbw instanceof RawFileStore cbwRaw
                    ? raw.copyTo(at, cbwRaw, at, len) : 0;
                if (kernel < len)
                {
                    final int rest = (int)(len - kernel);
                    if (buffer == null || buffer.capacity() < rest)
                    {
                        buffer = ByteBuffer.allocateDirect(len);
                    }
                    buffer.clear().limit(rest);
                    source.read(at + kernel, buffer);
                    buffer.flip();
                    cbw.write(at + kernel, buffer);
                }
            }
            catch (final IOException ex)
            {
                return outOfSpace("copy-before-write store failed: " + ex.getMessage());
            }
            cbwBytes.addAndGet(len);
            for (long chunk = firstChunk; chunk <= lastChunk; chunk++)
            {
                copied.markDone(chunk);
            }
            return true;
        }

        private boolean outOfSpace(final String reason) throws IOException
        {
            if (options.onCbwError() == OnCbwError.BREAK_GUEST_WRITE)
            {
                guestWritesRefused.incrementAndGet();
                throw new BlockStoreException(IoReason.NO_SPACE, "No space left on device: fleecing view of '"
                    + disk.name() + "': " + reason);
            }
            breakView(reason);
            return false;
        }
    }
}
