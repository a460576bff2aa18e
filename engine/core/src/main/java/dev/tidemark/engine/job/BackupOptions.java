package dev.tidemark.engine.job;

import java.util.Objects;

/**
 * The arguments of one {@code blockdev-backup}; immutable and safe to share between threads.
 *
 * <p>Only shapes are checked here; the semantic checks with QEMU's messages happen in
 * {@link BackupStartAction#prepare}, at the cut, where the bitmap's state is known.
 *
 * @param jobId the job id; {@code null} means the device name (QEMU's default).
 * @param device the source node name (for messages and {@code query-block-jobs}).
 * @param sync what to copy.
 * @param bitmap the bitmap's name, or {@code null}.
 * @param bitmapMode the bitmap mode, or {@code null} when omitted.
 * @param onSourceError policy for read errors.
 * @param onTargetError policy for write errors.
 * @param job auto-finalize, auto-dismiss and speed.
 * @param maxRunBytes the largest single copy I/O in bytes (runs of adjacent chunks are coalesced up to this).
 * @param copyMethod how bytes move (the kernel's copy where the store pair allows it, or a buffer).
 */
public record BackupOptions(String jobId, String device, SyncMode sync, String bitmap, BitmapMode bitmapMode,
    OnError onSourceError, OnError onTargetError, JobOptions job, int maxRunBytes, CopyMethod copyMethod)
{
    /** Default largest copy I/O: 1 MiB. */
    public static final int DEFAULT_MAX_RUN = 1 << 20;

    /** Checks the shapes. */
    public BackupOptions
    {
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(sync, "sync");
        Objects.requireNonNull(onSourceError, "onSourceError");
        Objects.requireNonNull(onTargetError, "onTargetError");
        Objects.requireNonNull(job, "job");
        Objects.requireNonNull(copyMethod, "copyMethod");
        if (maxRunBytes < 512 || Integer.bitCount(maxRunBytes) != 1)
        {
            throw new IllegalArgumentException("maxRunBytes must be a power of two >= 512: " + maxRunBytes);
        }
    }

    /**
     * @param device the source node.
     * @param sync what to copy.
     * @return options with QEMU's defaults for everything else.
     */
    public static BackupOptions of(final String device, final SyncMode sync)
    {
        return new BackupOptions(null, device, sync, null, null, OnError.REPORT, OnError.REPORT,
            JobOptions.DEFAULTS, DEFAULT_MAX_RUN, CopyMethod.DEFAULT);
    }

    /** @param id the job id. @return a copy with it. */
    public BackupOptions withJobId(final String id)
    {
        return new BackupOptions(id, device, sync, bitmap, bitmapMode, onSourceError, onTargetError, job,
            maxRunBytes, copyMethod);
    }

    /** @param name the bitmap. @param mode its mode, or {@code null}. @return a copy with them. */
    public BackupOptions withBitmap(final String name, final BitmapMode mode)
    {
        return new BackupOptions(jobId, device, sync, name, mode, onSourceError, onTargetError, job, maxRunBytes,
            copyMethod);
    }

    /** @param source read policy. @param target write policy. @return a copy with them. */
    public BackupOptions withErrorPolicies(final OnError source, final OnError target)
    {
        return new BackupOptions(jobId, device, sync, bitmap, bitmapMode, source, target, job, maxRunBytes,
            copyMethod);
    }

    /** @param options job options. @return a copy with them. */
    public BackupOptions withJob(final JobOptions options)
    {
        return new BackupOptions(jobId, device, sync, bitmap, bitmapMode, onSourceError, onTargetError, options,
            maxRunBytes, copyMethod);
    }

    /** @param bytes largest copy I/O. @return a copy with it. */
    public BackupOptions withMaxRunBytes(final int bytes)
    {
        return new BackupOptions(jobId, device, sync, bitmap, bitmapMode, onSourceError, onTargetError, job, bytes,
            copyMethod);
    }

    /** @param method how bytes move. @return a copy with it. */
    public BackupOptions withCopyMethod(final CopyMethod method)
    {
        return new BackupOptions(jobId, device, sync, bitmap, bitmapMode, onSourceError, onTargetError, job,
            maxRunBytes, method);
    }

    /** @return the effective job id (the device name when none was given). */
    public String effectiveJobId()
    {
        return jobId != null ? jobId : device;
    }
}
