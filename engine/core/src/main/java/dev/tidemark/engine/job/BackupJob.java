package dev.tidemark.engine.job;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.WriteInterceptor;
import dev.tidemark.engine.WriteLog;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.Successor;
import dev.tidemark.io.AlignedBufferPool;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A {@code blockdev-backup} job: copies the disk as it was at its cut to a target store; the public methods are
 * safe from any thread, the copy runs on the job's worker thread and, for chunks a guest is about to overwrite,
 * on the ring thread that runs copy-before-write (see {@link dev.tidemark.engine.Pipeline}).
 *
 * <p><b>Point in time (I3).</b> The job is created at a cut by {@link BackupStartAction}. From that cut its
 * {@link WriteInterceptor} sees every guest write before the data reaches the store. A {@link ChunkClaims} map
 * holds, per chunk, whether the job still needs it and who copies it: the worker claims runs of needed chunks
 * in ascending order and copies them; the interceptor, for a write that touches a needed chunk nobody claimed,
 * claims and copies the chunk's old data itself before letting the write through, and for a chunk the worker
 * holds it waits until the worker has copied it. Both first wait for {@link CutContext#writesBeforeCutDone()}, so
 * every write sequenced before the cut is in the store before anything is read.
 *
 * <p><b>What is copied.</b> {@code full}: every chunk (all-zero chunks become zero ranges, so a fresh sparse
 * target keeps its holes); {@code top}: every chunk too, but within a claimed run only the extents the source
 * store reports allocated are read and written, the rest become zero ranges (a raw disk has one layer);
 * {@code bitmap}/{@code incremental}: the chunks dirty in the bitmap's frozen parent at the cut; {@code none}:
 * nothing by itself, only what copy-before-write preserves, until the job is cancelled.
 *
 * <p><b>Bitmaps (I4).</b> The bitmap is frozen at the cut (a successor records new writes) and resolved when the
 * job ends, in one transaction that also removes the interceptor: {@code on-success} abdicates on success and
 * reclaims otherwise; {@code always} clears chunks from the frozen parent as they are copied (for {@code full}
 * and {@code top} the parent is first set to the whole disk) and reclaims on any outcome; {@code never} always
 * reclaims.
 *
 * <p><b>How bytes move.</b> With {@link CopyMethod#KERNEL}, from a raw file to a raw file or into a qcow2 image's host
 * clusters (whole clusters), the copy is the kernel's own ({@code copy_file_range}: one copy); a {@code full} backup
 * then keeps holes by asking the source's allocation ({@code SEEK_DATA}) instead of comparing every byte with zero,
 * so an allocated all-zero range is copied as data. Otherwise ({@link CopyMethod#BUFFER}, the default, and NBD
 * targets, wrapped stores, partial qcow2 clusters) it reads into a pooled, aligned direct buffer and writes from it,
 * with no heap copy. Whatever the kernel
 * does not copy (it refused, failed or met an early end of the source) goes through the buffer, which reports
 * errors on the side they happen. {@link BackupOptions#copyMethod()} picks.
 *
 * <p><b>Copy-before-write without waiting for the target.</b> The interceptor reads a chunk's old data into a
 * {@link CbwStash} slot and lets the guest write go; the worker writes stashed chunks to the target between its own
 * runs and before it ends, so the job still cannot succeed without them. Only when every slot is in flight (or the
 * stash is off: {@code sync: none}, chunks above 1 MiB, {@value #STASH_PROPERTY}=0) does the interceptor copy to
 * the target itself, taking the target's lock.
 *
 * <p><b>Copy-before-write failures.</b> If the interceptor cannot preserve a chunk (the target failed), the backup
 * can no longer be a point in time: the job is broken (it fails with the cause) and the guest write proceeds.
 */
public final class BackupJob extends Job
{
    /** Bytes of old data copy-before-write may hold for the target per job (default 64 MiB; 0 turns it off). */
    public static final String STASH_PROPERTY = "tidemark.backup.cbwStashBytes";
    private static final long DEFAULT_STASH_BYTES = 64L << 20;
    private static final long MAX_STASH_CHUNK = 1L << 20;
    private static final long CANCELLED = -1;
    private static final long RETRY = -2;

    // Shared by every job of the process: a job holds one buffer while pumping, copy-before-write one per copy.
    private static final AlignedBufferPool POOL = new AlignedBufferPool(4096, 4096, 4 << 20, 8);
    private static final ByteBuffer ZEROES = ByteBuffer.allocateDirect(1 << 16).asReadOnlyBuffer();

    private final BackupOptions options;
    private final TrackedDisk disk;
    private final BlockStore source;
    private final BlockStore target;
    private final ChunkClaims claims;
    private final Successor successor;
    private final BitmapMode bitmapMode;
    private final CompletableFuture<Void> writesBeforeCut;
    private final Interceptor interceptor = new Interceptor();
    private final CbwStash stash;
    private final Object parentLock = new Object();
    private final RawFileStore kernelSource;
    private final RawFileStore kernelTarget;
    private final Qcow2Writer kernelQcow2;
    private volatile IOException cbwFailure;
    private volatile boolean cutReached;
    private boolean parentSealed;
    private boolean resolved;
    /** Whether the reclaim at the job's end found the successor merged ahead of its cut (tests). */
    private volatile boolean reclaimedAhead;

    BackupJob(final String id, final BackupOptions options, final TrackedDisk disk, final BlockStore target,
        final ChunkClaims claims, final Successor successor, final BitmapMode bitmapMode,
        final CompletableFuture<Void> writesBeforeCut, final long totalBytes, final EngineEvents events)
    {
        super(id, "backup", options.job(), events);
        this.options = options;
        this.disk = disk;
        this.source = disk.store();
        this.target = target;
        this.claims = claims;
        this.successor = successor;
        this.bitmapMode = bitmapMode;
        this.writesBeforeCut = writesBeforeCut;
        final boolean kernelSourceOk = options.copyMethod() == CopyMethod.KERNEL && source instanceof RawFileStore
            && ((RawFileStore)source).kernelCopySupported();
        this.kernelTarget = kernelSourceOk && target instanceof RawFileStore raw && raw.kernelCopySupported()
            ? raw : null;
        this.kernelQcow2 = kernelSourceOk && target instanceof Qcow2Writer qcow2 ? qcow2 : null;
        this.kernelSource = kernelTarget != null || kernelQcow2 != null ? (RawFileStore)source : null;
        // sync none has no pump to drain a stash; huge chunks would pin too much memory per slot.
        final long stashBytes = Long.getLong(STASH_PROPERTY, DEFAULT_STASH_BYTES);
        final boolean stashable = options.sync() != SyncMode.NONE && claims.chunkSize() <= MAX_STASH_CHUNK;
        this.stash = new CbwStash(stashable ? (int)Math.min(stashBytes / claims.chunkSize(), 1 << 16) : 0,
            (int)Math.min(claims.chunkSize(), MAX_STASH_CHUNK));
        if (totalBytes < 0)
        {
            // Counted on first use (at the latest when the job thread starts), not at the cut.
            setTotalProgressLater(claims::neededBytes);
        }
        else
        {
            setTotalProgress(totalBytes);
        }
    }

    /** @return whether this job copies with the kernel's {@code copy_file_range} (raw file to raw file or qcow2). */
    public boolean usesKernelCopy()
    {
        return kernelSource != null;
    }

    private ByteBuffer acquireBuffer()
    {
        return POOL.acquire(Math.min(options.maxRunBytes(), POOL.maxSize()));
    }

    @Override
    public String device()
    {
        return options.device();
    }

    /** @return the options the job was started with. */
    public BackupOptions options()
    {
        return options;
    }

    /** @return the target store. */
    public BlockStore target()
    {
        return target;
    }

    /** @return bytes per chunk of this job's copy map. */
    public long chunkSize()
    {
        return claims.chunkSize();
    }

    /**
     * Walks the byte extents this job has copied so far (after success: everything it was asked to copy), in
     * ascending order; a restore applies exactly these extents of the target.
     *
     * @param consumer receives {@code (offset, length)}.
     */
    public void forEachCopiedExtent(final dev.tidemark.bitmap.ExtentConsumer consumer)
    {
        claims.forEachDoneExtent(consumer);
    }

    WriteInterceptor interceptor()
    {
        return interceptor;
    }

    // ------------------------------------------------------------------------------------------------- worker

    @Override
    protected void run() throws Exception
    {
        try
        {
            totalProgress();
            if (!awaitCut())
            {
                return;
            }
            if (options.sync() == SyncMode.NONE)
            {
                awaitCancel(() -> cbwFailure != null);
                checkBroken();
                return;
            }
            pump();
        }
        finally
        {
            if (claims.nextPending(0) >= 0 || isCancelled())
            {
                // Failed or cancelled: copy-before-write stops preserving anything.
                claims.abandon();
            }
        }
    }

    private boolean awaitCut() throws Exception
    {
        while (true)
        {
            if (!pausePoint())
            {
                return false;
            }
            try
            {
                writesBeforeCut.get(50, TimeUnit.MILLISECONDS);
                cutReached = true;
                return true;
            }
            catch (final TimeoutException stillWaiting)
            {
                // Check for cancel and pause, then wait again.
            }
            catch (final ExecutionException ex)
            {
                throw new IOException("writes before the backup's cut failed: " + ex.getCause().getMessage(), ex);
            }
        }
    }

    private void pump() throws Exception
    {
        final ByteBuffer buffer = acquireBuffer();
        try
        {
            pump(buffer);
        }
        finally
        {
            POOL.release(buffer);
        }
    }

    private void pump(final ByteBuffer pumpBuffer) throws Exception
    {
        final long maxRunChunks = Math.max(1, options.maxRunBytes() / claims.chunkSize());
        long chunk = claims.nextPending(0);
        while (true)
        {
            while (chunk >= 0)
            {
                if (!pausePoint())
                {
                    return;
                }
                drainStash();
                checkBroken();
                if (!claims.tryClaim(chunk))
                {
                    chunk = claims.nextPending(chunk + 1);
                    continue;
                }
                long end = chunk + 1;
                while (end < claims.chunkCount() && end - chunk < maxRunChunks && claims.tryClaim(end))
                {
                    end++;
                }
                final long bytes = copyClaimed(chunk, end, pumpBuffer);
                if (bytes == CANCELLED)
                {
                    return;
                }
                if (bytes == RETRY)
                {
                    chunk = claims.nextPending(chunk);
                    continue;
                }
                throttle(bytes);
                chunk = claims.nextPending(end);
            }
            // Chunks the interceptor claimed may still be in flight or stashed; write those, wait for the others, take
            // over released ones.
            chunk = claims.nextPending(0);
            while (chunk >= 0 && claims.isClaimed(chunk))
            {
                drainStash();
                if (!claims.isDone(chunk))
                {
                    claims.awaitPreserved(chunk);
                    drainStash();
                }
                checkBroken();
                if (!claims.isDone(chunk))
                {
                    break;
                }
                chunk = claims.nextPending(chunk + 1);
            }
            if (chunk < 0)
            {
                break;
            }
        }
        checkBroken();
        target.flush();
    }

    /**
     * Writes chunks copy-before-write stashed to the target and marks them done; the worker. At most one stash's
     * worth per call, and none once the job is cancelled: a guest that keeps rewriting needed chunks refills the stash
     * as fast as it drains, and the worker must still get back to its own pause, cancel and speed checks. A write that
     * fails breaks the job as a failed copy-before-write does: the old data is gone from the disk.
     */
    private void drainStash()
    {
        CbwStash.Slot slot;
        for (int drained = 0; drained < stash.slots() && !isCancelled() && (slot = stash.poll()) != null; drained++)
        {
            try
            {
                if (!claims.isAbandoned())
                {
                    writeStashed(slot);
                    complete(slot.chunk, slot.chunk + 1);
                }
            }
            catch (final CopyFailure failure)
            {
                cbwFailure = new IOException("copy-before-write failed at offset " + claims.offsetOf(slot.chunk)
                    + ": " + failure.cause.getMessage(), failure.cause);
                claims.abandon();
            }
            finally
            {
                stash.recycle(slot);
            }
        }
    }

    private void writeStashed(final CbwStash.Slot slot) throws CopyFailure
    {
        // As copyRange: full and top keep the target sparse where the chunk reads as zeroes.
        writeOrZeroes(claims.offsetOf(slot.chunk), slot.data,
            options.sync() != SyncMode.BITMAP && options.sync() != SyncMode.INCREMENTAL);
    }

    /** Writes {@code data} at {@code offset}, or a zero range instead when {@code holesForZero} and it is all zero. */
    private void writeOrZeroes(final long offset, final ByteBuffer data, final boolean holesForZero)
        throws CopyFailure
    {
        if (holesForZero && isZero(data))
        {
            writeZeroes(offset, data.remaining(), true);
            return;
        }
        try
        {
            target.write(offset, data);
        }
        catch (final IOException ex)
        {
            throw new CopyFailure(false, ex);
        }
    }

    /**
     * Copies claimed chunks {@code [first, end)} with the error policies.
     *
     * @return the bytes copied, {@link #CANCELLED} when the job was cancelled while stopped on an error, or
     *         {@link #RETRY} when the chunks were released to be claimed and copied again.
     */
    private long copyClaimed(final long first, final long end, final ByteBuffer buffer) throws Exception
    {
        try
        {
            final long bytes = copyRange(first, end, buffer);
            complete(first, end);
            return bytes;
        }
        catch (final CopyFailure failure)
        {
            for (long c = first; c < end; c++)
            {
                claims.release(c);
            }
            final OnError policy = failure.isRead ? options.onSourceError() : options.onTargetError();
            if (handleError(policy, failure.isRead, failure.cause))
            {
                return RETRY;
            }
            if (isCancelled())
            {
                return CANCELLED;
            }
            throw failure.cause;
        }
    }

    private void complete(final long first, final long end)
    {
        long bytes = 0;
        for (long c = first; c < end; c++)
        {
            if (claims.isDone(c))
            {
                continue;
            }
            bytes += claims.lengthOf(c);
            if (bitmapMode == BitmapMode.ALWAYS && successor != null)
            {
                // Clear and publish together, and never after the outcome sealed the parent: a late clear could
                // otherwise erase a bit the reclaim just merged in from the successor.
                synchronized (parentLock)
                {
                    if (!parentSealed)
                    {
                        successor.frozenParent().clear(claims.offsetOf(c), claims.lengthOf(c));
                    }
                    claims.markDone(c);
                }
            }
            else
            {
                claims.markDone(c);
            }
        }
        addProgress(bytes);
    }

    private void checkBroken() throws IOException, InterruptedException
    {
        final IOException broken = cbwFailure;
        if (broken != null)
        {
            handleError(OnError.REPORT, false, broken);
            throw broken;
        }
    }

    /** Copies the chunks {@code [first, end)} (claimed by the caller) from the source to the target. */
    private long copyRange(final long first, final long end, final ByteBuffer buffer) throws CopyFailure
    {
        final long start = claims.offsetOf(first);
        final long stop = Math.min(claims.diskSize(), claims.offsetOf(end));
        if (options.sync() == SyncMode.TOP)
        {
            final long walked = copyByExtents(source, start, stop - start,
                (off, len) -> copyBytes(off, len, buffer, false));
            if (walked < stop)
            {
                copyBytes(walked, stop - walked, buffer, false);
            }
        }
        else
        {
            copyBytes(start, stop - start, buffer, options.sync() == SyncMode.FULL);
        }
        return stop - start;
    }

    private void copyBytes(final long offset, final long length, final ByteBuffer buffer, final boolean holesForZero)
        throws CopyFailure
    {
        if (kernelSource == null)
        {
            copyThroughBuffer(offset, length, buffer, holesForZero);
        }
        else if (holesForZero)
        {
            kernelCopyKeepingHoles(offset, length, buffer);
        }
        else
        {
            kernelCopy(offset, length, buffer);
        }
    }

    private void kernelCopy(final long offset, final long length, final ByteBuffer buffer) throws CopyFailure
    {
        final long copied;
        if (kernelTarget != null)
        {
            copied = kernelSource.copyTo(offset, kernelTarget, offset, length);
        }
        else
        {
            try
            {
                copied = kernelQcow2.copyFrom(kernelSource, offset, length);
            }
            catch (final IOException ex)
            {
                throw new CopyFailure(false, ex);
            }
        }
        if (copied < length)
        {
            copyThroughBuffer(offset + copied, length - copied, buffer, false);
        }
    }

    /** The kernel copy of a {@code full} backup: holes of the source become zero ranges, data is copied. */
    private void kernelCopyKeepingHoles(final long offset, final long length, final ByteBuffer buffer)
        throws CopyFailure
    {
        copyByExtents(kernelSource, offset, length, (off, len) -> kernelCopy(off, len, buffer));
    }

    /** Runs on the copying thread: copies one data extent of the source to the target. */
    @FunctionalInterface
    private interface DataCopy
    {
        void copy(long offset, long length) throws CopyFailure;
    }

    /**
     * Walks the allocation extents of {@code store} over the range: data extents go through {@code copyData},
     * holes and zero extents become zero ranges of the target.
     *
     * @return where the walk ended: the range's end, or less when the store reported fewer extents.
     */
    private long copyByExtents(final BlockStore store, final long offset, final long length, final DataCopy copyData)
        throws CopyFailure
    {
        final long[] cursor = {offset};
        final CopyFailure[] failed = new CopyFailure[1];
        try
        {
            store.forEachAllocationExtent(offset, length, (off, len, allocated, zero) ->
            {
                try
                {
                    if (allocated && !zero)
                    {
                        copyData.copy(off, len);
                    }
                    else
                    {
                        writeZeroes(off, len, true);
                    }
                    cursor[0] = off + len;
                    return true;
                }
                catch (final CopyFailure f)
                {
                    failed[0] = f;
                    return false;
                }
            });
        }
        catch (final IOException ex)
        {
            throw new CopyFailure(true, ex);
        }
        if (failed[0] != null)
        {
            throw failed[0];
        }
        return cursor[0];
    }

    private void copyThroughBuffer(final long offset, final long length, final ByteBuffer buffer,
        final boolean holesForZero) throws CopyFailure
    {
        long done = 0;
        while (done < length)
        {
            final int piece = (int)Math.min(Math.min(buffer.capacity(), options.maxRunBytes()), length - done);
            final long at = offset + done;
            buffer.clear().limit(piece);
            try
            {
                source.read(at, buffer);
            }
            catch (final IOException ex)
            {
                throw new CopyFailure(true, ex);
            }
            buffer.flip();
            writeOrZeroes(at, buffer, holesForZero);
            done += piece;
        }
    }

    private void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws CopyFailure
    {
        try
        {
            target.writeZeroes(offset, length, mayUnmap);
        }
        catch (final IOException ex)
        {
            throw new CopyFailure(false, ex);
        }
    }

    private static boolean isZero(final ByteBuffer data)
    {
        final int zeroLength = ZEROES.capacity();
        for (int pos = data.position(); pos < data.limit(); pos += zeroLength)
        {
            final int len = Math.min(zeroLength, data.limit() - pos);
            if (data.slice(pos, len).mismatch(ZEROES.slice(0, len)) != -1)
            {
                return false;
            }
        }
        return true;
    }

    /** A read or write failure of one copy, with its side. */
    private static final class CopyFailure extends Exception
    {
        private static final long serialVersionUID = 1L;
        final boolean isRead;
        final transient IOException cause;

        CopyFailure(final boolean isRead, final IOException cause)
        {
            super(cause.getMessage(), cause, false, false);
            this.isRead = isRead;
            this.cause = cause;
        }
    }

    // ------------------------------------------------------------------------------------------ copy-before-write

    /** Preserves old data before guest writes; runs on the ring's copy-before-write thread only (see Pipeline). */
    private final class Interceptor implements WriteInterceptor
    {
        @Override
        public void beforeWrite(final long offset, final long length) throws IOException
        {
            if (claims.isAbandoned())
            {
                return;
            }
            final long first = claims.chunkOf(offset);
            final long last = claims.chunkOf(offset + length - 1);
            long chunk = first;
            while (chunk <= last && !claims.isAbandoned())
            {
                if (!claims.isNeeded(chunk) || claims.isPreserved(chunk))
                {
                    chunk++;
                    continue;
                }
                waitForCut();
                if (claims.tryClaim(chunk))
                {
                    if (stash(chunk))
                    {
                        chunk++;
                        continue;
                    }
                    long end = chunk + 1;
                    while (end <= last && claims.tryClaim(end))
                    {
                        end++;
                    }
                    copyForGuest(chunk, end);
                    chunk = end;
                }
                else
                {
                    try
                    {
                        claims.awaitPreserved(chunk);
                    }
                    catch (final InterruptedException ex)
                    {
                        Thread.currentThread().interrupt();
                        throw new IOException("interrupted while waiting for the backup of chunk " + chunk, ex);
                    }
                    if (claims.isPreserved(chunk))
                    {
                        chunk++;
                    }
                    // Released by the worker after an error: loop and claim it here.
                }
            }
        }

        /**
         * Reads the old data of a chunk the caller claimed into a stash slot for the worker.
         *
         * @return {@code false} when no slot is free or the read failed: the caller then copies to the target itself
         *         (and reports a read error its way).
         */
        private boolean stash(final long chunk)
        {
            final CbwStash.Slot slot = stash.take();
            if (slot == null)
            {
                return false;
            }
            slot.data.limit((int)claims.lengthOf(chunk));
            try
            {
                source.read(claims.offsetOf(chunk), slot.data);
            }
            catch (final IOException ex)
            {
                stash.putBack(slot);
                return false;
            }
            slot.data.flip();
            slot.chunk = chunk;
            // Queued before it counts as preserved: the worker's end-of-copy wait then always finds it.
            stash.offer(slot);
            claims.markStashed(chunk);
            return true;
        }

        private void waitForCut() throws IOException
        {
            if (cutReached)
            {
                return;
            }
            try
            {
                writesBeforeCut.get();
                cutReached = true;
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while waiting for the backup's cut", ex);
            }
            catch (final ExecutionException ex)
            {
                throw new IOException("writes before the backup's cut failed", ex);
            }
        }

        private void copyForGuest(final long first, final long end)
        {
            final ByteBuffer buffer = acquireBuffer();
            try
            {
                copyRange(first, end, buffer);
                complete(first, end);
            }
            catch (final CopyFailure failure)
            {
                for (long c = first; c < end; c++)
                {
                    claims.release(c);
                }
                cbwFailure = new IOException("copy-before-write failed at offset " + claims.offsetOf(first) + ": "
                    + failure.cause.getMessage(), failure.cause);
                claims.abandon();
            }
            finally
            {
                POOL.release(buffer);
            }
        }
    }

    /** @return whether the job's end reclaimed its successor by the merge staged ahead of the cut (tests). */
    boolean reclaimedAhead()
    {
        return reclaimedAhead;
    }

    // ------------------------------------------------------------------------------------------------ outcome

    @Override
    protected void onCommit()
    {
        // Resolved at commit, when every peer of a grouped transaction is known to have succeeded, so a group
        // never abdicates one member's bitmap and then aborts.
        try
        {
            resolve(true);
        }
        catch (final RuntimeException ex)
        {
            // The disk is closing: reopening merges the in-flight successor back (reclaim), which loses nothing.
            fail("bitmap could not be resolved: " + ex.getMessage());
        }
    }

    @Override
    protected void onAbort()
    {
        claims.abandon();
        try
        {
            resolve(false);
        }
        catch (final RuntimeException ex)
        {
            // The disk is closing: its journal reopens the successor as merged back, which is what abort wants.
            fail("bitmap could not be resolved: " + ex.getMessage());
        }
    }

    /**
     * Removes the interceptor and resolves the bitmap in one transaction, once, then waits until no interceptor
     * call for an earlier request is still running, so nothing touches the target or the bitmap afterwards.
     */
    private void resolve(final boolean success)
    {
        if (resolved)
        {
            return;
        }
        synchronized (parentLock)
        {
            parentSealed = true;
        }
        claims.abandon();
        final String outcome = success ? "completed" : failed() ? "failed: " + error() : "cancelled";
        final Finish finish = new Finish(success, outcome);
        disk.transaction(List.of(finish));
        resolved = true;
        try
        {
            finish.drained.get(60, TimeUnit.SECONDS);
            // The worker has ended and no copy-before-write call can come any more.
            stash.free();
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
        catch (final ExecutionException | TimeoutException ex)
        {
            // The ring failed or stalled; the outcome is applied, only the drain could not be observed.
            fail("copy-before-write did not drain: " + ex);
        }
    }

    /**
     * The control action that ends the job at a cut; built and staged on the job's thread, the rest on the ring's mark
     * thread.
     *
     * <p>A reclaim ORs the successor into the frozen bitmap, which costs what the successor holds: every chunk written
     * while the job ran. So that the ring does not wait for it, {@link #stage} merges ahead of the cut with a
     * {@link WriteLog} open (the frozen bitmap is sealed, no copy clears it any more, and a merge is a marker, safe
     * beside the ring marking the successor) and forces the result in durable mode; the cut then ORs in only the
     * writes logged since, when no other cut came in between (else it merges everything again). Bits merged early
     * are bits the reclaim adds anyway: a query between the two sees them a moment before the job ends, and a crash
     * in between reopens the successor as merged back, the same set.
     */
    private final class Finish implements ControlAction
    {
        private final boolean success;
        private final String outcome;
        private volatile CompletableFuture<Void> drained = CompletableFuture.completedFuture(null);
        private TrackedDisk stagedOn;
        private WriteLog log;
        private boolean recording;
        private long applied;

        Finish(final boolean success, final String outcome)
        {
            this.success = success;
            this.outcome = outcome;
        }

        private boolean reclaims()
        {
            return successor != null && !(success && bitmapMode == BitmapMode.ON_SUCCESS);
        }

        @Override
        public void stage(final TrackedDisk on)
        {
            if (!reclaims() || successor.isResolved())
            {
                return;
            }
            log = on.openWriteLog();
            if (log == null)
            {
                return;
            }
            stagedOn = on;
            try
            {
                // Read after the log opened: a cut in between fails the epoch check at the cut.
                recording = on.bitmaps().queryFlags(successor.bitmapName()).recording();
                final DirtyBitmap parent = successor.frozenParent();
                parent.merge(successor.bitmap());
                applied = catchUp(parent, log.size());
                if (on.bitmaps().isDurable())
                {
                    parent.force();
                }
            }
            catch (final RuntimeException ex)
            {
                // Nothing lost: the cut merges everything itself.
                unstage();
            }
        }

        /** ORs the writes logged in {@code [applied, to)} into the frozen bitmap when the successor records them. */
        private long catchUp(final DirtyBitmap parent, final long to)
        {
            return recording ? BitmapActions.markLogged(log, applied, to, parent) : to;
        }

        @Override
        public void unstage()
        {
            if (stagedOn != null)
            {
                stagedOn.closeWriteLog(log);
                stagedOn = null;
            }
        }

        @Override
        public void prepare(final CutContext ctx)
        {
            if (successor != null && successor.isResolved())
            {
                throw EngineException.generic("Bitmap '" + successor.bitmapName() + "' was already resolved");
            }
        }

        @Override
        public void commit(final CutContext ctx)
        {
            drained = ctx.writesBeforeCutDone();
            ctx.removeInterceptor(interceptor);
            // The outcome goes first: commit-phase records stand alone in the journal, and a crash between an
            // abdication and its outcome would leave a bitmap that dropped the bits of a backup the journal does
            // not call completed. This way a crash in between merges the successor back, a superset.
            ctx.journal().append(JournalRecord.jobOutcome(id(), outcome));
            if (successor != null)
            {
                if (success && bitmapMode == BitmapMode.ON_SUCCESS)
                {
                    ctx.registry().abdicate(successor);
                }
                else
                {
                    // The early merge is whole only if the log saw every write since it began: no cut in between.
                    final boolean merged = stagedOn != null && log.isExactAt(ctx);
                    if (merged)
                    {
                        applied = catchUp(successor.frozenParent(), log.size());
                    }
                    reclaimedAhead = merged;
                    ctx.registry().reclaim(successor, merged);
                }
            }
        }

        @Override
        public void abort(final CutContext ctx)
        {
            // Nothing was applied in prepare.
        }

        @Override
        public String type()
        {
            return "x-backup-finish";
        }
    }
}
