package dev.tidemark.engine.ring;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * How long the mark thread spent on each kind of control request; written by the mark thread only, read by any
 * thread (every access holds the monitor, which only the mark thread takes after each control request, so it is
 * uncontended on the write path).
 *
 * <p>The wall-clock figure is the time from the start of the request's actions (or task) to the completion of its
 * result: the time no later request of the ring could be marked, which a guest write may wait. The CPU figure is
 * the part of it the thread ran: unlike wall-clock time and a guest's write latency it hardly depends on what
 * else the machine runs (preemption, GC pauses), so it is the measure of the work a command does on the ring.
 */
final class ControlTimes
{
    private final Map<String, long[]> byKind = new LinkedHashMap<>();
    private long windowNanos;
    private long windowCpuNanos;
    private String windowKind = "";

    /**
     * Records one control request of {@code kind} that held the mark thread for {@code nanos} of wall-clock time, of
     * which it ran on a CPU for {@code cpuNanos} (-1 when the JVM cannot tell).
     */
    synchronized void record(final String kind, final long nanos, final long cpuNanos)
    {
        final long[] entry = byKind.computeIfAbsent(kind, k -> new long[5]);
        entry[0]++;
        entry[1] += nanos;
        entry[2] = Math.max(entry[2], nanos);
        entry[3] += cpuNanos;
        entry[4] = Math.max(entry[4], cpuNanos);
        if (nanos > windowNanos)
        {
            windowNanos = nanos;
            windowCpuNanos = cpuNanos;
            windowKind = kind;
        }
    }

    /**
     * Ends the current window and starts the next.
     *
     * @param longestBatchNanos the ring's longest batch in the window, taken by the caller.
     * @param longestBatchRequests how many requests it held.
     * @return the window's longest control request, with the batch figures.
     */
    synchronized RingStatistics.HoldWindow takeWindow(final long longestBatchNanos, final long longestBatchRequests)
    {
        final RingStatistics.HoldWindow window = new RingStatistics.HoldWindow(longestBatchNanos, longestBatchRequests,
            windowNanos, windowCpuNanos, windowKind);
        windowNanos = 0;
        windowCpuNanos = 0;
        windowKind = "";
        return window;
    }

    /** @return a copy: kind to its count, total and maximum nanoseconds, in order of first use. */
    synchronized Map<String, RingStatistics.ControlTime> snapshot()
    {
        final Map<String, RingStatistics.ControlTime> out = new LinkedHashMap<>();
        for (final Map.Entry<String, long[]> entry : byKind.entrySet())
        {
            final long[] v = entry.getValue();
            out.put(entry.getKey(), new RingStatistics.ControlTime(v[0], v[1], v[2], v[3], v[4]));
        }
        return out;
    }
}
