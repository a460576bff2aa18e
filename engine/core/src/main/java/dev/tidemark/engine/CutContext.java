package dev.tidemark.engine;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapRegistry;
import java.util.concurrent.CompletableFuture;

/**
 * A transaction's place in the write order; valid only on the mark thread and only while the transaction's
 * actions run.
 *
 * <p>The engine builds it around the ring's own cut ({@code dev.tidemark.engine.ring.RingCut}) and adds the disk,
 * its registry and its journal, which the ring does not know.
 */
public interface CutContext
{
    /** @return the ring sequence of the transaction: writes with a smaller sequence are before the cut. */
    long cutSequence();

    /**
     * @return the epoch this cut closes: every write sequenced before the cut and after the previous committed cut is
     *         in it (see {@code WriteRing}); equal to the epoch a {@link WriteLog} opened in exactly when no
     *         other cut committed in between.
     */
    long epoch();

    /** @return the disk. */
    TrackedDisk disk();

    /** @return the disk's bitmap registry (mark-thread access). */
    default BitmapRegistry registry()
    {
        return disk().bitmaps();
    }

    /** @return the disk's metadata journal; records appended now belong to this transaction. */
    default Journal journal()
    {
        return disk().journal();
    }

    /**
     * Makes {@code interceptor} see every data-changing request with a sequence greater than the cut. Undone
     * automatically if the transaction aborts.
     *
     * @param interceptor the interceptor.
     */
    void addInterceptor(WriteInterceptor interceptor);

    /**
     * Stops {@code interceptor} from seeing requests with a sequence greater than the cut.
     *
     * @param interceptor the interceptor.
     */
    void removeInterceptor(WriteInterceptor interceptor);

    /**
     * @return a future completed once every request sequenced before the cut has reached the store (fused: on the
     *         ring thread, before the cut's actions run; staged: on the write thread); never wait for it on the mark
     *         thread, which under the staged pipeline would wait for itself.
     */
    CompletableFuture<Void> writesBeforeCutDone();

    /**
     * Runs {@code task} after the transaction committed (for example to start a job thread), on the thread that
     * asked for the transaction, before its {@code TrackedDisk.transaction} call returns; never on the mark thread,
     * where waking a thread could let it take the ring's CPU. Dropped when the transaction aborts. Guest writes after
     * the cut may be marked (and pass the transaction's interceptors) before it runs.
     *
     * @param task the task; must not block.
     */
    void afterCommit(Runnable task);
}
