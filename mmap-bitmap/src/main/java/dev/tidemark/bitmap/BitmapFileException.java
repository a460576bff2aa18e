package dev.tidemark.bitmap;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A bitmap file was refused: immutable, safe to pass between threads.
 *
 * <p>The message names the file and, where it applies, the header field and its byte offset. A
 * failed open leaves the file byte for byte as it was.
 */
public final class BitmapFileException extends IOException
{
    private static final long serialVersionUID = 1L;

    private final BitmapError error;
    private final transient Path file;

    /**
     * @param error the code.
     * @param file the file that was refused.
     * @param detail what is wrong and where.
     */
    public BitmapFileException(final BitmapError error, final Path file, final String detail)
    {
        super(file + ": " + detail + " [" + error + "]");
        this.error = error;
        this.file = file;
    }

    /** @return the code of the problem. */
    public BitmapError error()
    {
        return error;
    }

    /** @return the file that was refused. */
    public Path file()
    {
        return file;
    }
}
