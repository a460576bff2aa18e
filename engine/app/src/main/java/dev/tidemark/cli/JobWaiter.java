package dev.tidemark.cli;

import dev.tidemark.engine.EngineEvents;

import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Waits for jobs to end by listening to their events; safe for concurrent use by any number of threads.
 *
 * <p>A job has ended when its {@code JOB_STATUS_CHANGE} reaches {@code null} (after {@code concluded}, so the
 * bitmap outcome is applied); the result is the {@code BLOCK_JOB_COMPLETED} or {@code BLOCK_JOB_CANCELLED} data
 * seen before, with the event's name under {@code "event"}.
 */
final class JobWaiter implements EngineEvents
{
    private final Map<String, CompletableFuture<Map<String, Object>>> ends = new ConcurrentHashMap<>();
    private final Map<String, Map<String, Object>> outcomes = new ConcurrentHashMap<>();
    private final AtomicLong events = new AtomicLong();

    @Override
    public void onEvent(final String name, final Map<String, Object> data)
    {
        events.incrementAndGet();
        final Object id = "JOB_STATUS_CHANGE".equals(name) ? data.get("id") : data.get("device");
        if (!(id instanceof String job))
        {
            return;
        }
        if ("BLOCK_JOB_COMPLETED".equals(name) || "BLOCK_JOB_CANCELLED".equals(name))
        {
            final Map<String, Object> outcome = new java.util.LinkedHashMap<>(data);
            outcome.put("event", name);
            outcomes.put(job, outcome);
        }
        else if ("JOB_STATUS_CHANGE".equals(name) && "null".equals(data.get("status")))
        {
            future(job).complete(outcomes.getOrDefault(job, Map.of("event", "none")));
        }
    }

    private CompletableFuture<Map<String, Object>> future(final String job)
    {
        return ends.computeIfAbsent(job, k -> new CompletableFuture<>());
    }

    /** @return the number of events seen. */
    long eventCount()
    {
        return events.get();
    }

    /**
     * @param job the job id.
     * @param seconds the longest wait.
     * @return the completion data ({@code "event"}, {@code "len"}, {@code "offset"}, {@code "error"}?).
     */
    Map<String, Object> await(final String job, final long seconds) throws InterruptedException, TimeoutException
    {
        try
        {
            return future(job).get(seconds, TimeUnit.SECONDS);
        }
        catch (final ExecutionException ex)
        {
            throw new IllegalStateException(ex.getCause());
        }
    }
}
