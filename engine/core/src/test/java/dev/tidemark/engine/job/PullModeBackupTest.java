package dev.tidemark.engine.job;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportAddress;
import dev.tidemark.engine.export.ExportManager;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.engine.export.ExportRequest;
import dev.tidemark.engine.export.RemoveMode;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.testing.ExternalTools;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A pull-mode backup the way libvirt-based tools run it, while the guest keeps writing: a checkpoint bitmap and a
 * fleecing view at one cut, an export of the view, nbdcopy for the full copy; then a new checkpoint that disables
 * the old one, a fleecing export carrying the old bitmap's context, and a libnbd client that fetches only the
 * dirty extents into the full copy. Each copy must equal the disk at its cut.
 */
@Timeout(120)
class PullModeBackupTest
{
    private static final int SIZE = 32 << 20;
    private static final long GRANULARITY = 64 << 10;

    @TempDir
    Path dir;

    /** With the guest quiet, three known chunks are written: the client fetches those three and no more. */
    private void quietRoundFetchesOnlyWhatWasWritten(final TrackedDisk disk, final ExportManager exports,
        final Path socket) throws Exception
    {
        disk.transaction(BitmapActions.add("chk2", GRANULARITY, true, false), BitmapActions.disable("chk1"));
        final Path copy = dir.resolve("copy.raw");
        final byte[] before = new byte[SIZE];
        disk.read(0, java.nio.ByteBuffer.wrap(before));
        Files.write(copy, before);
        for (final long chunk : new long[] {3, 100, 511})
        {
            disk.write(chunk * GRANULARITY + 512, java.nio.ByteBuffer.wrap(new byte[] {1, 2, 3}), false);
        }
        try (FleecingView view = FleecingView.create(disk, FleecingOptions.of(dir.resolve("cbw"), SIZE)))
        {
            disk.transaction(List.of(BitmapActions.add("chk3", GRANULARITY, true, false),
                BitmapActions.disable("chk2"), view.openAction()));
            exports.add(ExportRequest.of("backup-vda", ExportNode.fleecing("fleece2", view, disk)).withBitmaps("chk2"));
            final Path script = Path.of(getClass().getResource("pull_dirty.py").toURI());
            final String fetched = ExternalTools.run(60, "python3", script.toString(),
                ExternalTools.uri("fleece2", socket), "qemu:dirty-bitmap:chk2", copy.toString()).trim();
            exports.remove("backup-vda", RemoveMode.HARD).get(10, TimeUnit.SECONDS);
            assertThat(Long.parseLong(fetched)).isEqualTo(3 * GRANULARITY);
        }
        final byte[] after = new byte[SIZE];
        disk.read(0, java.nio.ByteBuffer.wrap(after));
        Workload.assertSameContent(after, Files.readAllBytes(copy), "quiet round");
    }

    @Test
    void fullThenDirtyExtentsOnlyEqualTheDiskAtEachCut() throws Exception
    {
        final long seed = System.nanoTime();
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        final byte[] base = Workload.fill(store, seed);
        final Path socket = dir.resolve("nbd.sock");
        final Path full = dir.resolve("full.raw");
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda"));
            ExportManager exports = new ExportManager((name, data) -> { }))
        {
            exports.start(ExportAddress.unix(socket), 0);
            final Workload load = new Workload(disk, base, seed, 2, 64 << 10);
            load.start();
            try
            {
                EventLog.await(() -> load.logged() > 30, 20_000, "load to start");
                final long cut0;
                try (FleecingView view = FleecingView.create(disk, FleecingOptions.of(dir.resolve("cbw"), SIZE)))
                {
                    cut0 = disk.transaction(List.of(BitmapActions.add("chk0", GRANULARITY, true, false),
                        view.openAction()));
                    exports.add(ExportRequest.of("backup-vda", ExportNode.fleecing("fleece0", view, disk)));
                    ExternalTools.run(60, "nbdcopy", ExternalTools.uri("fleece0", socket), full.toString());
                    exports.remove("backup-vda", RemoveMode.HARD).get(10, TimeUnit.SECONDS);
                }
                // Compared after the writers stopped: a writer logs a request only after it completed, so the log
                // is complete up to a cut only once every writer has moved past it.
                final byte[] fullCopy = Files.readAllBytes(full);

                final int before = load.logged();
                EventLog.await(() -> load.logged() > before + 40, 20_000, "more load");
                final long cut1;
                final String fetched;
                final long dirtyBytes;
                try (FleecingView view = FleecingView.create(disk, FleecingOptions.of(dir.resolve("cbw"), SIZE)))
                {
                    cut1 = disk.transaction(List.of(BitmapActions.add("chk1", GRANULARITY, true, false),
                        BitmapActions.disable("chk0"), view.openAction()));
                    exports.add(ExportRequest.of("backup-vda", ExportNode.fleecing("fleece1", view, disk))
                        .withBitmaps("chk0"));
                    assertThat(disk.bitmaps().query("chk0").busy()).isTrue();
                    dirtyBytes = disk.bitmaps().view("chk0").dirtyChunkCount() * GRANULARITY;
                    final Path script = Path.of(getClass().getResource("pull_dirty.py").toURI());
                    fetched = ExternalTools.run(60, "python3", script.toString(),
                        ExternalTools.uri("fleece1", socket), "qemu:dirty-bitmap:chk0", full.toString()).trim();
                    exports.remove("backup-vda", RemoveMode.HARD).get(10, TimeUnit.SECONDS);
                }
                final byte[] incrementalCopy = Files.readAllBytes(full);
                // Exactly the dirty extents travelled (the size is a multiple of the granularity).
                assertThat(Long.parseLong(fetched)).isEqualTo(dirtyBytes);
                // The checkpoint is free again for the next rotation.
                assertThat(disk.bitmaps().query("chk0").busy()).isFalse();
                load.stop();
                Workload.assertSameContent(load.contentAt(cut0), fullCopy, "full (seed " + seed + ")");
                Workload.assertSameContent(load.contentAt(cut1), incrementalCopy,
                    "full + dirty extents (seed " + seed + ")");
                quietRoundFetchesOnlyWhatWasWritten(disk, exports, socket);
            }
            finally
            {
                load.halt();
            }
        }
    }
}
