package dev.tidemark.io.qmp;

import java.nio.charset.StandardCharsets;

/**
 * The QMP output rule: one JSON text per message, ASCII only, terminated by CRLF; stateless and
 * safe for concurrent use by any number of threads.
 *
 * <p>Non-ASCII characters can appear in valid JSON only inside strings, where a six-character {@code \}{@code uHHHH} escape
 * is an exact equivalent; characters outside the BMP are already two UTF-16 units in a Java string and
 * become two escapes (a surrogate pair), as JSON requires. Hex digits are upper case, as QEMU writes them.
 */
public final class QmpFrameEncoder
{
    private static final byte[] HEX = "0123456789ABCDEF".getBytes(StandardCharsets.US_ASCII);

    private QmpFrameEncoder()
    {
    }

    /**
     * Encodes one message.
     *
     * @param json a complete JSON text without raw line breaks (compact or single-line output).
     * @return the ASCII bytes followed by CR LF.
     * @throws IllegalArgumentException if the text contains a raw CR or LF, which would break framing
     *                                  for line-based clients.
     */
    public static byte[] encode(final CharSequence json)
    {
        int size = 2;
        final int n = json.length();
        for (int i = 0; i < n; i++)
        {
            final char c = json.charAt(i);
            if (c == '\r' || c == '\n')
            {
                throw new IllegalArgumentException("raw line break at index " + i + " of a QMP message");
            }
            size += c < 0x80 ? 1 : 6;
        }
        final byte[] out = new byte[size];
        int p = 0;
        for (int i = 0; i < n; i++)
        {
            final char c = json.charAt(i);
            if (c < 0x80)
            {
                out[p++] = (byte) c;
            }
            else
            {
                out[p++] = '\\';
                out[p++] = 'u';
                out[p++] = HEX[(c >> 12) & 0xF];
                out[p++] = HEX[(c >> 8) & 0xF];
                out[p++] = HEX[(c >> 4) & 0xF];
                out[p++] = HEX[c & 0xF];
            }
        }
        out[p++] = '\r';
        out[p] = '\n';
        return out;
    }
}
