package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.function.Consumer;

import org.agrona.concurrent.UnsafeBuffer;

/** Rewrites a closed bitmap file's header in place, for tests; confined to the calling thread. */
final class HeaderPatch
{
    private HeaderPatch()
    {
    }

    static void patch(final Path file, final boolean reseal, final Consumer<UnsafeBuffer> change) throws IOException
    {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE))
        {
            final ByteBuffer bytes = ByteBuffer.allocate(BitmapFileDescriptor.HEADER_LENGTH);
            channel.read(bytes, 0);
            final UnsafeBuffer header = new UnsafeBuffer(bytes);
            change.accept(header);
            if (reseal)
            {
                BitmapFileDescriptor.sealCrc(header);
            }
            bytes.clear();
            channel.write(bytes, 0);
        }
    }

    static void setFlags(final UnsafeBuffer header, final int flags)
    {
        header.putInt(BitmapFileDescriptor.FLAGS_OFFSET, flags, ByteOrder.LITTLE_ENDIAN);
    }
}
