package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** A failing store fails only its own request; the ring goes on, the bits stay (conservatively) set. */
@Timeout(30)
class StoreFailureTest
{
    @TempDir
    Path dir;

    @Test
    void storeErrorFailsTheRequestAndNothingElse() throws IOException
    {
        final HeapStore store = new HeapStore(1 << 20);
        store.hook((offset, length) ->
        {
            if (offset == 8192)
            {
                throw new IOException("injected EIO at 8192");
            }
        });
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir));
        try
        {
            disk.transaction(BitmapActions.add("b", 4096, false, false));
            assertThatThrownBy(() -> disk.write(8192, ByteBuffer.allocate(10), true))
                .isInstanceOf(IOException.class).hasMessage("injected EIO at 8192");
            assertThatThrownBy(() -> disk.writeZeroes(8192, 10, false, false)).isInstanceOf(IOException.class);
            disk.write(0, ByteBuffer.wrap(new byte[] {7}), false);
            disk.flush();
            final ByteBuffer back = ByteBuffer.allocate(1);
            disk.read(0, back);
            assertThat(back.get(0)).isEqualTo((byte) 7);
            // The failed write may have changed some bytes on a real device: its chunk stays dirty.
            assertThat(disk.bitmaps().view("b").isDirty(8192)).isTrue();
            assertThat(disk.bitmaps().query("b").count()).isEqualTo(2 * 4096);
        }
        finally
        {
            disk.close();
        }
        assertThatThrownBy(() -> disk.write(0, ByteBuffer.allocate(1), false))
            .isInstanceOf(EngineException.class).hasMessage("Disk 'disk0' is closed");
        assertThatThrownBy(() -> disk.transaction(BitmapActions.add("c"))).hasMessage("Disk 'disk0' is closed");
    }
}
