package dev.tidemark.engine.torture;

import java.util.SplittableRandom;

/** The bytes of a torture write, a pure function of its seed; stateless and thread-safe. */
public final class TortureData
{
    private TortureData()
    {
    }

    /**
     * @param seed the write's data seed.
     * @param length bytes.
     * @return {@code length} pseudo-random bytes determined by {@code seed}.
     */
    public static byte[] bytes(final long seed, final int length)
    {
        final byte[] data = new byte[length];
        new SplittableRandom(seed).nextBytes(data);
        return data;
    }
}
