package dev.tidemark.io.qmp;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

class QmpFrameSplitterTest
{
    /** Records frames as strings and limit errors as "LIMIT:kind". */
    private static final class Recorder implements QmpFrameSink
    {
        final List<String> items = new ArrayList<>();

        @Override
        public void onFrame(final byte[] frame)
        {
            items.add(new String(frame, StandardCharsets.UTF_8));
        }

        @Override
        public void onOverLimit(final QmpFrameSplitter.LimitError error)
        {
            items.add("LIMIT:" + error.kind());
        }
    }

    private static List<String> split(final QmpFrameSplitter splitter, final String input)
    {
        final Recorder recorder = new Recorder();
        final byte[] bytes = input.getBytes(StandardCharsets.UTF_8);
        splitter.feed(bytes, 0, bytes.length, recorder);
        return recorder.items;
    }

    @Test
    void severalObjectsInOnePacketWithoutNewlines()
    {
        assertThat(split(new QmpFrameSplitter(), "{\"a\":1}{\"b\":[1,{\"c\":2}]}  \r\n{}"))
            .containsExactly("{\"a\":1}", "{\"b\":[1,{\"c\":2}]}", "{}");
    }

    @Test
    void bracesQuotesAndEscapesInsideStringsDoNotCount()
    {
        final String tricky = "{\"x\":\"}{][\\\"\\\\\",\"y\":'it\\'s \"}\"'}";
        assertThat(split(new QmpFrameSplitter(), tricky + tricky)).containsExactly(tricky, tricky);
    }

    @Test
    void objectSplitAtEveryByteBoundaryIsReassembled()
    {
        final String message = "{\"execute\":\"x\",\"id\":\"\u00e9\u20ac\uD83D\uDE00 }\\\"\",\"arguments\":{\"a\":[1,2]}}";
        final byte[] bytes = message.getBytes(StandardCharsets.UTF_8);
        for (int cut = 0; cut <= bytes.length; cut++)
        {
            final QmpFrameSplitter splitter = new QmpFrameSplitter();
            final Recorder recorder = new Recorder();
            splitter.feed(bytes, 0, cut, recorder);
            assertThat(recorder.items).as("after %d bytes", cut).hasSize(cut == bytes.length ? 1 : 0);
            splitter.feed(ByteBuffer.wrap(bytes, cut, bytes.length - cut), recorder);
            assertThat(recorder.items).as("cut at %d", cut).containsExactly(message);
        }
    }

