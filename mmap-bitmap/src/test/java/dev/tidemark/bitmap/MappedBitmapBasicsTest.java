package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Basic behaviour of anonymous and file bitmaps; single-threaded. */
class MappedBitmapBasicsTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    @Test
    void marksQueriesAndClearsAnonymous()
    {
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("b0", 100 * G + 10, G))
        {
            assertThat(bitmap.chunkCount()).isEqualTo(101);
            assertThat(bitmap.mark(G + 5, 1)).isTrue();
            assertThat(bitmap.mark(G, G)).isFalse();
            assertThat(bitmap.mark(3 * G - 1, 2)).isTrue();
            assertThat(bitmap.isDirty(G)).isTrue();
            assertThat(bitmap.isDirty(0)).isFalse();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(3);
            assertThat(bitmap.dirtyByteCount()).isEqualTo(3 * G);
            assertThat(bitmap.nextDirty(0)).isEqualTo(G);
            assertThat(bitmap.nextDirty(G + 7)).isEqualTo(G + 7);
            assertThat(bitmap.nextClean(G)).isEqualTo(G + G * 3);
            assertThat(extents(bitmap, 0, bitmap.diskSize())).containsExactly(G, 3 * G);
            assertThat(extents(bitmap, G + 100, G)).containsExactly(G + 100, G);
            final List<Long> first = new ArrayList<>();
            bitmap.mark(50 * G, 1);
            bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (o, l) -> first.add(o) && false);
            assertThat(first).as("returning false stops the walk").containsExactly(G);
            bitmap.clear(50 * G, G);
            bitmap.clear(G + 1, 2 * G);
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(2);
            bitmap.clear(G, 2 * G);
            assertThat(extents(bitmap, 0, bitmap.diskSize())).containsExactly(3 * G, G);
            bitmap.mark(100 * G, 1);
            bitmap.clear(100 * G, 10);
            assertThat(bitmap.isDirty(100 * G)).isFalse();
            bitmap.clearAll();
            assertThat(bitmap.dirtyChunkCount()).isZero();
            assertThat(bitmap.nextDirty(0)).isEqualTo(-1);
            assertThatThrownBy(() -> bitmap.mark(100 * G + 10, 1)).isInstanceOf(BitmapArgumentException.class)
                .hasMessageContaining("beyond the disk");
        }
    }

    @Test
    void persistsAcrossCleanClose() throws Exception
    {
        final Path file = dir.resolve("b.tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, "persist", 1L << 30, G))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.CREATED);
            bitmap.mark(5 * G, 3 * G);
            assertThat(bitmap.pendingPageCount()).isEqualTo(1);
            assertThat(bitmap.force()).isEqualTo(1);
            assertThat(bitmap.pendingPageCount()).isZero();
        }
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.CLEAN);
            assertThat(bitmap.generation()).isEqualTo(2);
            assertThat(bitmap.name()).isEqualTo("persist");
            assertThat(extents(bitmap, 0, bitmap.diskSize())).containsExactly(5 * G, 3 * G);
            assertThatThrownBy(() -> MappedBitmap.open(file)).isInstanceOf(BitmapFileException.class)
                .hasMessageContaining("already open");
        }
    }

    static List<Long> extents(final BitmapView bitmap, final long offset, final long length)
    {
        final List<Long> out = new ArrayList<>();
        bitmap.forEachDirtyExtent(offset, length, (o, l) ->
        {
            out.add(o);
            out.add(l);
            return true;
        });
        return out;
    }
}
