package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;

/**
 * The operating system's boot id, read once per process; immutable and safe for any number of threads.
 *
 * <p>Linux gives every boot a random UUID in {@code /proc/sys/kernel/random/boot_id}. A bitmap file left
 * in use by a process of the same boot survived in the page cache; one left by an earlier boot may have
 * lost pages that were never written back. Where the file cannot be read the id is the nil UUID, which
 * never matches a stored id, so lazy bitmaps left in use then open inconsistent: the safe side.
 */
final class BootId
{
    static final Path SOURCE = Path.of("/proc/sys/kernel/random/boot_id");
    static final UUID UNKNOWN = new UUID(0, 0);

    private static final UUID CURRENT = read(SOURCE);

    private BootId()
    {
    }

    /** @return this boot's id, or {@link #UNKNOWN}. */
    static UUID current()
    {
        return CURRENT;
    }

    static UUID read(final Path source)
    {
        try
        {
            return UUID.fromString(new String(Files.readAllBytes(source), StandardCharsets.US_ASCII).trim());
        }
        catch (final IOException | IllegalArgumentException ex)
        {
            return UNKNOWN;
        }
    }
}
