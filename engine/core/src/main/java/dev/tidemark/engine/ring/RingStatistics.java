package dev.tidemark.engine.ring;

import java.util.Map;

/**
 * A snapshot of one write ring's counters; immutable, safe to share between threads.
 *
 * @param groupCommits group commits run (one per batch that gained bits in durable mode).
 * @param forcedPages bitmap pages those group commits forced.
 * @param batches batches group-committed and written (fused: drains; staged: the mark handler's batches).
 * @param epoch the disk's current epoch: how many cuts have committed since the ring started.
 * @param controlTimes per kind of control request ({@link CutHandler#kind()}: for a transaction its action types
 *                     joined with {@code +}, prefixed {@code joint:} for a part of a transaction over several disks;
 *                     {@code task} for a mark-thread task): how long it held the mark thread.
 */
public record RingStatistics(long groupCommits, long forcedPages, long batches, long epoch,
    Map<String, ControlTime> controlTimes)
{
    /** Copies the control times, keeping their order. */
    public RingStatistics
    {
        controlTimes = java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(controlTimes));
    }

    /**
     * Time the mark thread spent on one kind of control request.
     *
     * @param count requests of this kind.
     * @param totalNanos their summed wall-clock time.
     * @param maxNanos the longest one.
     * @param totalCpuNanos their summed CPU time on the mark thread (negative when the JVM cannot measure it).
     * @param maxCpuNanos the most CPU time one of them took.
     */
    public record ControlTime(long count, long totalNanos, long maxNanos, long totalCpuNanos, long maxCpuNanos)
    {
    }

    /**
     * The longest times the ring thread was held since the previous window was taken: what a guest write queued
     * behind it could have waited for the ring, whatever else delayed it (scheduling, the client, the network).
     *
     * @param longestBatchNanos the longest drain of guest requests (fused pipeline: group commit, copy-before-write,
     *                          store calls and completions of one batch); 0 in the staged pipeline.
     * @param longestBatchRequests how many requests that drain held.
     * @param longestControlNanos the longest wall-clock time one control request held the ring.
     * @param longestControlCpuNanos the CPU time of that request (negative when the JVM cannot measure it).
     * @param longestControlKind that request's kind, or the empty string when none ran.
     */
    public record HoldWindow(long longestBatchNanos, long longestBatchRequests, long longestControlNanos,
        long longestControlCpuNanos, String longestControlKind)
    {
    }
}
