package dev.tidemark.engine.job;

import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.testing.ExternalTools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/** A full backup and two incrementals into a qcow2 chain, checked with qemu-img check and compare. */
@Timeout(120)
class Qcow2ChainTest extends DiskTestSupport
{
    private static final int SIZE = 16 << 20;
    private static final long GRANULARITY = 64 << 10;

    private static void scribble(final TrackedDisk disk, final SplittableRandom random, final int writes)
        throws Exception
    {
        for (int i = 0; i < writes; i++)
        {
            final byte[] data = new byte[4096 * (1 + random.nextInt(32))];
            random.nextBytes(data);
            final long offset = 4096L * random.nextInt((SIZE - data.length) / 4096);
            if (random.nextInt(8) == 0)
            {
                disk.writeZeroes(offset, data.length, true, false);
            }
            else
            {
                disk.write(offset, ByteBuffer.wrap(data), false);
            }
        }
    }

    @Test
    void fullAndIncrementalsFormAQcow2ChainQemuImgAccepts() throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final Path raw = dir.resolve("disk.raw");
        openDisk(SIZE);
        scribble(disk, random, 200);
        final List<Path> chain = new ArrayList<>();
        for (int link = 0; link < 3; link++)
        {
            final Path image = dir.resolve("link" + link + ".qcow2");
            final Path backing = link == 0 ? null : chain.get(link - 1);
            final BackupJob job;
            try (BlockStore target = backing == null ? BackupTargets.createQcow2(image, SIZE, GRANULARITY)
                : BackupTargets.createQcow2(image, SIZE, GRANULARITY, backing))
            {
                final BackupOptions options = link == 0
                    ? BackupOptions.of("vda", SyncMode.FULL).withJobId("link0")
                    : BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId("link" + link).withBitmap("b0", null);
                final BackupStartAction start = new BackupStartAction(manager, options, target, null);
                if (link == 0)
                {
                    disk.transaction(List.of(BitmapActions.add("b0"), start));
                }
                else
                {
                    disk.transaction(start);
                }
                job = start.job();
                awaitGone(job);
                assertThat(events.last(job.id(), "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
            }
            chain.add(image);
            ExternalTools.run(60, "qemu-img", "check", image.toString());
            // The disk is quiet now, so the chain's top must equal it exactly.
            ExternalTools.run(60, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", image.toString(),
                raw.toString());
            scribble(disk, random, 60);
        }
    }
}
