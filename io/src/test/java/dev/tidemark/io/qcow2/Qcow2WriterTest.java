package dev.tidemark.io.qcow2;

import static dev.tidemark.io.testing.Stores.readAll;

import dev.tidemark.io.testing.Workers;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Qcow2WriterTest
{
    private static final int KIB = 1024;
    private static final int MIB = 1024 * KIB;

    @TempDir
    Path dir;

    static ByteBuffer direct(final byte[] bytes, final int from, final int length)
    {
        final ByteBuffer buffer = ByteBuffer.allocateDirect(length);
        buffer.put(bytes, from, length).flip();
        return buffer;
    }

    /** Checks an image with QEMU's tools and our reader against the expected guest bytes. */
    private void verifyImage(final Path image, final byte[] expected, final String context) throws Exception
    {
        QemuTools.check(image);
        final Path raw = Files.createTempFile(dir, "expected", ".raw");
        Files.write(raw, expected);
        QemuTools.compare(image, raw);
        assertThat(QemuTools.convertToRaw(image, dir)).as("qemu-img convert of %s (%s)", image, context)
            .isEqualTo(expected);
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.size()).isEqualTo(expected.length);
            assertThat(readAll(reader)).as("Qcow2Reader of %s (%s)", image, context).isEqualTo(expected);
        }
        Files.delete(raw);
    }

    /**
     * Applies random writes (whole-cluster runs as a backup pump sends them, and partial ones), zeroes and
     * discards to {@code writer} and {@code model}.
     */
    private static void randomOperations(
        final Qcow2Writer writer,
        final byte[] model,
        final SplittableRandom random,
        final int operations) throws IOException
    {
        final int size = model.length;
        final int cluster = writer.clusterSize();
        for (int op = 0; op < operations; op++)
        {
            final int kind = random.nextInt(10);
            int offset;
            int length;
            if (kind < 4)
            {
                // Cluster-aligned run, possibly reaching the odd end of the disk.
                final int clusters = (size + cluster - 1) / cluster;
                final int first = random.nextInt(clusters);
                final int count = 1 + random.nextInt(Math.min(clusters - first, Math.max(1, 4 * MIB / cluster)));
                offset = first * cluster;
                length = (int)Math.min((long)(first + count) * cluster, size) - offset;
            }
            else
            {
                offset = random.nextInt(size);
                length = 1 + random.nextInt(Math.min(size - offset, 3 * cluster));
            }
            if (kind < 7)
            {
                final byte[] data = new byte[length];
                random.nextBytes(data);
                if (random.nextInt(4) == 0)
                {
                    // Runs of zero bytes written as data must still read back as written.
                    Arrays.fill(data, 0, length / 2, (byte)0);
                }
                System.arraycopy(data, 0, model, offset, length);
                writer.write(offset, random.nextBoolean() ? direct(data, 0, length) : ByteBuffer.wrap(data));
            }
            else
            {
                if (kind == 7)
                {
                    writer.discard(offset, length);
                }
                else
                {
                    writer.writeZeroes(offset, length, kind == 8);
                }
                Arrays.fill(model, offset, offset + length, (byte)0);
            }
            if (random.nextInt(40) == 0)
            {
                writer.flush();
            }
        }
    }

    @ParameterizedTest(name = "cluster {0}, size {1}")
    @CsvSource({
        "512, 1049088",
        "4096, 9438720",
        "65536, 12584448",
        "2097152, 9438720"})
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void randomImagesMatchARawModelAndPassQemuImgCheck(final int clusterSize, final int size) throws Exception
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        final byte[] model = new byte[size];
        final Path image = dir.resolve("r" + clusterSize + ".qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size,
            Qcow2Writer.Options.defaults().withClusterSize(clusterSize)))
        {
            assertThat(writer.size()).isEqualTo(size);
            randomOperations(writer, model, random, 120);
            assertThat(readAll(writer)).as("seed %d: writer reads its own writes", seed).isEqualTo(model);
        }
        verifyImage(image, model, "seed " + seed);
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void smallClustersCrossManyRefcountBlocks() throws Exception
    {
        // 512-byte clusters: a refcount block covers 256 clusters, so 4 MiB of data spans ~32 blocks.
        final int size = 4 * MIB + 512;
        final byte[] model = new byte[size];
        new SplittableRandom(11).nextBytes(model);
        final Path image = dir.resolve("small.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults().withClusterSize(512)))
        {
            for (int offset = 0; offset < size; offset += MIB)
            {
                final int length = Math.min(MIB, size - offset);
                writer.write(offset, direct(model, offset, length));
                writer.flush();
                QemuTools.check(image);
            }
        }
        verifyImage(image, model, "small clusters");
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void fullAndTwoIncrementalsFormAChainQemuReads() throws Exception
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        final int size = 6 * MIB + 3 * 512;
        final int cluster = 64 * KIB;
        final byte[] disk = new byte[size];
        random.nextBytes(disk);
        Arrays.fill(disk, MIB, 2 * MIB, (byte)0);

        // Full: every cluster, zero clusters where the disk is zero (as a pump that detects zeroes would).
        final Path full = dir.resolve("full.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(full, size, Qcow2Writer.Options.defaults()))
        {
            writer.write(0, direct(disk, 0, MIB));
            writer.writeZeroes(MIB, MIB, true);
            writer.write(2 * MIB, direct(disk, 2 * MIB, size - 2 * MIB));
        }
        verifyImage(full, disk, "full, seed " + seed);

        Path previous = full;
        for (int level = 1; level <= 2; level++)
        {
            final Path incremental = dir.resolve("inc" + level + ".qcow2");
            try (Qcow2Writer writer = Qcow2Writer.create(incremental, size,
                Qcow2Writer.Options.defaults().withBacking(previous.getFileName().toString(), "qcow2")))
            {
                assertThat(readAll(writer)).as("a new incremental reads as its backing").isEqualTo(disk);
                for (int i = 0; i < 12; i++)
                {
                    final int first = random.nextInt(size / cluster + 1);
                    final int offset = first * cluster;
                    final int length = Math.min((1 + random.nextInt(3)) * cluster, size - offset);
                    if (length <= 0)
                    {
                        continue;
                    }
                    if (i % 4 == 3)
                    {
                        writer.writeZeroes(offset, length, false);
                        Arrays.fill(disk, offset, offset + length, (byte)0);
                    }
                    else
                    {
                        final byte[] data = new byte[length];
                        random.nextBytes(data);
                        System.arraycopy(data, 0, disk, offset, length);
                        writer.write(offset, direct(data, 0, length));
                    }
                }
                // Partial clusters: the rest of the cluster must come from the backing chain.
                final int partial = 3 * cluster + 1000;
                final byte[] small = {1, 2, 3, 4, 5, 6, 7};
                System.arraycopy(small, 0, disk, partial, small.length);
                writer.write(partial, ByteBuffer.wrap(small));
                writer.writeZeroes(5 * cluster + 100, 300, false);
                Arrays.fill(disk, 5 * cluster + 100, 5 * cluster + 400, (byte)0);
                assertThat(writer.clusterState(partial)).isEqualTo(ClusterState.DATA);
                assertThat(writer.clusterState(size - 1)).isIn((Object[])ClusterState.values());
            }
            verifyImage(incremental, disk, "level " + level + ", seed " + seed);
            final QemuTools.Result info = QemuTools.ok("qemu-img", "info", "--backing-chain", incremental.toString());
            assertThat(info.stdout()).contains("backing file: " + previous.getFileName())
                .contains("backing file format: qcow2");
            previous = incremental;
        }
        try (Qcow2Reader top = Qcow2Reader.open(previous))
        {
            assertThat(top.chainLength()).isEqualTo(3);
            assertThat(top.backingFile()).isEqualTo("inc1.qcow2");
        }
    }

    @Test
    void rawBackingFileFillsPartialClusters() throws Exception
    {
        final int size = MIB;
        final byte[] disk = new byte[size];
        new SplittableRandom(5).nextBytes(disk);
        final Path base = dir.resolve("base.raw");
        Files.write(base, disk);
        final Path image = dir.resolve("over.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size,
            Qcow2Writer.Options.defaults().withClusterSize(4096).withBacking("base.raw", "raw")))
        {
            writer.write(4096 * 3 + 10, ByteBuffer.wrap(new byte[] {9, 9}));
            disk[4096 * 3 + 10] = 9;
            disk[4096 * 3 + 11] = 9;
            writer.discard(8192, 4096);
            Arrays.fill(disk, 8192, 8192 + 4096, (byte)0);
        }
        verifyImage(image, disk, "raw backing");
    }

    @Test
    void wholeClusterZeroesAreZeroClustersInQemuImgMap() throws Exception
    {
        final int size = 2 * MIB;
        final int cluster = 64 * KIB;
        final byte[] disk = new byte[size];
        Arrays.fill(disk, (byte)0x11);
        final Path image = dir.resolve("z.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()))
        {
            writer.write(0, direct(disk, 0, size));
            // Two whole clusters, already allocated; then one never written (zero cluster without host).
            writer.writeZeroes(4 * cluster, 2 * cluster, true);
            Arrays.fill(disk, 4 * cluster, 6 * cluster, (byte)0);
        }
        final Path image2 = dir.resolve("z2.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image2, size, Qcow2Writer.Options.defaults()))
        {
            writer.writeZeroes(cluster, 3 * cluster, false);
            assertThat(writer.clusterState(cluster)).isEqualTo(ClusterState.ZERO);
            assertThat(writer.clusterState(0)).isEqualTo(ClusterState.UNALLOCATED);
        }
        verifyImage(image, disk, "zero clusters");
        assertThat(QemuTools.map(image)).containsExactly(
            new QemuTools.MapExtent(0, 4 * cluster, true, false),
            new QemuTools.MapExtent(4 * cluster, 2 * cluster, false, true),
            new QemuTools.MapExtent(6 * cluster, size - 6 * cluster, true, false));
        final QemuTools.Result rawMap = QemuTools.ok("qemu-img", "map", "--output=json", image2.toString());
        assertThat(rawMap.stdout()).contains(
            "{ \"start\": 65536, \"length\": 196608, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": false}");
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            final List<QemuTools.MapExtent> ours = new ArrayList<>();
            reader.forEachAllocationExtent(0, size, (o, l, a, z) -> ours.add(new QemuTools.MapExtent(o, l, a, z)));
            assertThat(ours).isEqualTo(QemuTools.map(image));
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void concurrentWritersOnDisjointRangesProduceACleanImage() throws Exception
    {
        final long seed = System.nanoTime();
        final int threads = 6;
        final int cluster = 4096;
        final int slice = 64 * cluster;
        final int size = threads * slice;
        final byte[] model = new byte[size];
        final Path image = dir.resolve("c.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults().withClusterSize(cluster)))
        {
            Workers.run(threads, seed, (t, random) ->
            {
                final int base = t * slice;
                for (int op = 0; op < 200; op++)
                {
                    final int offset = base + random.nextInt(slice);
                    final int length = 1 + random.nextInt(Math.min(base + slice - offset, 3 * cluster));
                    final byte[] data = new byte[length];
                    random.nextBytes(data);
                    writer.write(offset, direct(data, 0, length));
                    synchronized (model)
                    {
                        System.arraycopy(data, 0, model, offset, length);
                    }
                    if (op % 50 == 0)
                    {
                        writer.flush();
                    }
                }
            });
        }
        synchronized (model)
        {
            verifyImage(image, model, "concurrent, seed " + seed);
        }
    }

    @ParameterizedTest(name = "cluster {0}, size {1}, {2} cached tables")
    @CsvSource({
        "512, 1049088, 1",
        "512, 1049088, 3",
        "4096, 9438720, 2"})
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aSmallL2CacheWritesAndReadsBackTablesItPushedOut(final int clusterSize, final int size, final int tables)
        throws Exception
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        final byte[] model = new byte[size];
        final Path image = dir.resolve("cache" + clusterSize + "-" + tables + ".qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()
            .withClusterSize(clusterSize).withL2CacheBytes((long)tables * clusterSize)))
        {
            for (int round = 0; round < 4; round++)
            {
                randomOperations(writer, model, random, 60);
                // Reads take the read lock, where uncached tables are read entry by entry from the file.
                assertThat(readAll(writer)).as("seed %d, round %d: writer reads its own writes", seed, round)
                    .isEqualTo(model);
            }
        }
        verifyImage(image, model, "seed " + seed);
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aCrashAfterTablesWerePushedOutLeavesNoReferenceToAnUncountedCluster() throws Exception
    {
        final int cluster = 512;
        final int size = 2 * MIB;
        final SplittableRandom random = new SplittableRandom(33);
        final Path image = dir.resolve("evict-crash.qcow2");
        final Path crashed = dir.resolve("evict-crash-copy.qcow2");
        final byte[] model = new byte[size];
        try (Qcow2Writer writer = Qcow2Writer.create(image, size,
            Qcow2Writer.Options.defaults().withClusterSize(cluster).withL2CacheBytes(cluster)))
        {
            writer.write(0, direct(new byte[cluster], 0, cluster));
            writer.flush();
            // One cached table: every write below to another table's range pushes the previous one out, and
            // the refcount blocks these new clusters need are made after the last flush.
            for (int i = 0; i < 400; i++)
            {
                final int offset = random.nextInt(size / cluster) * cluster;
                final byte[] data = new byte[cluster];
                random.nextBytes(data);
                System.arraycopy(data, 0, model, offset, cluster);
                writer.write(offset, ByteBuffer.wrap(data));
            }
            Files.copy(image, crashed);
        }
        final QemuTools.Result check = QemuTools.run("qemu-img", "check", crashed.toString());
        assertThat(check.exitCode()).as("qemu-img check after a crash:%n%s", check.all()).isIn(0, 3);
        assertThat(check.all()).doesNotContain("ERROR");
        verifyImage(image, model, "after close");
    }

    @Test
    void aCrashBetweenFlushesLeavesTheLastFlushedImagePlusLeaksAtMost() throws Exception
    {
        final int size = 4 * MIB;
        final int cluster = 64 * KIB;
        final byte[] flushed = new byte[size];
        new SplittableRandom(21).nextBytes(flushed);
        Arrays.fill(flushed, 2 * MIB, size, (byte)0);
        final Path image = dir.resolve("crash.qcow2");
        final Path beforeFirstFlush = dir.resolve("crash-early.qcow2");
        final Path crashed = dir.resolve("crash-copy.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults()))
        {
            writer.write(0, direct(flushed, 0, 2 * MIB));
            Files.copy(image, beforeFirstFlush);
            writer.flush();
            // New clusters, a new L2 table's worth of entries and zero clusters, none of it flushed yet.
            final byte[] later = new byte[MIB];
            new SplittableRandom(22).nextBytes(later);
            writer.write(3 * MIB, direct(later, 0, MIB));
            writer.write(2 * MIB + 100, ByteBuffer.wrap(new byte[] {1, 2, 3}));
            writer.writeZeroes(0, cluster, true);
            // What the file holds if the process dies now.
            Files.copy(image, crashed);
        }
        // An image never flushed has no header: no tool takes it for qcow2.
        assertThat(Qcow2Reader.isQcow2(beforeFirstFlush)).isFalse();
        assertThat(QemuTools.ok("qemu-img", "info", beforeFirstFlush.toString()).stdout()).contains("file format: raw");
        final QemuTools.Result check = QemuTools.run("qemu-img", "check", crashed.toString());
        assertThat(check.exitCode()).as("qemu-img check after a crash:%n%s", check.all()).isIn(0, 3);
        assertThat(check.all()).doesNotContain("ERROR");
        assertThat(QemuTools.convertToRaw(crashed, dir)).isEqualTo(flushed);
        try (Qcow2Reader reader = Qcow2Reader.open(crashed))
        {
            assertThat(readAll(reader)).isEqualTo(flushed);
        }
        QemuTools.ok("qemu-img", "check", "-r", "leaks", crashed.toString());
        QemuTools.check(crashed);
    }

    @Test
    void refusesBadArguments() throws Exception
    {
        final Qcow2Writer.Options defaults = Qcow2Writer.Options.defaults();
        for (final int bad : new int[] {256, 1000, 4 * MIB})
        {
            assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), MIB, defaults.withClusterSize(bad)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cluster size " + bad);
        }
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), 1000, defaults))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("multiple of 512");
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), -512, defaults))
            .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), 1L << 50, defaults.withClusterSize(512)))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("L1 table");
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), MIB, defaults.withBacking("x", "vmdk")))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("vmdk");
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), MIB,
            defaults.withBacking("missing.qcow2", "qcow2")))
            .isInstanceOf(Qcow2FormatException.class).hasMessageContaining("missing.qcow2");
        Files.write(dir.resolve("base.raw"), new byte[4096]);
        final String longName = "./".repeat(200) + "base.raw";
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("b.qcow2"), MIB,
            defaults.withClusterSize(512).withBacking(longName, "raw")))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cluster size 512");
        assertThat(dir.resolve("b.qcow2")).doesNotExist();
        Files.write(dir.resolve("exists.qcow2"), new byte[1]);
        assertThatThrownBy(() -> Qcow2Writer.create(dir.resolve("exists.qcow2"), MIB, defaults))
            .isInstanceOf(FileAlreadyExistsException.class);

        final Path image = dir.resolve("ok.qcow2");
        final Qcow2Writer writer = Qcow2Writer.create(image, MIB, defaults);
        assertThatThrownBy(() -> writer.write(MIB - 1, ByteBuffer.allocate(2)))
            .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside image");
        assertThatThrownBy(() -> writer.read(-1, ByteBuffer.allocate(2))).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> writer.writeZeroes(0, MIB + 1, true)).isInstanceOf(IllegalArgumentException.class);
        writer.close();
        writer.close();
        assertThatThrownBy(() -> writer.write(0, ByteBuffer.allocate(2))).isInstanceOf(IOException.class);
        QemuTools.check(image);
    }

    @Test
    void emptyImageAndAnImageNeverFlushedBeforeClose() throws Exception
    {
        final Path image = dir.resolve("empty.qcow2");
        Qcow2Writer.create(image, 10 * MIB + 512, Qcow2Writer.Options.defaults()).close();
        verifyImage(image, new byte[10 * MIB + 512], "empty");
        final QemuTools.Result info = QemuTools.ok("qemu-img", "info", image.toString());
        assertThat(info.stdout()).contains("compat: 1.1").contains("cluster_size: 65536");
    }

    @Test
    void writerOnAFileReadsSameAsRawStore() throws Exception
    {
        // The two store kinds agree byte for byte under the same operations.
        final int size = 2 * MIB;
        final long seed = System.nanoTime();
        final byte[] model = new byte[size];
        final Path image = dir.resolve("same.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults().withClusterSize(4096));
             RawFileStore raw = RawFileStore.create(dir.resolve("same.raw"), size))
        {
            final SplittableRandom random = new SplittableRandom(seed);
            randomOperations(writer, model, random, 80);
            raw.write(0, ByteBuffer.wrap(model));
            assertThat(readAll(writer)).as("seed %d", seed).isEqualTo(readAll(raw));
        }
    }

    @Test
    void kernelCopyFromARawFileWritesWholeClustersThatQemuReads() throws Exception
    {
        final int cluster = 64 << 10;
        final long size = 3L * (1 << 20) + 12_288;
        final byte[] data = new byte[(int)size];
        new java.util.SplittableRandom(11).nextBytes(data);
        final Path raw = dir.resolve("kernel-src.raw");
        final Path image = dir.resolve("kernel.qcow2");
        try (dev.tidemark.io.RawFileStore src = dev.tidemark.io.RawFileStore.create(raw, size);
            Qcow2Writer writer = Qcow2Writer.create(image, size, Qcow2Writer.Options.defaults().withClusterSize(cluster)))
        {
            src.write(0, java.nio.ByteBuffer.wrap(data));
            assertThat(writer.copyFrom(src, 4096, cluster)).as("a range inside a cluster is left alone").isZero();
            assertThat(writer.copyFrom(src, cluster, cluster - 512)).as("a range ending inside a cluster").isZero();
            final long first = writer.copyFrom(src, 2L * cluster, 5L * cluster);
            // The image's last cluster is short: a range ending at the image's end counts as whole clusters.
            final long tail = writer.copyFrom(src, size - 12_288 - cluster, cluster + 12_288);
            if (src.kernelCopySupported() && first > 0)
            {
                assertThat(first).isEqualTo(5L * cluster);
                assertThat(tail).isEqualTo(cluster + 12_288);
            }
            else
            {
                writer.write(2L * cluster, java.nio.ByteBuffer.wrap(data, 2 * cluster, 5 * cluster));
                writer.write(size - 12_288 - cluster, java.nio.ByteBuffer.wrap(data, (int)(size - 12_288 - cluster),
                    cluster + 12_288));
            }
            // Written in place over clusters the kernel filled: the in-place path must find them.
            writer.write(3L * cluster + 100, java.nio.ByteBuffer.wrap(data, 3 * cluster + 100, 1000));
        }
        final byte[] expected = new byte[(int)size];
        System.arraycopy(data, 2 * cluster, expected, 2 * cluster, 5 * cluster);
        System.arraycopy(data, (int)(size - 12_288 - cluster), expected, (int)(size - 12_288 - cluster),
            cluster + 12_288);
        QemuTools.check(image);
        assertThat(QemuTools.convertToRaw(image, dir)).isEqualTo(expected);
    }
}
