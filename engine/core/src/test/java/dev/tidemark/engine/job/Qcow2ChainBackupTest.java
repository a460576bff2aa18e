package dev.tidemark.engine.job;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;
import dev.tidemark.io.testing.ExternalTools;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A full backup and two incrementals into a qcow2 chain under guest load: {@code qemu-img check} accepts every
 * link and {@code qemu-img compare} finds the top of the chain equal to the disk at the last cut.
 */
@Timeout(120)
class Qcow2ChainBackupTest
{
    private static final int SIZE = 32 << 20;

    @TempDir
    Path dir;

    @Test
    void clusterSizeIsTheGranularityClampedToQcow2sRange()
    {
        assertThat(BackupTargets.clusterSizeFor(512)).isEqualTo(512);
        assertThat(BackupTargets.clusterSizeFor(65536)).isEqualTo(65536);
        assertThat(BackupTargets.clusterSizeFor(1L << 31)).isEqualTo(2 << 20);
        assertThatThrownBy(() -> BackupTargets.clusterSizeFor(3000)).isInstanceOf(IllegalArgumentException.class)
            .hasMessageContaining("3000");
    }

    @Test
    void fullPlusIncrementalsRestoreTheDiskAtTheLastCut() throws Exception
    {
        // 128 KiB: not qcow2's default, so the clusters visibly follow the bitmap.
        final long granularity = 128 << 10;
        final long seed = System.nanoTime();
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        final byte[] base = Workload.fill(store, seed);
        final EventLog events = new EventLog();
        final JobManager jobs = new JobManager();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda")))
        {
            disk.addListener(events);
            final Workload load = new Workload(disk, base, seed, 2, 64 << 10);
            load.start();
            try
            {
                EventLog.await(() -> load.logged() > 30, 20_000, "load to start");
                Path previous = dir.resolve("full.qcow2");
                long cut;
                try (Qcow2Writer target = BackupTargets.createQcow2(previous, SIZE, granularity))
                {
                    final BackupStartAction start = new BackupStartAction(jobs,
                        BackupOptions.of("vda", SyncMode.FULL).withJobId("full"), target, null);
                    cut = disk.transaction(List.of(BitmapActions.add("b0", granularity, true, false), start));
                    awaitSuccess(events, start.job(), seed);
                }
                // Checked after the writers stopped: a writer logs its request only after it completed, so the
                // log is complete up to a cut only once every writer has moved past it.
                final List<Object[]> links = new java.util.ArrayList<>();
                links.add(new Object[] {previous, cut, "full"});
                for (int i = 1; i <= 2; i++)
                {
                    final int before = load.logged();
                    EventLog.await(() -> load.logged() > before + 40, 20_000, "more load");
                    final Path image = dir.resolve("inc" + i + ".qcow2");
                    try (Qcow2Writer target = BackupTargets.createQcow2(image, SIZE, granularity, previous))
                    {
                        assertThat(target.clusterSize()).isEqualTo((int)granularity);
                        final BackupStartAction start = new BackupStartAction(jobs,
                            BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId("inc" + i).withBitmap("b0", null),
                            target, null);
                        cut = disk.transaction(start);
                        awaitSuccess(events, start.job(), seed);
                    }
                    links.add(new Object[] {image, cut, "incremental " + i});
                    previous = image;
                }
                assertThat(ExternalTools.run(30, "qemu-img", "info", "--backing-chain", previous.toString()))
                    .contains("inc1.qcow2").contains("full.qcow2");
                load.stop();
                for (final Object[] link : links)
                {
                    check((Path)link[0], load.contentAt((Long)link[1]), (String)link[2], seed);
                }
            }
            finally
            {
                load.halt();
            }
        }
    }

    private static void awaitSuccess(final EventLog events, final BackupJob job, final long seed)
    {
        EventLog.await(() -> job.status() == JobStatus.NULL, 60_000, job.id() + " to finish (seed " + seed + ")");
        final EventLog.Event completed = events.last(job.id(), "BLOCK_JOB_COMPLETED");
        assertThat(completed).isNotNull();
        assertThat(completed.data()).as("seed %d", seed).doesNotContainKey("error");
    }

    private void check(final Path image, final byte[] expected, final String what, final long seed) throws Exception
    {
        ExternalTools.run(30, "qemu-img", "check", "-f", "qcow2", image.toString());
        final Path raw = dir.resolve("expected-" + image.getFileName() + ".raw");
        Files.write(raw, expected);
        try
        {
            ExternalTools.run(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", image.toString(), raw.toString());
        }
        catch (final AssertionError ex)
        {
            // Say which link holds the first differing cluster: a missing cluster means a lost dirty bit, an
            // allocated one wrong data.
            final java.util.regex.Matcher at = java.util.regex.Pattern.compile("mismatch at offset (\\d+)")
                .matcher(String.valueOf(ex.getMessage()));
            String where = "";
            if (at.find())
            {
                final long offset = Long.parseLong(at.group(1));
                final StringBuilder lines = new StringBuilder();
                for (final String line : ExternalTools.run(30, "qemu-img", "map", "--output=json", image.toString())
                    .split("\n"))
                {
                    final java.util.regex.Matcher m = java.util.regex.Pattern
                        .compile("\"start\": (\\d+), \"length\": (\\d+)").matcher(line);
                    if (m.find() && Long.parseLong(m.group(1)) <= offset
                        && offset < Long.parseLong(m.group(1)) + Long.parseLong(m.group(2)))
                    {
                        lines.append(line.trim());
                    }
                }
                where = "; qemu-img map at " + offset + ": " + lines;
            }
            throw new AssertionError(what + " differs from the disk at its cut (seed " + seed + ")" + where, ex);
        }
        finally
        {
            Files.delete(raw);
        }
    }
}