    @Test
    void topLevelScalarsStraysAndStringsAreFramesForTheParserToJudge()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter();
        assertThat(split(splitter, "42 true\"s{\"]}abc{} x")).containsExactly("42", "true", "\"s{\"", "]", "}", "abc", "{}");
        // The last bare token completes only at a delimiter or at end of stream.
        final Recorder recorder = new Recorder();
        assertThat(splitter.endOfStream(recorder)).isFalse();
        assertThat(recorder.items).containsExactly("x");
    }

    @Test
    void rawControlCharacterEndsTheFrameAndSplittingRestarts()
    {
        assertThat(split(new QmpFrameSplitter(), "{\"id\":\"a\n{\"execute\":\"y\"}"))
            .containsExactly("{\"id\":\"a\n", "{\"execute\":\"y\"}");
    }

    @Test
    void oversizedMessageIsReportedOnceDiscardedAndFollowedByNormalFrames()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter(64, 8);
        final String big = "{\"execute\":\"x\",\"arguments\":{\"s\":\"" + "}".repeat(500) + "\"}}";
        assertThat(split(splitter, big + "{\"ok\":1}" + big + "[1]"))
            .containsExactly("LIMIT:SIZE", "{\"ok\":1}", "LIMIT:SIZE", "[1]");
        assertThat(splitter.hasPartialFrame()).isFalse();
    }

    @Test
    void oversizedMessageSplitAcrossManyReadsKeepsMemoryBounded()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter(1024, 8);
        final Recorder recorder = new Recorder();
        final byte[] open = "{\"a\":\"".getBytes(StandardCharsets.US_ASCII);
        splitter.feed(open, 0, open.length, recorder);
        final byte[] chunk = new byte[4096];
        java.util.Arrays.fill(chunk, (byte) 'x');
        for (int i = 0; i < 1000; i++)
        {
            splitter.feed(chunk, 0, chunk.length, recorder);
        }
        final byte[] close = "\"}{}".getBytes(StandardCharsets.US_ASCII);
        splitter.feed(close, 0, close.length, recorder);
        assertThat(recorder.items).containsExactly("LIMIT:SIZE", "{}");
    }

    @Test
    void nestingBeyondTheLimitIsReportedAndDiscarded()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter(1 << 16, 4);
        assertThat(split(splitter, "[[[[1]]]][[[[[2]]]]]{\"n\":5}"))
            .containsExactly("[[[[1]]]]", "LIMIT:DEPTH", "{\"n\":5}");
    }

    @Test
    void endOfStreamDropsAnUnfinishedObject()
    {
        final QmpFrameSplitter splitter = new QmpFrameSplitter();
        assertThat(split(splitter, "{\"a\":")).isEmpty();
        assertThat(splitter.hasPartialFrame()).isTrue();
        final Recorder recorder = new Recorder();
        assertThat(splitter.endOfStream(recorder)).isTrue();
        assertThat(recorder.items).isEmpty();
        assertThat(splitter.hasPartialFrame()).isFalse();
    }

    @Test
    void rejectsBadLimitsAndRanges()
    {
        assertThatThrownBy(() -> new QmpFrameSplitter(1, 4)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("maxFrameBytes");
        assertThatThrownBy(() -> new QmpFrameSplitter(16, 0)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("maxDepth");
        assertThatThrownBy(() -> new QmpFrameSplitter().feed(new byte[4], 2, 3, new Recorder()))
            .isInstanceOf(IndexOutOfBoundsException.class);
    }

    @Test
    void randomDocumentsInRandomChunksComeBackExactly()
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        for (int round = 0; round < 200; round++)
        {
            final List<String> documents = new ArrayList<>();
            final StringBuilder stream = new StringBuilder();
            final int count = 1 + random.nextInt(20);
            for (int i = 0; i < count; i++)
            {
                final String document = randomObject(random, 0);
                documents.add(document);
                stream.append(document).append(" \r\n\t".substring(0, random.nextInt(5)));
            }
            final byte[] bytes = stream.toString().getBytes(StandardCharsets.UTF_8);
            final QmpFrameSplitter splitter = new QmpFrameSplitter();
            final Recorder recorder = new Recorder();
            int position = 0;
            while (position < bytes.length)
            {
                final int chunk = Math.min(bytes.length - position, 1 + random.nextInt(64));
                splitter.feed(bytes, position, chunk, recorder);
                position += chunk;
            }
            assertThat(recorder.items).as("seed %d round %d", seed, round).isEqualTo(documents);
        }
    }

    private static String randomObject(final SplittableRandom random, final int depth)
    {
        final StringBuilder out = new StringBuilder("{");
        final int members = random.nextInt(4);
        for (int i = 0; i < members; i++)
        {
            if (i > 0)
            {
                out.append(',');
            }
            out.append(randomString(random)).append(':').append(randomValue(random, depth + 1));
        }
        return out.append('}').toString();
    }

    private static String randomValue(final SplittableRandom random, final int depth)
    {
        final int kind = random.nextInt(depth > 5 ? 3 : 5);
        switch (kind)
        {
            case 0:
                return Long.toString(random.nextLong());
            case 1:
                return randomString(random);
            case 2:
                return random.nextBoolean() ? "true" : "null";
            case 3:
                return randomObject(random, depth);
            default:
                final StringBuilder array = new StringBuilder("[");
                final int n = random.nextInt(4);
                for (int i = 0; i < n; i++)
                {
                    array.append(i > 0 ? "," : "").append(randomValue(random, depth + 1));
                }
                return array.append(']').toString();
        }
    }

    private static String randomString(final SplittableRandom random)
    {
        final String[] pieces = {"a", "{", "}", "[", "]", "\\\"", "\\\\", "'", "\u00e9", "\u20ac", "\uD83D\uDE00", ",", ":", " "};
        final boolean single = random.nextInt(4) == 0;
        final StringBuilder out = new StringBuilder(single ? "'" : "\"");
        final int n = random.nextInt(8);
        for (int i = 0; i < n; i++)
        {
            final String piece = pieces[random.nextInt(pieces.length)];
            out.append(single && piece.equals("'") ? "\\'" : piece);
        }
        return out.append(single ? '\'' : '"').toString();
    }
}
