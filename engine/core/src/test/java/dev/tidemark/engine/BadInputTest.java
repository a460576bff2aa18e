package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Bad requests and bad bitmap commands: QEMU's error text each, and nothing changed. */
@Timeout(30)
class BadInputTest
{
    private static final int SIZE = 1 << 20;

    @TempDir
    Path dir;

    private HeapStore store;
    private TrackedDisk disk;

    @BeforeEach
    void open() throws IOException
    {
        store = new HeapStore(SIZE);
        disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm")).withAlignment(512).withName("vda"));
        disk.transaction(BitmapActions.add("a"));
    }

    @AfterEach
    void close() throws IOException
    {
        disk.close();
    }

    private void assertNothingChanged()
    {
        assertThat(disk.bitmaps().query()).containsExactly(new BitmapInfo("a", true, false, false, false, 65536, 0));
        assertThat(store.snapshot()).containsOnly(0);
    }

    @Test
    void outOfRangeAndUnalignedRequests()
    {
        final ByteBuffer one = ByteBuffer.allocate(512);
        assertThatThrownBy(() -> disk.write(SIZE, one, false)).isInstanceOf(EngineException.class)
            .hasMessage("Disk 'vda': write at offset 1048576 length 512 is outside the disk (1048576 bytes)");
        assertThatThrownBy(() -> disk.write(-512, one, false))
            .hasMessage("Disk 'vda': write at offset -512 length 512 is outside the disk (1048576 bytes)");
        assertThatThrownBy(() -> disk.writeZeroes(Long.MAX_VALUE - 511, 1024, false, false))
            .hasMessageContaining("is outside the disk");
        assertThatThrownBy(() -> disk.discard(SIZE - 512, 1024, false))
            .hasMessage("Disk 'vda': discard at offset 1048064 length 1024 is outside the disk (1048576 bytes)");
        assertThatThrownBy(() -> disk.write(100, one, false))
            .hasMessage("Disk 'vda': write at offset 100 length 512 is not aligned to 512 bytes");
        assertThatThrownBy(() -> disk.writeZeroes(0, 100, false, false))
            .hasMessage("Disk 'vda': write-zeroes at offset 0 length 100 is not aligned to 512 bytes");
        assertThatThrownBy(() -> disk.read(SIZE, ByteBuffer.allocate(512)))
            .hasMessage("Disk 'vda': read at offset 1048576 length 512 is outside the disk (1048576 bytes)");
        assertThat(one.position()).isZero();
        assertNothingChanged();
    }

    @Test
    void bitmapNamesAndGranularities()
    {
        assertThatThrownBy(() -> disk.transaction(BitmapActions.add("")))
            .isInstanceOf(EngineException.class).hasMessage("Bitmap name cannot be empty");
        final String tooLong = "x".repeat(1024);
        assertThatThrownBy(() -> disk.transaction(BitmapActions.add(tooLong)))
            .hasMessage("Bitmap name too long: " + tooLong);
        assertThatThrownBy(() -> disk.transaction(BitmapActions.add("a")))
            .hasMessage("Bitmap already exists: a");
        for (final long granularity : new long[] {0, 256, 511, 513, 65535, 3L << 20, 1L << 32, -65536})
        {
            assertThatThrownBy(() -> disk.transaction(BitmapActions.add("g", granularity, false, false)))
                .as("granularity %d", granularity)
                .hasMessage("Granularity must be power of 2 and at least 512");
        }
        for (final var action : List.of(BitmapActions.remove("nope"), BitmapActions.clear("nope"),
            BitmapActions.enable("nope"), BitmapActions.disable("nope"), BitmapActions.merge("nope", List.of("a")),
            BitmapActions.merge("a", List.of("nope"))))
        {
            assertThatThrownBy(() -> disk.transaction(action)).as(action.type())
                .hasMessage("Dirty bitmap 'nope' not found");
        }
        assertThatThrownBy(() -> disk.bitmaps().query("nope")).hasMessage("Dirty bitmap 'nope' not found");
        assertThatThrownBy(() -> disk.bitmaps().sha256("nope")).hasMessage("Dirty bitmap 'nope' not found");
        assertThat(((EngineException) org.assertj.core.api.Assertions.catchThrowable(
            () -> disk.transaction(BitmapActions.add("a")))).errorClass())
            .isEqualTo(EngineException.ErrorClass.GenericError);
        assertNothingChanged();
    }

    @Test
    void busyBitmapRefusesEverythingButQueries() throws IOException
    {
        disk.transaction(BitmapActions.add("b"));
        disk.bitmaps().setBusy("a", true);
        final String busy = "Bitmap 'a' is currently in use by another operation and cannot be used";
        // Merging from it too, as qemu-storage-daemon 7.2 refuses it (a job's frozen bits lack its successor's).
        for (final var action : List.of(BitmapActions.remove("a"), BitmapActions.clear("a"),
            BitmapActions.enable("a"), BitmapActions.disable("a"), BitmapActions.merge("a", List.of("b")),
            BitmapActions.merge("b", List.of("a"))))
        {
            assertThatThrownBy(() -> disk.transaction(action)).as(action.type()).hasMessage(busy);
        }
        assertThatThrownBy(() -> disk.bitmaps().setBusy("a", true)).hasMessage(busy);
        assertThat(disk.bitmaps().query("a").busy()).isTrue();
        disk.bitmaps().setBusy("a", false);
        disk.transaction(BitmapActions.remove("b"));
        assertNothingChanged();
    }

    @Test
    void changesOffTheMarkThreadAreRefused()
    {
        assertThatThrownBy(() -> disk.bitmaps().createSuccessor("a")).isInstanceOf(IllegalStateException.class)
            .hasMessageContaining("only the mark thread");
        assertNothingChanged();
    }
}
