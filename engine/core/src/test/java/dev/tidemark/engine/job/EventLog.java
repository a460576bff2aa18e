package dev.tidemark.engine.job;

import dev.tidemark.engine.EngineEvents;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;

/** Records engine events for assertions; safe for concurrent use (every method synchronizes). */
final class EventLog implements EngineEvents
{
    /** One event. */
    record Event(String name, Map<String, Object> data)
    {
        String brief()
        {
            if ("JOB_STATUS_CHANGE".equals(name))
            {
                return data.get("id") + ":" + data.get("status");
            }
            final Object id = data.containsKey("id") ? data.get("id") : data.get("device");
            return id + ":" + name;
        }
    }

    private final List<Event> events = new ArrayList<>();

    @Override
    public synchronized void onEvent(final String name, final Map<String, Object> data)
    {
        events.add(new Event(name, data));
        notifyAll();
    }

    synchronized List<Event> all()
    {
        return new ArrayList<>(events);
    }

    /** @return events of one job, in the short form {@code id:status} / {@code id:EVENT}. */
    synchronized List<String> briefFor(final String id)
    {
        final List<String> out = new ArrayList<>();
        for (final Event e : events)
        {
            final Object eid = e.data.containsKey("id") ? e.data.get("id") : e.data.get("device");
            if (id.equals(eid))
            {
                out.add(e.brief());
            }
        }
        return out;
    }

    synchronized Event last(final String id, final String name)
    {
        for (int i = events.size() - 1; i >= 0; i--)
        {
            final Event e = events.get(i);
            final Object eid = e.data.containsKey("id") ? e.data.get("id") : e.data.get("device");
            if (e.name.equals(name) && id.equals(eid))
            {
                return e;
            }
        }
        return null;
    }

    /** Waits (bounded) until {@code condition} holds. */
    static void await(final BooleanSupplier condition, final long millis, final String what)
    {
        final long deadline = System.nanoTime() + millis * 1_000_000L;
        while (!condition.getAsBoolean())
        {
            if (System.nanoTime() - deadline > 0)
            {
                throw new AssertionError("timed out after " + millis + " ms waiting for " + what);
            }
            try
            {
                Thread.sleep(1);
            }
            catch (final InterruptedException e)
            {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted waiting for " + what, e);
            }
        }
    }
}
