package dev.tidemark.bitmap;

/**
 * Where a persistent bitmap sends its "make these bytes durable" requests; called only from the
 * bitmap's controlling thread.
 *
 * <p>The seam exists so that a power-loss simulator can record which file ranges were changed and
 * forced, and drop the rest; production uses the mapped file's own {@code msync}.
 */
interface PageSink
{
    /**
     * Makes {@code [fileOffset, fileOffset + length)} of the data area durable, or of the summary area while
     * a clean close writes it (before the header that vouches for it is forced).
     *
     * @param fileOffset a page-aligned offset in the file, at or after the data area's start.
     * @param length a whole number of pages.
     */
    void forceData(long fileOffset, long length);

    /** Makes the header page durable. */
    void forceHeader();
}
