package dev.tidemark.engine.export;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.job.OnError;
import dev.tidemark.io.BlockStoreException;
import dev.tidemark.io.IoReason;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.NbdException;
import dev.tidemark.io.nbd.NbdProtocol;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * NBD error values and QMP classes follow from the error's reason, not its text; each test owns its disk and runs on
 * the test thread. The texts stay QEMU's, the values come from {@link EngineException.Reason} and {@link IoReason}.
 */
@Timeout(60)
class ErrorReasonTest
{
    private static final long SIZE = 1 << 20;

    @TempDir
    Path dir;

    @Test
    void requestsOutsideTheDiskOrMisalignedAreEinvalAndKeepTheirText() throws Exception
    {
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("d.img"), SIZE),
            dir.resolve("bm")).withName("d").withAlignment(512)))
        {
            final TrackedDiskExport export = new TrackedDiskExport("d", "", disk, false, true, List.of());
            assertThat(write(export, SIZE - 512, 1024)).isEqualTo(NbdProtocol.EINVAL);
            assertThat(write(export, 100, 512)).isEqualTo(NbdProtocol.EINVAL);
            assertThat(write(export, 512, 512)).isEqualTo(NbdProtocol.OK);
            assertThatThrownBy(() -> disk.write(100, ByteBuffer.allocate(512), false))
                .isInstanceOfSatisfying(EngineException.class, ex ->
                {
                    assertThat(ex.reason()).isEqualTo(EngineException.Reason.INVALID_REQUEST);
                    assertThat(ex.errorClass()).isEqualTo(EngineException.ErrorClass.GenericError);
                })
                .hasMessage("Disk 'd': write at offset 100 length 512 is not aligned to 512 bytes");
        }
    }

    @Test
    void writesToAReadOnlyDiskAreEperm() throws Exception
    {
        RawFileStore.create(dir.resolve("r.img"), SIZE).close();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(
            RawFileStore.open(dir.resolve("r.img"), RawFileStore.Option.READ_ONLY), dir.resolve("bm")).withName("r")))
        {
            assertThatThrownBy(() -> disk.write(0, ByteBuffer.allocate(512), false))
                .isInstanceOfSatisfying(EngineException.class,
                    ex -> assertThat(ex.reason()).isEqualTo(EngineException.Reason.READ_ONLY))
                .hasMessage("Disk 'r' is read-only");
            assertThat(TrackedDiskExport.errorOf(new EngineException(EngineException.Reason.READ_ONLY, "any text")))
                .isEqualTo(NbdProtocol.EPERM);
        }
    }

    @Test
    void theTextDecidesNothing()
    {
        // Texts that once decided the value, under a reason that says otherwise.
        assertThat(TrackedDiskExport.errorOf(EngineException.generic("Disk 'x' is read-only, not aligned")))
            .isEqualTo(NbdProtocol.EIO);
        assertThat(TrackedDiskExport.errorOf(new EngineException(EngineException.Reason.JOB_NOT_FOUND, "x")))
            .isEqualTo(NbdProtocol.EIO);
        assertThat(new EngineException(EngineException.Reason.JOB_NOT_FOUND, "Job 'j' not found").errorClass())
            .isEqualTo(EngineException.ErrorClass.DeviceNotActive);
        assertThat(TrackedDiskExport.errorOf(new IllegalArgumentException("x"))).isEqualTo(NbdProtocol.EINVAL);
        assertThat(TrackedDiskExport.errorOf(new BlockStoreException(IoReason.NO_SPACE, "x")))
            .isEqualTo(NbdProtocol.ENOSPC);
    }

    @Test
    void aFullDeviceIsNoSpaceWhetherTheJdkOrAnNbdTargetSaysSo()
    {
        assertThat(OnError.isNoSpace(new IOException("No space left on device"))).isTrue();
        assertThat(OnError.isNoSpace(new IOException("Disk quota exceeded"))).isTrue();
        assertThat(OnError.isNoSpace(new NbdException("write failed", NbdProtocol.ENOSPC))).isTrue();
        assertThat(OnError.isNoSpace(new NbdException("write failed", NbdProtocol.EIO))).isFalse();
        assertThat(OnError.isNoSpace(new BlockStoreException(IoReason.READ_ONLY, "No space left"))).isFalse();
        assertThat(TrackedDiskExport.errorOf(new IOException("No space left on device")))
            .isEqualTo(NbdProtocol.ENOSPC);
    }

    private static int write(final TrackedDiskExport export, final long offset, final int length) throws Exception
    {
        final CompletableFuture<Integer> done = new CompletableFuture<>();
        export.write(offset, ByteBuffer.allocate(length), 0, done::complete);
        return done.get(30, TimeUnit.SECONDS);
    }
}
