package dev.tidemark.engine;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.ExtentConsumer;
import java.util.BitSet;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Counts forces, makes them slow (so batches form), and tracks which chunks' bits were forced; marked on the
 * mark thread, forced there or by a thread that forces ahead, read by the thread that writes (hence the monitor).
 */
final class SpyBitmap implements DirtyBitmap
{
    final DirtyBitmap inner;
    final AtomicInteger forces = new AtomicInteger();
    volatile boolean failForce;
    volatile long poison = -1;
    /** Runs at the start and at the end of every force, on the forcing thread (a test's watch). */
    volatile Runnable forcing = () -> { };
    private final BitSet pending = new BitSet();
    private final BitSet forced = new BitSet();

    SpyBitmap(final DirtyBitmap inner)
    {
        this.inner = inner;
    }

    synchronized boolean forcedChunk(final int chunk)
    {
        return forced.get(chunk);
    }

    @Override
    public boolean mark(final long offset, final long length)
    {
        if (offset == poison)
        {
            throw new IllegalStateException("bitmap bug");
        }
        final boolean gained = inner.mark(offset, length);
        synchronized (this)
        {
            pending.set((int) (offset / inner.granularity()),
                (int) ((offset + length - 1) / inner.granularity()) + 1);
        }
        return gained;
    }

    @Override
    public int force()
    {
        forces.incrementAndGet();
        forcing.run();
        if (failForce)
        {
            throw new IllegalStateException("injected force failure");
        }
        try
        {
            Thread.sleep(1);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
        }
        final int pages = inner.force();
        synchronized (this)
        {
            forced.or(pending);
            pending.clear();
        }
        forcing.run();
        return pages;
    }

    @Override
    public void clear(final long offset, final long length)
    {
        inner.clear(offset, length);
    }

    @Override
    public void clearAll()
    {
        inner.clearAll();
    }

    @Override
    public void merge(final BitmapView source)
    {
        inner.merge(source);
    }

    @Override
    public boolean isPersistent()
    {
        return inner.isPersistent();
    }

    @Override
    public boolean isInconsistent()
    {
        return inner.isInconsistent();
    }

    @Override
    public BitmapView readOnlyView()
    {
        return inner.readOnlyView();
    }

    @Override
    public void close()
    {
        inner.close();
    }

    @Override
    public String name()
    {
        return inner.name();
    }

    @Override
    public long granularity()
    {
        return inner.granularity();
    }

    @Override
    public long diskSize()
    {
        return inner.diskSize();
    }

    @Override
    public long chunkCount()
    {
        return inner.chunkCount();
    }

    @Override
    public boolean isDirty(final long offset)
    {
        return inner.isDirty(offset);
    }

    @Override
    public long nextDirty(final long offset)
    {
        return inner.nextDirty(offset);
    }

    @Override
    public long nextClean(final long offset)
    {
        return inner.nextClean(offset);
    }

    @Override
    public void forEachDirtyExtent(final long offset, final long length, final ExtentConsumer consumer)
    {
        inner.forEachDirtyExtent(offset, length, consumer);
    }

    @Override
    public long dirtyChunkCount()
    {
        return inner.dirtyChunkCount();
    }

    @Override
    public long dirtyByteCount()
    {
        return inner.dirtyByteCount();
    }

    @Override
    public byte[] sha256()
    {
        return inner.sha256();
    }
}
