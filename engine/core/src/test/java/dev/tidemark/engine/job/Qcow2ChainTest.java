package dev.tidemark.engine.job;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** A full backup and two incrementals into a qcow2 chain, checked with qemu-img check and compare. */
@Timeout(120)
class Qcow2ChainTest
{
    private static final int SIZE = 16 << 20;

    @TempDir
    Path dir;

    private final long seed = System.nanoTime();

    private static String run(final String... command) throws Exception
    {
        final Process p;
        try
        {
            p = new ProcessBuilder(command).redirectErrorStream(true).start();
        }
        catch (final java.io.IOException missing)
        {
            throw new AssertionError("tool '" + command[0] + "' is missing (install qemu-utils)", missing);
        }
        if (!p.waitFor(60, TimeUnit.SECONDS))
        {
            p.destroyForcibly();
            throw new AssertionError(String.join(" ", command) + " timed out");
        }
        final String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).as(String.join(" ", command) + ": " + out).isZero();
        return out;
    }

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
        final JobManager manager = new JobManager();
        final EventLog events = new EventLog();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(raw, SIZE), dir.resolve("bm"))
            .withName("vda")))
        {
            disk.addListener(events);
            scribble(disk, random, 200);
            final List<Path> chain = new ArrayList<>();
            for (int link = 0; link < 3; link++)
            {
                final Path image = dir.resolve("link" + link + ".qcow2");
                final Path backing = link == 0 ? null : chain.get(link - 1);
                final BackupJob job;
                try (BlockStore target = BackupTargets.createQcow2(image, SIZE, backing))
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
                    EventLog.await(() -> job.status() == JobStatus.NULL
                        && events.briefFor(job.id()).contains(job.id() + ":null"), 60_000, "link " + link);
                    assertThat(events.last(job.id(), "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
                }
                chain.add(image);
                run("qemu-img", "check", image.toString());
                // The disk is quiet now, so the chain's top must equal it exactly.
                run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image.toString(), raw.toString());
                scribble(disk, random, 60);
            }
        }
    }
}
