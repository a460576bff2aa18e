package dev.tidemark.io.qmp;

/**
 * Receives what a {@link QmpFrameSplitter} finds, on the thread that feeds the splitter.
 */
public interface QmpFrameSink
{
    /**
     * A complete top-level value (or a stray token) as raw bytes, still to be parsed.
     *
     * @param frame the bytes of the value; the sink owns the array.
     */
    void onFrame(byte[] frame);

    /**
     * The message in progress broke a limit; the splitter discards the rest of that message (tracking
     * its strings and nesting without storing it) and resumes with whatever follows it.
     *
     * @param error which limit, with a message suitable for a QMP {@code desc}.
     */
    void onOverLimit(QmpFrameSplitter.LimitError error);
}
