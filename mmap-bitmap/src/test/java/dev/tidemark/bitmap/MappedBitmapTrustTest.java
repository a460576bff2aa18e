package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.UUID;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The trust rule on open (invariant I5) with a simulated reboot: the header's boot id is rewritten as if
 * the previous holder had run in another boot. Single-threaded.
 */
class MappedBitmapTrustTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    private Path leftInUse(final String name, final boolean durable, final UUID bootId) throws Exception
    {
        final Path file = dir.resolve(name + ".tmbm");
        try (MappedBitmap bitmap = MappedBitmap.create(file, name, 1L << 32, G))
        {
            bitmap.setDurable(durable);
            bitmap.mark(7 * G, 3 * G);
        }
        HeaderPatch.patch(file, true, header ->
        {
            HeaderPatch.setFlags(header, BitmapFileDescriptor.FLAG_IN_USE | (durable ? BitmapFileDescriptor.FLAG_DURABLE : 0));
            BitmapFileDescriptor.putBootId(header, bootId);
        });
        return file;
    }

    @Test
    void lazyBitmapLeftInUseByAnotherBootOpensInconsistentAndStaysSo() throws Exception
    {
        final Path file = leftInUse("lazy", false, UUID.randomUUID());
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.INCONSISTENT);
            assertThat(bitmap.isInconsistent()).isTrue();
            assertThat(bitmap.isDirty(8 * G)).as("still readable for inspection").isTrue();
            assertThat(bitmap.headerFlags() & BitmapFileDescriptor.FLAG_INCONSISTENT).isNotZero();
        }
        try (MappedBitmap again = MappedBitmap.open(file))
        {
            assertThat(again.openState()).as("a clean close does not launder an inconsistent bitmap")
                .isEqualTo(OpenState.INCONSISTENT);
        }
    }

    @Test
    void durableBitmapLeftInUseByAnotherBootOpensTrusted() throws Exception
    {
        final Path file = leftInUse("durable", true, UUID.randomUUID());
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.TRUSTED_DURABLE);
            assertThat(bitmap.isInconsistent()).isFalse();
            assertThat(bitmap.isDurable()).isTrue();
            assertThat(bitmap.dirtyChunkCount()).isEqualTo(3);
        }
    }

    @Test
    void lazyBitmapLeftInUseInThisBootOpensTrusted() throws Exception
    {
        final Path file = leftInUse("same", false, BootId.current());
        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
            assertThat(bitmap.bootIdAtOpen()).isEqualTo(BootId.current());
        }
    }

    @Test
    void cleanCloseClearsInUseAndRecordsTime() throws Exception
    {
        final Path file = dir.resolve("clean.tmbm");
        final long[] now = {1_000};
        final MappedBitmap.Options options = new MappedBitmap.Options().clock(() -> now[0]);
        try (MappedBitmap bitmap = MappedBitmap.create(file, "clean", G * 10, G, options))
        {
            assertThat(bitmap.headerFlags() & BitmapFileDescriptor.FLAG_IN_USE).isNotZero();
            assertThat(bitmap.creationTimeMillis()).isEqualTo(1_000);
            now[0] = 2_000;
        }
        try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
        {
            assertThat(bitmap.headerFlags() & BitmapFileDescriptor.FLAG_IN_USE).isZero();
            assertThat(bitmap.lastCleanCloseMillis()).isEqualTo(2_000);
            assertThat(bitmap.openState()).isEqualTo(OpenState.CLEAN);
        }
    }

    @Test
    void unknownBootIdNeverMatches()
    {
        assertThat(MappedBitmap.trustRule(BitmapFileDescriptor.FLAG_IN_USE, BootId.UNKNOWN, BootId.UNKNOWN))
            .isEqualTo(OpenState.INCONSISTENT);
        assertThat(BootId.read(Path.of("/nonexistent/boot_id"))).isEqualTo(BootId.UNKNOWN);
    }
}
