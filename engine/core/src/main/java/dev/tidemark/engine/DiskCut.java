package dev.tidemark.engine;

import dev.tidemark.engine.ring.RingCut;
import java.util.concurrent.CompletableFuture;

/**
 * The {@link CutContext} a transaction's actions see: the ring's cut with the disk around it; valid only on the
 * mark thread and only while the transaction runs.
 */
final class DiskCut implements CutContext
{
    private final TrackedDisk disk;
    private final RingCut cut;

    DiskCut(final TrackedDisk disk, final RingCut cut)
    {
        this.disk = disk;
        this.cut = cut;
    }

    @Override
    public long cutSequence()
    {
        return cut.cutSequence();
    }

    @Override
    public long epoch()
    {
        return cut.epoch();
    }

    @Override
    public TrackedDisk disk()
    {
        return disk;
    }

    @Override
    public void addInterceptor(final WriteInterceptor interceptor)
    {
        cut.addInterceptor(interceptor);
    }

    @Override
    public void removeInterceptor(final WriteInterceptor interceptor)
    {
        cut.removeInterceptor(interceptor);
    }

    @Override
    public CompletableFuture<Void> writesBeforeCutDone()
    {
        return cut.writesBeforeCutDone();
    }

    @Override
    public void afterCommit(final Runnable task)
    {
        cut.afterCommit(task);
    }
}
