package dev.tidemark.bitmap;

/**
 * An argument given to a bitmap was refused (range beyond the disk, bad granularity, bad name, size
 * mismatch): immutable, safe to pass between threads. Nothing in the bitmap changed.
 */
public final class BitmapArgumentException extends IllegalArgumentException
{
    private static final long serialVersionUID = 1L;

    private final BitmapError error;

    /**
     * @param error the code.
     * @param detail what is wrong, with the values involved.
     */
    public BitmapArgumentException(final BitmapError error, final String detail)
    {
        super(detail + " [" + error + "]");
        this.error = error;
    }

    /** @return the code of the problem. */
    public BitmapError error()
    {
        return error;
    }
}
