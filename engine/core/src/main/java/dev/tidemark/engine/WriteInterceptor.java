package dev.tidemark.engine;

import java.io.IOException;

/**
 * Sees every data-changing guest request after its registration cut, before the data reaches the store; called
 * only on the ring thread that runs copy-before-write (the ring thread when fused, {@code -cbw} when staged), one
 * call at a time, in ring order.
 *
 * <p>Registered and removed through {@link CutContext#addInterceptor} / {@link CutContext#removeInterceptor}, so
 * the set of requests an interceptor sees is exact: those sequenced after the cut of its registration and not
 * after the cut of its removal.
 */
@FunctionalInterface
public interface WriteInterceptor
{
    /**
     * Preserves whatever old data in {@code [offset, offset + length)} the interceptor still needs; returns only
     * when that data is preserved. Throwing fails the guest request with EIO and nothing of it is written.
     *
     * @param offset first byte the request changes.
     * @param length bytes the request changes, greater than zero.
     * @throws IOException when the old data could not be preserved and the request must fail.
     */
    void beforeWrite(long offset, long length) throws IOException;
}
