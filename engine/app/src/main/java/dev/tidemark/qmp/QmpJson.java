package dev.tidemark.qmp;

import java.io.IOException;
import java.io.UncheckedIOException;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.core.json.JsonReadFeature;
import com.fasterxml.jackson.core.util.MinimalPrettyPrinter;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.io.qmp.QmpFrameEncoder;
import dev.tidemark.io.qmp.QmpFrameSplitter;

/**
 * Jackson set up for QMP; stateless and safe for concurrent use by any number of threads.
 *
 * <p>Input: single-quoted strings are accepted as QEMU accepts them, duplicate keys are an error
 * (as in QEMU), one value per frame. Output: single line with QEMU's {@code ": "} and {@code ", "}
 * separators, then {@link QmpFrameEncoder} makes it ASCII and appends CRLF.
 */
public final class QmpJson
{
    /** The mapper every QMP component uses. */
    public static final ObjectMapper MAPPER = JsonMapper.builder(JsonFactory.builder()
            .enable(JsonReadFeature.ALLOW_SINGLE_QUOTES)
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            // The splitter enforces nesting and size with its own messages; Jackson must not cut in first.
            .streamReadConstraints(StreamReadConstraints.builder()
                .maxNestingDepth(QmpFrameSplitter.DEFAULT_MAX_DEPTH * 2)
                .maxStringLength(Integer.MAX_VALUE / 2)
                .build())
            .build())
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .build();

    private static final ObjectWriter WIRE_WRITER = MAPPER.writer(new QemuSpacing());

    private QmpJson()
    {
    }

    /** @return a new empty object node. */
    public static ObjectNode object()
    {
        return MAPPER.createObjectNode();
    }

    /**
     * Parses one frame.
     *
     * @param frame raw bytes of one value.
     * @return the value.
     * @throws QmpError GenericError {@code JSON parse error, ...} when the bytes are not one JSON value.
     */
    public static JsonNode parse(final byte[] frame) throws QmpError
    {
        try
        {
            return MAPPER.readTree(frame);
        }
        catch (final JsonProcessingException ex)
        {
            final String message = ex.getOriginalMessage() == null ? "invalid JSON" : ex.getOriginalMessage();
            final int newline = message.indexOf('\n');
            throw QmpError.generic("JSON parse error, " + (newline < 0 ? message : message.substring(0, newline)));
        }
        catch (final IOException ex)
        {
            throw QmpError.generic("JSON parse error, " + ex.getMessage());
        }
    }

    /**
     * @param message a complete QMP message.
     * @return its wire bytes: one ASCII line ending in CRLF.
     */
    public static byte[] encode(final JsonNode message)
    {
        try
        {
            return QmpFrameEncoder.encode(WIRE_WRITER.writeValueAsString(message));
        }
        catch (final JsonProcessingException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /**
     * @param value a JSON value.
     * @return it as compact JSON text (Unicode kept), for humans and logs.
     */
    public static String compact(final JsonNode value)
    {
        try
        {
            return MAPPER.writeValueAsString(value);
        }
        catch (final JsonProcessingException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** QEMU's single-line layout: {@code {"a": 1, "b": [1, 2]}}; stateless. */
    private static final class QemuSpacing extends MinimalPrettyPrinter
    {
        private static final long serialVersionUID = 1L;

        @Override
        public void writeObjectFieldValueSeparator(final JsonGenerator g) throws IOException
        {
            g.writeRaw(": ");
        }

        @Override
        public void writeObjectEntrySeparator(final JsonGenerator g) throws IOException
        {
            g.writeRaw(", ");
        }

        @Override
        public void writeArrayValueSeparator(final JsonGenerator g) throws IOException
        {
            g.writeRaw(", ");
        }
    }
}
