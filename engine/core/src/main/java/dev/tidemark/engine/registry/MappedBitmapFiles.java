package dev.tidemark.engine.registry;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.MappedBitmap;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Stateless and safe for concurrent use: makes {@link MappedBitmap}s, in direct memory for anonymous bitmaps (the
 * interface's default) and in mapped files with the trust rule on open.
 */
public final class MappedBitmapFiles implements BitmapFiles
{
    /** The shared instance. */
    public static final MappedBitmapFiles INSTANCE = new MappedBitmapFiles();

    private MappedBitmapFiles()
    {
    }

    @Override
    public DirtyBitmap create(final Path file, final String name, final long diskSize, final long granularity)
        throws IOException
    {
        return MappedBitmap.create(file, name, diskSize, granularity);
    }

    @Override
    public DirtyBitmap open(final Path file) throws IOException
    {
        return MappedBitmap.open(file);
    }

    @Override
    public void durable(final DirtyBitmap bitmap, final boolean on)
    {
        if (bitmap instanceof MappedBitmap mapped && mapped.isPersistent())
        {
            mapped.setDurable(on);
        }
        else if (on)
        {
            bitmap.force();
        }
    }
}
