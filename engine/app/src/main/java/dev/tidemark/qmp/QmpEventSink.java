package dev.tidemark.qmp;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Where QMP events go; implementations are safe to call from any thread. {@link QmpServer} is the
 * real one; engine adapters depend on this interface so they can be tested without sockets.
 */
@FunctionalInterface
public interface QmpEventSink
{
    /**
     * Publishes one event.
     *
     * @param name event name, e.g. {@code JOB_STATUS_CHANGE}.
     * @param data event data; null or empty omits the {@code data} member.
     */
    void publishEvent(String name, ObjectNode data);
}
