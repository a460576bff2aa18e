package dev.tidemark.engine.ring;

import dev.tidemark.engine.IoCompletion;
import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.WriteInterceptor;
import java.nio.ByteBuffer;

/**
 * One pre-allocated slot of the write ring; written by the publishing thread before publication, then by each
 * handler in turn (one handler when fused; the ring's sequence barriers order those accesses), never by two threads
 * at once.
 */
final class RingEvent
{
    static final WriteInterceptor[] NO_INTERCEPTORS = new WriteInterceptor[0];

    RequestKind kind;
    long offset;
    long length;
    ByteBuffer payload;
    boolean fua;
    boolean mayUnmap;
    IoCompletion completion;
    ControlRequest control;
    WriteInterceptor[] interceptors = NO_INTERCEPTORS;
    /** The epoch the mark step placed a data request in (see {@link WriteRing}); written by the mark thread. */
    long epoch;
    Throwable error;

    void clear()
    {
        payload = null;
        completion = null;
        control = null;
        interceptors = NO_INTERCEPTORS;
        error = null;
    }
}
