package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Runs the example of docs/embedding.md, and checks that the document shows exactly this code. */
@Timeout(30)
class EmbeddingExampleTest
{
    private static final String START = "// example:start";
    private static final String END = "// example:end";

    @TempDir
    Path dir;

    @Test
    void documentedExampleRuns() throws IOException
    {
        final Path image = dir.resolve("vm.raw");
        final List<String> changes = new ArrayList<>();
        final BitmapInfo info;
        final String text;
        // example:start
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(
            RawFileStore.create(image, 64 << 20), DiskOptions.bitmapDirectoryFor(image))))
        {
            // A persistent bitmap (a file beside the image) that records every write from now on.
            disk.transaction(BitmapActions.add("daily", 65536, true, false));

            disk.write(1 << 20, ByteBuffer.wrap("hello".getBytes(StandardCharsets.UTF_8)), false);
            disk.flush();

            // Rotate at one cut: "daily" stops and "daily-2" starts between the same two writes.
            disk.transaction(BitmapActions.add("daily-2", 65536, true, false), BitmapActions.disable("daily"));

            // What changed since "daily" was added: hand these extents to a backup.
            final BitmapView changed = disk.bitmaps().view("daily");
            changed.forEachDirtyExtent(0, disk.size(), (offset, length) -> changes.add(offset + "+" + length));
            info = disk.bitmaps().query("daily");

            final ByteBuffer back = ByteBuffer.allocate(5);
            disk.read(1 << 20, back);
            text = new String(back.array(), StandardCharsets.UTF_8);
        }
        // example:end
        assertThat(changes).containsExactly((1 << 20) + "+65536");
        assertThat(info).isEqualTo(new BitmapInfo("daily", false, false, true, false, 65536, 65536));
        assertThat(text).isEqualTo("hello");
        try (TrackedDisk disk = TrackedDisk.openImage(image))
        {
            assertThat(disk.bitmaps().query()).extracting(BitmapInfo::name).containsExactly("daily", "daily-2");
        }
    }

    @Test
    void documentShowsExactlyTheTestedCode() throws IOException
    {
        final Path root = Path.of(System.getProperty("user.dir")).getParent().getParent();
        final String doc = Files.readString(root.resolve("docs/embedding.md"));
        final String source = Files.readString(
            root.resolve("engine/core/src/test/java/dev/tidemark/engine/EmbeddingExampleTest.java"));
        assertThat(normalise(between(doc, START, END))).isEqualTo(normalise(between(source, START, END)));
    }

    private static String between(final String text, final String start, final String end)
    {
        // The markers on lines of their own, not the constants above.
        final int from = text.indexOf(start + "\n");
        final int to = text.indexOf(end + "\n", from + 1);
        assertThat(from).as("marker %s", start).isNotNegative();
        assertThat(to).as("marker %s", end).isGreaterThan(from);
        return text.substring(from + start.length(), to);
    }

    private static String normalise(final String code)
    {
        return code.lines().map(String::strip).filter(line -> !line.isEmpty()).reduce("", (a, b) -> a + b + "\n");
    }
}
