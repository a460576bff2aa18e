package dev.tidemark.engine.export;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.testing.ExternalTools;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Tracked-disk exports read and written by qemu-img, nbdinfo and fio; a missing tool fails the test. */
@Timeout(120)
class ExportInteropTest extends ExportedDiskTestSupport
{
    private static final long GRANULARITY = 64 << 10;

    /** Writes {@code count} random ranges and returns the whole disk's content after them. */
    private byte[] writeRandom(final SplittableRandom random, final int count) throws IOException
    {
        writeRandom(random, count, 200_000);
        final byte[] all = new byte[(int)SIZE];
        disk.read(0, ByteBuffer.wrap(all));
        return all;
    }

    @Test
    void qemuImgReadsConvertsAndComparesTheExport() throws Exception
    {
        final byte[] content = writeRandom(new SplittableRandom(seed), 60);
        manager.add(ExportRequest.of("e0", ExportNode.disk("vda", disk)));
        final String uri = ExternalTools.uri("vda", socket);
        assertThat(ExternalTools.run(30, "qemu-img", "info", "--output=json", uri))
            .contains("\"virtual-size\": " + SIZE);
        final Path copy = dir.resolve("copy.raw");
        ExternalTools.run(60, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, copy.toString());
        assertThat(Files.readAllBytes(copy)).as("seed %d", seed).isEqualTo(content);
        final Path expected = dir.resolve("expected.raw");
        Files.write(expected, content);
        ExternalTools.run(60, "qemu-img", "compare", "-f", "raw", "-F", "raw", uri, expected.toString());
    }

    @Test
    void nbdinfoMapOfAnExportedBitmapEqualsTheRegistryExtents() throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        writeRandom(random, 10);
        disk.transaction(BitmapActions.add("b0", GRANULARITY, false, false));
        writeRandom(random, 40);
        disk.writeZeroes(SIZE - GRANULARITY, GRANULARITY, true, false);
        // Rotate at one cut: b0 stops recording, so it may be exported read-only.
        disk.transaction(BitmapActions.add("b1", GRANULARITY, false, false), BitmapActions.disable("b0"));
        writeRandom(random, 5);
        manager.add(ExportRequest.of("e0", ExportNode.disk("vda", disk)).withBitmaps("b0"));
        final String out = ExternalTools.run(30, "nbdinfo", "--map=qemu:dirty-bitmap:b0",
            ExternalTools.uri("vda", socket));
        final List<String> dirty = setExtentsOfNbdinfoMap(out);
        final List<String> expected = new ArrayList<>();
        disk.bitmaps().view("b0").forEachDirtyExtent(0, SIZE, (offset, length) -> expected.add(offset + "+" + length));
        assertThat(expected).isNotEmpty();
        assertThat(dirty).as("seed %d\n%s", seed, out).isEqualTo(expected);
    }

    /** fio writes random 4 KiB blocks with a fixed seed; the write log lists them; each chunk must be dirty. */
    @Test
    void everyChunkFioWritesThroughTheExportIsDirty() throws Exception
    {
        disk.transaction(BitmapActions.add("rec", GRANULARITY, false, false));
        manager.add(ExportRequest.of("e0", ExportNode.disk("vda", disk)).withWritable(true).withBitmaps("rec"));
        final Path log = dir.resolve("fio.iolog");
        ExternalTools.run(90, "fio", "--name=tracked", "--ioengine=nbd", "--uri=" + ExternalTools.uri("vda", socket),
            "--rw=randwrite", "--bs=4k", "--size=" + SIZE, "--io_size=4m", "--iodepth=16", "--randseed=" + (seed & 0xffff),
            "--norandommap=1", "--write_iolog=" + log, "--output-format=terse");
        final TreeSet<Long> written = new TreeSet<>();
        for (final String line : Files.readAllLines(log))
        {
            // Version 2 lines are "file write offset length", version 3 puts a timestamp first.
            final String[] fields = line.trim().split("\\s+");
            final int at = fields.length - 3;
            if (at >= 1 && "write".equals(fields[at]))
            {
                final long offset = Long.parseLong(fields[at + 1]);
                final long length = Long.parseLong(fields[at + 2]);
                for (long chunk = offset / GRANULARITY; chunk <= (offset + length - 1) / GRANULARITY; chunk++)
                {
                    written.add(chunk);
                }
            }
        }
        assertThat(written).as("fio's write log").hasSizeGreaterThan(100);
        final TreeSet<Long> dirty = new TreeSet<>();
        disk.bitmaps().view("rec").forEachDirtyExtent(0, SIZE, (offset, length) ->
        {
            for (long chunk = offset / GRANULARITY; chunk < (offset + length) / GRANULARITY; chunk++)
            {
                dirty.add(chunk);
            }
            return true;
        });
        // fio is the only writer: the dirty chunks are exactly the ones it wrote.
        assertThat(dirty).as("seed %d", seed).isEqualTo(written);
    }
}
