package dev.tidemark.io.testing;

import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.nio.ByteBuffer;

/** Reading whole stores in tests; stateless, safe from any thread the store allows. */
public final class Stores
{
    private Stores()
    {
    }

    /**
     * @param store a store of at most 2 GiB.
     * @return every byte of it, read through a direct buffer (as the engine reads).
     * @throws IOException if the store fails.
     */
    public static byte[] readAll(final BlockStore store) throws IOException
    {
        final ByteBuffer buffer = ByteBuffer.allocateDirect((int)store.size());
        store.read(0, buffer);
        buffer.flip();
        final byte[] bytes = new byte[buffer.remaining()];
        buffer.get(bytes);
        return bytes;
    }
}
