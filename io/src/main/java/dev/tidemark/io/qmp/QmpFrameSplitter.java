package dev.tidemark.io.qmp;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Streaming splitter of a QMP input byte stream into top-level JSON values; not thread-safe: confine
 * each instance to the one thread that reads its connection.
 *
 * <p>It never parses: it tracks only nesting depth, string boundaries and escapes, so every byte is
 * looked at once and a value split across any number of reads is reassembled. Input is treated as
 * bytes: UTF-8 continuation bytes are all {@code >= 0x80} and can never be mistaken for a quote, a
 * brace or a backslash, so multi-byte characters need no special handling here (the parser reports
 * invalid UTF-8).
 *
 * <p>Rules, chosen to match QEMU's JSON streamer where it matters to clients:
 * <ul>
 *   <li>A value starting with {@code {} or {@code [} ends at its matching close; braces and brackets
 *       inside strings do not count. Mismatched kinds ({@code {]}) are left for the parser to reject.</li>
 *   <li>Strings may be double-quoted or, as QEMU's lexer allows, single-quoted; inside a string a
 *       backslash escapes the next byte and the other quote character is an ordinary byte.</li>
 *   <li>A top-level string ends at its closing quote; a top-level bare token (number, {@code true},
 *       garbage) ends at the next whitespace or structural byte, which is then read as new input; a
 *       stray {@code } ] , :} at top level is a one-byte frame. All of these reach the parser, which
 *       rejects them the way QEMU does ("must be a JSON object" or a parse error).</li>
 *   <li>A raw control byte ({@code < 0x20}) inside a string is invalid JSON: the frame ends there
 *       (so the parser reports it) and splitting restarts with the next byte. This keeps an unclosed
 *       quote typed interactively from swallowing the rest of the session.</li>
 *   <li>Limits: a message longer than {@code maxFrameBytes} or nested deeper than {@code maxDepth}
 *       is reported once through {@link QmpFrameSink#onOverLimit} and then discarded up to its end
 *       without being stored (memory stays bounded), after which splitting resumes normally. This is
 *       the resynchronisation policy; the connection is never dropped for it.</li>
 * </ul>
 */
public final class QmpFrameSplitter
{
    /** Default limit on one message, in bytes. */
    public static final int DEFAULT_MAX_FRAME_BYTES = 1 << 20;
    /** Default nesting limit, as QEMU's JSON streamer. */
    public static final int DEFAULT_MAX_DEPTH = 1024;

    /** Which limit a message broke. */
    public enum LimitKind
    {
        /** More bytes than allowed. */
        SIZE,
        /** Nested deeper than allowed. */
        DEPTH
    }

    /**
     * A broken limit, reported once per offending message.
     *
     * @param kind    which limit.
     * @param limit   the limit's value (bytes or levels).
     * @param message a description for a QMP error {@code desc}.
     */
    public record LimitError(LimitKind kind, long limit, String message)
    {
    }

    private final int maxFrameBytes;
    private final int maxDepth;

    private byte[] buffer = new byte[256];
    private int length;
    /** Inside a frame (container, string or bare token at top level). */
    private boolean inFrame;
    private boolean bareToken;
    private int depth;
    private byte quote;
    private boolean escape;
    private boolean discarding;

    /** A splitter with the default limits. */
    public QmpFrameSplitter()
    {
        this(DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_DEPTH);
    }

    /**
     * @param maxFrameBytes largest message accepted, in bytes (at least 2).
     * @param maxDepth      deepest nesting accepted (at least 1).
     */
    public QmpFrameSplitter(final int maxFrameBytes, final int maxDepth)
    {
        if (maxFrameBytes < 2)
        {
            throw new IllegalArgumentException("maxFrameBytes must be at least 2, got " + maxFrameBytes);
        }
        if (maxDepth < 1)
        {
            throw new IllegalArgumentException("maxDepth must be at least 1, got " + maxDepth);
        }
        this.maxFrameBytes = maxFrameBytes;
        this.maxDepth = maxDepth;
    }

    /** @return the message size limit in bytes. */
    public int maxFrameBytes()
    {
        return maxFrameBytes;
    }

    /** @return whether a message has started and not yet ended (including one being discarded). */
    public boolean hasPartialFrame()
    {
        return inFrame;
    }

    /**
     * Feeds bytes; frames are delivered to {@code sink} as they complete, in order.
     *
     * @param data   the bytes.
     * @param offset first byte.
     * @param count  number of bytes.
     * @param sink   receiver of frames and limit errors.
     */
    public void feed(final byte[] data, final int offset, final int count, final QmpFrameSink sink)
    {
        if (offset < 0 || count < 0 || offset > data.length - count)
        {
            throw new IndexOutOfBoundsException("offset " + offset + ", count " + count + ", array " + data.length);
        }
        final int end = offset + count;
        for (int i = offset; i < end; i++)
        {
            accept(data[i], sink);
        }
    }

    /**
     * Feeds the remaining bytes of {@code data}, advancing its position.
     *
     * @param data the bytes.
     * @param sink receiver of frames and limit errors.
     */
    public void feed(final ByteBuffer data, final QmpFrameSink sink)
    {
        while (data.hasRemaining())
        {
            accept(data.get(), sink);
        }
    }

    /**
     * Ends the stream: a pending top-level bare token is complete at end of input and is delivered;
     * an unfinished container or string is dropped (there is nobody left to answer).
     *
     * @param sink receiver of a final bare token.
     * @return whether an unfinished message was dropped.
     */
    public boolean endOfStream(final QmpFrameSink sink)
    {
        if (inFrame && bareToken && !discarding)
        {
            emit(sink);
            return false;
        }
        final boolean dropped = inFrame;
        reset();
        return dropped;
    }

    private void accept(final byte b, final QmpFrameSink sink)
    {
        if (!inFrame)
        {
            startFrame(b, sink);
            return;
        }
        if (bareToken)
        {
            if (isWhitespace(b) || isStructural(b))
            {
                finishBareToken(sink);
                startFrame(b, sink);
            }
            else
            {
                store(b, sink);
            }
            return;
        }
        if (quote != 0)
        {
            inString(b, sink);
            return;
        }
        // Inside a container, outside strings.
        switch (b)
        {
            case '"', '\'' ->
            {
                quote = b;
                store(b, sink);
            }
            case '{', '[' ->
            {
                depth++;
                if (depth > maxDepth && !discarding)
                {
                    overLimit(sink, new LimitError(LimitKind.DEPTH, maxDepth,
                        "JSON nesting depth limit exceeded (limit " + maxDepth
                            + " levels); the rest of the message is discarded"));
                }
                store(b, sink);
            }
            case '}', ']' ->
            {
                depth--;
                store(b, sink);
                if (depth == 0)
                {
                    complete(sink);
                }
            }
            default -> store(b, sink);
        }
    }

    private void inString(final byte b, final QmpFrameSink sink)
    {
        if (escape)
        {
            escape = false;
            store(b, sink);
        }
        else if (b == '\\')
        {
            escape = true;
            store(b, sink);
        }
        else if (b == quote)
        {
            quote = 0;
            store(b, sink);
            if (depth == 0)
            {
                complete(sink);
            }
        }
        else if (b >= 0 && b < 0x20)
        {
            // Invalid in JSON: end the frame here so the parser reports it, then start afresh.
            store(b, sink);
            complete(sink);
        }
        else
        {
            store(b, sink);
        }
    }

    private void startFrame(final byte b, final QmpFrameSink sink)
    {
        if (isWhitespace(b))
        {
            return;
        }
        inFrame = true;
        length = 0;
        discarding = false;
        depth = 0;
        quote = 0;
        escape = false;
        bareToken = false;
        switch (b)
        {
            case '{', '[' ->
            {
                depth = 1;
                store(b, sink);
            }
            case '"', '\'' ->
            {
                quote = b;
                store(b, sink);
            }
            case '}', ']', ',', ':' ->
            {
                store(b, sink);
                complete(sink);
            }
            default ->
            {
                bareToken = true;
                store(b, sink);
            }
        }
    }

    private void finishBareToken(final QmpFrameSink sink)
    {
        complete(sink);
    }

    private void store(final byte b, final QmpFrameSink sink)
    {
        if (discarding)
        {
            return;
        }
        if (length == maxFrameBytes)
        {
            overLimit(sink, new LimitError(LimitKind.SIZE, maxFrameBytes,
                "Message too large (limit " + maxFrameBytes + " bytes); the rest of the message is discarded"));
            return;
        }
        if (length == buffer.length)
        {
            buffer = Arrays.copyOf(buffer, (int) Math.min((long) buffer.length * 2, maxFrameBytes));
        }
        buffer[length++] = b;
    }

    private void overLimit(final QmpFrameSink sink, final LimitError error)
    {
        discarding = true;
        length = 0;
        if (buffer.length > 4096)
        {
            buffer = new byte[256];
        }
        sink.onOverLimit(error);
    }

    private void complete(final QmpFrameSink sink)
    {
        if (discarding)
        {
            reset();
            return;
        }
        emit(sink);
    }

    private void emit(final QmpFrameSink sink)
    {
        final byte[] frame = Arrays.copyOf(buffer, length);
        reset();
        sink.onFrame(frame);
    }

    private void reset()
    {
        inFrame = false;
        bareToken = false;
        discarding = false;
        depth = 0;
        quote = 0;
        escape = false;
        length = 0;
        if (buffer.length > 65536)
        {
            buffer = new byte[256];
        }
    }

    private static boolean isWhitespace(final byte b)
    {
        return b == ' ' || b == '\t' || b == '\n' || b == '\r';
    }

    private static boolean isStructural(final byte b)
    {
        return b == '{' || b == '}' || b == '[' || b == ']' || b == ',' || b == ':' || b == '"' || b == '\'';
    }
}
