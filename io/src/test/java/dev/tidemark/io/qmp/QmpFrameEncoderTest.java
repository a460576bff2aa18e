package dev.tidemark.io.qmp;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;

import org.junit.jupiter.api.Test;

class QmpFrameEncoderTest
{
    @Test
    void asciiPassesThroughAndCrlfIsAppended()
    {
        assertThat(new String(QmpFrameEncoder.encode("{\"return\": {}}"), StandardCharsets.US_ASCII))
            .isEqualTo("{\"return\": {}}\r\n");
    }

    @Test
    void nonAsciiIsEscapedWithUpperCaseHexAndSurrogatePairs()
    {
        final byte[] out = QmpFrameEncoder.encode("{\"id\": \"\u00e9\u20ac\uD83D\uDE00\"}");
        for (final byte b : out)
        {
            assertThat(b & 0xFF).isLessThan(0x80);
        }
        assertThat(new String(out, StandardCharsets.US_ASCII))
            .isEqualTo("{\"id\": \"\\u00E9\\u20AC\\uD83D\\uDE00\"}\r\n");
    }

    @Test
    void rawLineBreakIsRefused()
    {
        assertThatThrownBy(() -> QmpFrameEncoder.encode("{\n}")).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("index 1");
    }
}
