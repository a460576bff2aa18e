package dev.tidemark.engine;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.engine.registry.BitmapFiles;
import dev.tidemark.engine.registry.MappedBitmapFiles;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Real mapped bitmap files with hooks for tests that watch what the registry makes and switches; as thread-safe as
 * the hooks a subclass writes (the registry calls them on the submitting and the mark thread).
 */
abstract class ObservedBitmapFiles implements BitmapFiles
{
    /** @return what the registry gets for a bitmap just created (the bitmap itself, or a wrapper around it). */
    DirtyBitmap made(final DirtyBitmap created)
    {
        return created;
    }

    /** @return the mapped bitmap behind what {@link #made} returned. */
    DirtyBitmap unwrap(final DirtyBitmap bitmap)
    {
        return bitmap;
    }

    /** Sees a durable-mode switch of one bitmap, before it is applied. */
    void switching(final DirtyBitmap bitmap, final boolean on)
    {
        // nothing to observe by default
    }

    @Override
    public final DirtyBitmap create(final Path file, final String name, final long diskSize, final long granularity)
        throws IOException
    {
        return made(MappedBitmapFiles.INSTANCE.create(file, name, diskSize, granularity));
    }

    @Override
    public final DirtyBitmap open(final Path file) throws IOException
    {
        return MappedBitmapFiles.INSTANCE.open(file);
    }

    @Override
    public final void durable(final DirtyBitmap bitmap, final boolean on)
    {
        switching(bitmap, on);
        MappedBitmapFiles.INSTANCE.durable(unwrap(bitmap), on);
    }
}
