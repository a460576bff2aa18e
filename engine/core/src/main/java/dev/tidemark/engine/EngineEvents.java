package dev.tidemark.engine;

import java.util.Map;

/**
 * Receives QMP-style events; implementations must be safe to call from any engine thread (ring, job threads)
 * and must return quickly without calling back into the ring synchronously.
 *
 * <p>Names are QEMU's event names ({@code JOB_STATUS_CHANGE}, {@code BLOCK_JOB_COMPLETED}, ...); {@code data}
 * is the event's {@code data} object with QEMU's member names, never {@code null} (empty when there is none). Emitters
 * build a new map per event and never change it afterwards, so a listener may keep it and read it later on another
 * thread (the daemon turns it into JSON on a QMP connection's writer, not on the ring that emitted it).
 */
@FunctionalInterface
public interface EngineEvents
{
    /**
     * @param name the QMP event name.
     * @param data the event's data members, unmodifiable.
     */
    void onEvent(String name, Map<String, Object> data);
}
