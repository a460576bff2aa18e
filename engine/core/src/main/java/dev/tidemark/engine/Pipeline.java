package dev.tidemark.engine;

/**
 * How a disk's write ring spreads its handlers over threads; an immutable enum (see
 * {@link dev.tidemark.engine.ring.WriteRing} and docs/architecture.md).
 */
public enum Pipeline
{
    /**
     * One ring thread ({@code tidemark-<disk>-ring}) marks, persists, runs copy-before-write, writes and completes
     * every request: no hand-off between threads after the producer's publish.
     */
    FUSED,
    /**
     * Three ring threads in a chain ({@code -mark}, {@code -cbw}, {@code -write}): a slow copy-before-write or store
     * call does not hold up marking, at the price of two hand-offs per request.
     */
    STAGED
}
