package dev.tidemark.engine.fleece;

import java.nio.file.Path;
import java.util.Objects;

/**
 * How a {@link FleecingView} keeps old data; immutable and safe to share between threads.
 *
 * @param cbwDirectory where the sparse copy-before-write file is created (deleted when the view closes).
 * @param cbwLimitBytes the most old data the view may hold; beyond it {@code onCbwError} applies.
 * @param onCbwError what happens when old data cannot be kept.
 * @param chunkSize bytes copied per chunk, a power of two of at least 512.
 */
public record FleecingOptions(Path cbwDirectory, long cbwLimitBytes, FleecingView.OnCbwError onCbwError,
    long chunkSize)
{
    /**
     * Default chunk: 4 KiB, the guest's usual write. QEMU copies a whole 64 KiB cluster before a 4 KiB write; copying
     * only the chunks a write overwrites (runs of them in one copy) is what keeps fleecing cheap for the guest
     * (docs/benchmarks.md, "Fleecing without the write penalty").
     */
    public static final long DEFAULT_CHUNK = 4 << 10;

    /** Checks the values. */
    public FleecingOptions
    {
        Objects.requireNonNull(cbwDirectory, "cbwDirectory");
        Objects.requireNonNull(onCbwError, "onCbwError");
        if (cbwLimitBytes < 0)
        {
            throw new IllegalArgumentException("cbw limit must not be negative: " + cbwLimitBytes);
        }
        if (chunkSize < 512 || Long.bitCount(chunkSize) != 1)
        {
            throw new IllegalArgumentException("chunk size must be a power of two >= 512: " + chunkSize);
        }
    }

    /**
     * @param cbwDirectory where the CBW file goes.
     * @param cbwLimitBytes the most old data to keep.
     * @return options with {@code break-snapshot} and {@link #DEFAULT_CHUNK} chunks.
     */
    public static FleecingOptions of(final Path cbwDirectory, final long cbwLimitBytes)
    {
        return new FleecingOptions(cbwDirectory, cbwLimitBytes, FleecingView.OnCbwError.BREAK_SNAPSHOT,
            DEFAULT_CHUNK);
    }

    /** @param policy the policy. @return a copy with it. */
    public FleecingOptions withOnCbwError(final FleecingView.OnCbwError policy)
    {
        return new FleecingOptions(cbwDirectory, cbwLimitBytes, policy, chunkSize);
    }
}
