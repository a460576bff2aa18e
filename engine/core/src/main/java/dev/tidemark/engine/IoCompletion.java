package dev.tidemark.engine;

/**
 * Receives the outcome of a request submitted to the write ring; called once, on the ring thread that writes (the
 * only ring thread when fused, which then also marks), so it must return quickly and must not wait for the ring.
 */
@FunctionalInterface
public interface IoCompletion
{
    /**
     * @param sequence the request's place in the ring: writes with a smaller sequence were sequenced before it.
     * @param error {@code null} on success, else why the request failed (an {@link java.io.IOException} for I/O).
     */
    void complete(long sequence, Throwable error);
}
