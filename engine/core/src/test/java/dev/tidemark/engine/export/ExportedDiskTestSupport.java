package dev.tidemark.engine.export;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the export tests against external NBD clients share, as their base class: a tracked disk {@code vda} of
 * {@link #SIZE} bytes in a temporary folder and an export manager listening on {@link #socket}; each test instance
 * is confined to its test thread.
 */
abstract class ExportedDiskTestSupport
{
    static final long SIZE = 32L << 20;

    @TempDir
    Path dir;

    /** Seeds what a test draws; tests print it in failures. */
    final long seed = System.nanoTime();
    TrackedDisk disk;
    ExportManager manager;
    /** The manager's Unix socket, for {@link dev.tidemark.io.testing.ExternalTools#uri}. */
    Path socket;

    @BeforeEach
    void open() throws IOException
    {
        disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("disk.img"), SIZE),
            dir.resolve("bitmaps")).withName("vda"));
        manager = new ExportManager((name, data) -> { });
        socket = dir.resolve("nbd.sock");
        manager.start(ExportAddress.unix(socket), 0);
    }

    @AfterEach
    void close() throws IOException
    {
        manager.close();
        disk.close();
    }

    /**
     * Reads the output of {@code nbdinfo --map} for a context whose state 1 means "set" (a dirty bitmap, changed
     * since a checkpoint): the extents must cover the disk back to back.
     *
     * @return the set extents as {@code offset+length}.
     */
    static List<String> setExtentsOfNbdinfoMap(final String out)
    {
        final List<String> set = new ArrayList<>();
        long covered = 0;
        for (final String line : out.split("\n"))
        {
            final String[] fields = line.trim().split("\\s+");
            if (fields.length < 3)
            {
                continue;
            }
            assertThat(Long.parseLong(fields[0])).isEqualTo(covered);
            covered += Long.parseLong(fields[1]);
            if ("1".equals(fields[2]))
            {
                set.add(fields[0] + "+" + fields[1]);
            }
        }
        assertThat(covered).as("extents of the whole disk").isEqualTo(SIZE);
        return set;
    }

    /** Writes {@code count} ranges of random bytes, each 1 to {@code maxLength} bytes long at a random offset. */
    void writeRandom(final SplittableRandom random, final int count, final int maxLength) throws IOException
    {
        for (int i = 0; i < count; i++)
        {
            final byte[] data = new byte[1 + random.nextInt(maxLength)];
            random.nextBytes(data);
            disk.write(random.nextLong(SIZE - data.length), ByteBuffer.wrap(data), false);
        }
    }
}
