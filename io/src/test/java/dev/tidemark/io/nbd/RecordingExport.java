package dev.tidemark.io.nbd;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Set;

/**
 * Wraps an export, records every successfully written, zeroed or trimmed range into a
 * {@link BitSetBitmap}, completes writes asynchronously from a separate thread (as the engine's ring
 * does), and notes which connection threads called any operation; safe for concurrent use.
 */
final class RecordingExport implements NbdExport
{
    private final NbdExport inner;
    private final BitSetBitmap written;
    private final List<MetaContext> contexts;
    final Set<String> readerThreads = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final java.util.concurrent.Executor completer;

    RecordingExport(final NbdExport inner, final BitSetBitmap written, final String bitmapName,
        final java.util.concurrent.Executor completer)
    {
        this.inner = inner;
        this.written = written;
        this.completer = completer;
        final java.util.ArrayList<MetaContext> all = new java.util.ArrayList<>(inner.metaContexts());
        all.add(new DirtyBitmapContext(bitmapName, written.source()));
        this.contexts = List.copyOf(all);
    }

    @Override
    public String name()
    {
        return inner.name();
    }

    @Override
    public String description()
    {
        return inner.description();
    }

    @Override
    public long size()
    {
        return inner.size();
    }

    @Override
    public boolean isReadOnly()
    {
        return inner.isReadOnly();
    }

    @Override
    public Set<Feature> features()
    {
        return inner.features();
    }

    @Override
    public List<MetaContext> metaContexts()
    {
        return contexts;
    }

    @Override
    public int read(final long offset, final ByteBuffer dst)
    {
        readerThreads.add(Thread.currentThread().getName());
        return inner.read(offset, dst);
    }

    @Override
    public void write(final long offset, final ByteBuffer data, final int flags, final NbdCompletion done)
    {
        readerThreads.add(Thread.currentThread().getName());
        final int length = data.remaining();
        completer.execute(() -> inner.write(offset, data, flags, error ->
        {
            if (error == NbdProtocol.OK)
            {
                written.mark(offset, length);
            }
            done.complete(error);
        }));
    }

    @Override
    public void flush(final NbdCompletion done)
    {
        readerThreads.add(Thread.currentThread().getName());
        completer.execute(() -> inner.flush(done));
    }

    @Override
    public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        readerThreads.add(Thread.currentThread().getName());
        completer.execute(() -> inner.trim(offset, length, flags, error ->
        {
            written.mark(offset, length);
            done.complete(error);
        }));
    }

    @Override
    public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
    {
        readerThreads.add(Thread.currentThread().getName());
        completer.execute(() -> inner.writeZeroes(offset, length, flags, error ->
        {
            if (error == NbdProtocol.OK)
            {
                written.mark(offset, length);
            }
            done.complete(error);
        }));
    }
}
