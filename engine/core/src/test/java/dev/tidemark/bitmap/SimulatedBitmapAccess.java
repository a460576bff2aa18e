package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.file.Path;
import java.util.UUID;

/**
 * Test access to {@link MappedBitmap}'s package-private seams (page sink and boot id) for the power-loss simulation;
 * stateless, and the listener it installs runs on the bitmap's controlling thread.
 */
public final class SimulatedBitmapAccess
{
    /** Hears every range a bitmap forced, right after the force. */
    public interface ForceListener
    {
        /**
         * @param file the bitmap file.
         * @param offset first byte forced.
         * @param length bytes forced.
         */
        void forced(Path file, long offset, long length);
    }

    private SimulatedBitmapAccess()
    {
    }

    /**
     * Makes every epoch map report its forces to {@code listener} and record and compare {@code bootId}; both
     * {@code null} restore production behaviour.
     *
     * @param listener hears every force of every epoch map, or {@code null}.
     * @param bootId the boot id epoch maps see, or {@code null} for this boot's.
     */
    public static void observeEpochMaps(final ForceListener listener, final UUID bootId)
    {
        EpochMap.forceListener = listener == null ? null : listener::forced;
        EpochMap.bootIdOverride = bootId;
    }

    /**
     * @param file the new file.
     * @param name the bitmap's name.
     * @param diskSize bytes of the disk.
     * @param granularity bytes per chunk.
     * @param bootId the boot id the bitmap records.
     * @param listener hears every force.
     * @return the new bitmap.
     * @throws IOException as {@link MappedBitmap#create}.
     */
    public static MappedBitmap create(final Path file, final String name, final long diskSize, final long granularity,
        final UUID bootId, final ForceListener listener) throws IOException
    {
        return MappedBitmap.create(file, name, diskSize, granularity, options(file, bootId, listener));
    }

    /**
     * @param file an existing bitmap file.
     * @param bootId the boot id the trust rule compares with.
     * @param listener hears every force.
     * @return the bitmap.
     * @throws IOException as {@link MappedBitmap#open}.
     */
    public static MappedBitmap open(final Path file, final UUID bootId, final ForceListener listener)
        throws IOException
    {
        return MappedBitmap.open(file, false, options(file, bootId, listener));
    }

    private static MappedBitmap.Options options(final Path file, final UUID bootId, final ForceListener listener)
    {
        return new MappedBitmap.Options().bootId(bootId).sinkDecorator(sink -> new PageSink()
        {
            @Override
            public void forceData(final long fileOffset, final long length)
            {
                sink.forceData(fileOffset, length);
                listener.forced(file, fileOffset, length);
            }

            @Override
            public void forceHeader()
            {
                sink.forceHeader();
                listener.forced(file, 0, BitmapFileDescriptor.HEADER_LENGTH);
            }
        });
    }
}
