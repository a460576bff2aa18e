package dev.tidemark.io.qcow2;

import java.io.IOException;
import java.nio.file.Path;

/**
 * Immutable, so safe to share between threads: a qcow2 image that is malformed, or uses a feature this
 * package does not read (compression, encryption, an external data file, extended L2 entries).
 *
 * <p>The message names the file and the field or offset at fault.
 */
public final class Qcow2FormatException extends IOException
{
    private static final long serialVersionUID = 1L;

    /** @param image the file at fault; @param detail what is wrong and where. */
    public Qcow2FormatException(final Path image, final String detail)
    {
        super(image + ": " + detail);
    }
}
