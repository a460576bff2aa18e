package dev.tidemark.engine;

import dev.tidemark.bitmap.DirtyBitmap;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Real mapped bitmap files that wrap every bitmap they make in a {@link SpyBitmap}; as thread-safe as the registry
 * needs (made on the submitting or mark thread, read by the test).
 */
final class SpyFiles extends ObservedBitmapFiles
{
    final List<SpyBitmap> made = new CopyOnWriteArrayList<>();

    @Override
    DirtyBitmap made(final DirtyBitmap created)
    {
        final SpyBitmap spy = new SpyBitmap(created);
        made.add(spy);
        return spy;
    }

    @Override
    DirtyBitmap unwrap(final DirtyBitmap bitmap)
    {
        return bitmap instanceof SpyBitmap spy ? spy.inner : bitmap;
    }
}
