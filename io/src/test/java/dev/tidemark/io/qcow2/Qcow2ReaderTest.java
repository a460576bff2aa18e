package dev.tidemark.io.qcow2;

import static dev.tidemark.io.testing.Stores.readAll;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class Qcow2ReaderTest
{
    private static final int KIB = 1024;
    private static final int MIB = 1024 * KIB;

    @TempDir
    Path dir;

    /** The guest bytes as a test expects them, with the qemu-io commands that make them. */
    private static final class Model
    {
        final byte[] bytes;
        final List<String> commands = new ArrayList<>();

        Model(final int size)
        {
            bytes = new byte[size];
        }

        Model(final Model below)
        {
            bytes = below.bytes.clone();
        }

        Model write(final int pattern, final int offset, final int length)
        {
            commands.add("write -P " + pattern + " " + offset + " " + length);
            Arrays.fill(bytes, offset, offset + length, (byte)pattern);
            return this;
        }

        Model zero(final int offset, final int length)
        {
            commands.add("write -z " + offset + " " + length);
            Arrays.fill(bytes, offset, offset + length, (byte)0);
            return this;
        }

        Model discard(final int offset, final int length)
        {
            commands.add("discard " + offset + " " + length);
            Arrays.fill(bytes, offset, offset + length, (byte)0);
            return this;
        }

        void applyWithQemuIo(final Path image, final String format) throws Exception
        {
            final List<String> args = new ArrayList<>(List.of("-f", format));
            for (final String command : commands)
            {
                args.add("-c");
                args.add(command);
            }
            args.add(image.toString());
            QemuTools.ok("qemu-io", args.toArray(new String[0]));
        }
    }

    private void assertReadsAs(final Path image, final byte[] expected) throws Exception
    {
        assertThat(QemuTools.convertToRaw(image, dir)).as("qemu's view of %s", image).isEqualTo(expected);
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(readAll(reader)).as("Qcow2Reader of %s", image).isEqualTo(expected);
            // Unaligned reads across cluster and run boundaries.
            final SplittableRandom random = new SplittableRandom(expected.length);
            for (int i = 0; i < 50; i++)
            {
                final int offset = random.nextInt(expected.length);
                final int length = random.nextInt(Math.min(expected.length - offset, 300 * KIB) + 1);
                final ByteBuffer part = ByteBuffer.allocate(length);
                reader.read(offset, part);
                assertThat(part.array()).as("read at %d length %d", offset, length)
                    .isEqualTo(Arrays.copyOfRange(expected, offset, offset + length));
            }
            final List<QemuTools.MapExtent> ours = new ArrayList<>();
            reader.forEachAllocationExtent(0, reader.size(),
                (o, l, a, z) -> ours.add(new QemuTools.MapExtent(o, l, a, z)));
            assertThat(ours).as("block status of %s vs qemu-img map", image).isEqualTo(QemuTools.map(image));
        }
    }

    private static Model sampleWrites(final int size)
    {
        return new Model(size)
            .write(0xab, 0, 64 * KIB)
            .write(0xcd, 100 * KIB, 3 * KIB)
            .write(0x42, 1000, 7 * 512)
            .write(0x11, MIB, 256 * KIB)
            .zero(MIB, 128 * KIB)
            .write(0x77, size - 4096, 4096);
    }

    @ParameterizedTest(name = "cluster size {0}")
    @ValueSource(ints = {512, 4096, 65536, 2 * 1024 * 1024})
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void readsWhatQemuIoWrote(final int clusterSize) throws Exception
    {
        final int size = 5 * MIB;
        final Path image = dir.resolve("a.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=" + clusterSize,
            image.toString(), Integer.toString(size));
        final Model model = sampleWrites(size);
        model.applyWithQemuIo(image, "qcow2");
        assertReadsAs(image, model.bytes);
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.version()).isEqualTo(3);
            assertThat(reader.clusterSize()).isEqualTo(clusterSize);
            assertThat(reader.clusterState(0)).isEqualTo(ClusterState.DATA);
            assertThat(reader.clusterState(3 * MIB)).isEqualTo(ClusterState.UNALLOCATED);
            assertThat(reader.backingFile()).isNull();
            assertThat(reader.chainLength()).isEqualTo(1);
        }
    }

    /**
     * More L2 tables than the reader caches (512-byte clusters: a table covers 32 KiB): tables are pushed out and read
     * again, also by several threads at once, and every read still matches qemu's view.
     */
    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void readsImagesWithMoreL2TablesThanItCaches() throws Exception
    {
        final int cluster = 512;
        final int tables = Qcow2Reader.CACHED_TABLES + 300;
        final int size = tables * 32 * KIB;
        final byte[] expected = new byte[size];
        final SplittableRandom random = new SplittableRandom(55);
        final Path image = dir.resolve("many-tables.qcow2");
        try (Qcow2Writer writer = Qcow2Writer.create(image, size,
            Qcow2Writer.Options.defaults().withClusterSize(cluster)))
        {
            for (int t = 0; t < tables; t++)
            {
                final int offset = t * 32 * KIB + random.nextInt(64) * cluster;
                final byte[] data = new byte[cluster];
                random.nextBytes(data);
                System.arraycopy(data, 0, expected, offset, cluster);
                writer.write(offset, ByteBuffer.wrap(data));
            }
        }
        assertThat(QemuTools.convertToRaw(image, dir)).isEqualTo(expected);
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            final List<Thread> threads = new ArrayList<>();
            final List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int t = 0; t < 3; t++)
            {
                final SplittableRandom mine = new SplittableRandom(100 + t);
                final Thread thread = new Thread(() ->
                {
                    try
                    {
                        for (int i = 0; i < 3000; i++)
                        {
                            final int offset = mine.nextInt(size / cluster) * cluster;
                            final ByteBuffer part = ByteBuffer.allocate(cluster);
                            reader.read(offset, part);
                            assertThat(part.array()).as("read at %d", offset)
                                .isEqualTo(Arrays.copyOfRange(expected, offset, offset + cluster));
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failures.add(ex);
                    }
                });
                thread.start();
                threads.add(thread);
            }
            for (final Thread thread : threads)
            {
                thread.join();
            }
            assertThat(failures).isEmpty();
            assertThat(readAll(reader)).isEqualTo(expected);
        }
    }

    /** An empty 64 TiB image answers at once; a zero cluster is not data; one data cluster anywhere is. */
    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void holdsDataReadsOnlyTheTablesThatExist() throws Exception
    {
        final Path empty = dir.resolve("empty.qcow2");
        QemuTools.ok("qemu-img", "create", "-f", "qcow2", empty.toString(), Long.toString(64L << 40));
        try (Qcow2Reader reader = Qcow2Reader.open(empty))
        {
            assertThat(reader.holdsData()).isFalse();
        }
        final Path image = dir.resolve("some.qcow2");
        QemuTools.ok("qemu-img", "create", "-f", "qcow2", image.toString(), Long.toString(64L << 30));
        QemuTools.ok("qemu-io", "-f", "qcow2", "-c", "write -z 0 64k", image.toString());
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.holdsData()).as("a zero cluster is not data").isFalse();
        }
        QemuTools.ok("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a " + (40L << 30) + " 4k", image.toString());
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.holdsData()).isTrue();
        }
    }

    @Test
    void readsVersion2Images() throws Exception
    {
        final int size = 3 * MIB;
        final Path image = dir.resolve("v2.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", image.toString(),
            Integer.toString(size));
        final Model model = sampleWrites(size);
        model.applyWithQemuIo(image, "qcow2");
        assertReadsAs(image, model.bytes);
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.version()).isEqualTo(2);
        }
        final Path overlay = dir.resolve("v2-overlay.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "v2.qcow2", "-F", "qcow2",
            overlay.toString());
        final Model top = new Model(model).write(0x99, 64 * KIB + 512, 1024);
        top.applyWithQemuIo(overlay, "qcow2");
        assertReadsAs(overlay, top.bytes);
        try (Qcow2Reader reader = Qcow2Reader.open(overlay))
        {
            assertThat(reader.version()).isEqualTo(2);
            assertThat(reader.backingFormat()).isEqualTo("qcow2");
            assertThat(reader.chainLength()).isEqualTo(2);
        }
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void readsAChainOfQcow2ImagesWithZeroClustersOverBackingData() throws Exception
    {
        final int size = 4 * MIB;
        final Path base = dir.resolve("base.qcow2");
        final Path mid = dir.resolve("mid.qcow2");
        final Path top = dir.resolve("top.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), Integer.toString(size));
        final Model baseModel = new Model(size).write(0x01, 0, 2 * MIB).write(0x02, 3 * MIB, 512 * KIB);
        baseModel.applyWithQemuIo(base, "qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid.toString());
        final Model midModel = new Model(baseModel).write(0x03, 64 * KIB, 64 * KIB).write(0x04, 200 * KIB, 100)
            .zero(MIB, 256 * KIB);
        midModel.applyWithQemuIo(mid, "qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top.toString());
        final Model topModel = new Model(midModel).write(0x05, MIB + 64 * KIB, 64 * KIB).discard(0, 64 * KIB)
            .write(0x06, 3 * MIB + 1, 10);
        topModel.applyWithQemuIo(top, "qcow2");
        assertReadsAs(top, topModel.bytes);
        assertReadsAs(mid, midModel.bytes);
        try (Qcow2Reader reader = Qcow2Reader.open(top))
        {
            assertThat(reader.chainLength()).isEqualTo(3);
            assertThat(reader.backingFile()).isEqualTo("mid.qcow2");
            assertThat(reader.backingFormat()).isEqualTo("qcow2");
            assertThat(reader.clusterState(MIB)).isEqualTo(ClusterState.UNALLOCATED);
        }
    }

    @Test
    void readsRawBackingFilesAndResolvesRelativeNamesAgainstTheImageDirectory() throws Exception
    {
        final int size = 2 * MIB;
        final Path sub = Files.createDirectory(dir.resolve("sub"));
        final Path base = dir.resolve("base.raw");
        final Model baseModel = new Model(size).write(0x21, 0, MIB).write(0x22, MIB + 4096, 4096);
        QemuTools.ok("qemu-img", "create", "-q", "-f", "raw", base.toString(), Integer.toString(size));
        baseModel.applyWithQemuIo(base, "raw");
        final Path top = sub.resolve("top.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "../base.raw", "-F", "raw", top.toString());
        final Model topModel = new Model(baseModel).write(0x23, 512 * KIB, 100).zero(64 * KIB, 64 * KIB);
        topModel.applyWithQemuIo(top, "qcow2");
        assertReadsAs(top, topModel.bytes);

        // A backing file shorter than the image: the rest reads as zeroes.
        final Path bigger = dir.resolve("bigger.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", bigger.toString(),
            Integer.toString(3 * MIB));
        final byte[] expected = Arrays.copyOf(baseModel.bytes, 3 * MIB);
        assertReadsAs(bigger, expected);
    }

    @Test
    void readOnlyAndRangeChecked() throws Exception
    {
        final Path image = dir.resolve("a.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", image.toString(), "1M");
        try (Qcow2Reader reader = Qcow2Reader.open(image))
        {
            assertThat(reader.isReadOnly()).isTrue();
            assertThatThrownBy(() -> reader.write(0, ByteBuffer.allocate(1))).isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(() -> reader.discard(0, 1)).isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(() -> reader.writeZeroes(0, 1, true)).isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(() -> reader.read(MIB, ByteBuffer.allocate(1)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside image");
            assertThatThrownBy(() -> reader.forEachAllocationExtent(-1, 5, (o, l, a, z) -> true))
                .isInstanceOf(IllegalArgumentException.class);
        }
    }

    private static void patch(final Path file, final long offset, final byte... bytes) throws IOException
    {
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw"))
        {
            raf.seek(offset);
            raf.write(bytes);
        }
    }

    private Path freshImage(final String name) throws Exception
    {
        final Path image = dir.resolve(name);
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", image.toString(), "4M");
        new Model(4 * MIB).write(0x5a, 0, 64 * KIB).write(0x5b, MIB, 64 * KIB).write(0x5c, 2 * MIB, 64 * KIB)
            .write(0x5d, 3 * MIB, 64 * KIB).applyWithQemuIo(image, "qcow2");
        return image;
    }

    private static void assertRefused(final Path image, final String message)
    {
        assertThatThrownBy(() -> Qcow2Reader.open(image).close()).isInstanceOf(Qcow2FormatException.class)
            .hasMessageContaining(image.toString()).hasMessageContaining(message);
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void refusesBadInputWithClearErrors() throws Exception
    {
        final Path random = dir.resolve("random.img");
        final byte[] noise = new byte[64 * KIB];
        new SplittableRandom(1).nextBytes(noise);
        noise[0] = 0;
        Files.write(random, noise);
        assertRefused(random, "bad magic");
        assertThat(Qcow2Reader.isQcow2(random)).isFalse();
        assertThat(Qcow2Reader.isQcow2(freshImage("probe.qcow2"))).isTrue();

        final Path tiny = dir.resolve("tiny.img");
        Files.write(tiny, new byte[] {0x51, 0x46, 0x49, (byte)0xfb, 0, 0});
        assertRefused(tiny, "too short");

        final Path version = freshImage("version.qcow2");
        patch(version, 4, (byte)0, (byte)0, (byte)0, (byte)4);
        assertRefused(version, "unsupported qcow2 version 4");

        final Path clusterBits = freshImage("bits.qcow2");
        patch(clusterBits, 20, (byte)0, (byte)0, (byte)0, (byte)30);
        assertRefused(clusterBits, "cluster_bits 30");

        final Path corrupt = freshImage("corrupt.qcow2");
        patch(corrupt, 79, (byte)2);
        assertRefused(corrupt, "marked corrupt");

        final Path unknownFeature = freshImage("feature.qcow2");
        patch(unknownFeature, 78, (byte)1);
        assertRefused(unknownFeature, "unknown incompatible features");

        final Path l1Beyond = freshImage("l1.qcow2");
        patch(l1Beyond, 40, (byte)0, (byte)0, (byte)0, (byte)1, (byte)0, (byte)0, (byte)0, (byte)0);
        assertRefused(l1Beyond, "L1 table at offset");

        final Path l1Reserved = freshImage("l1reserved.qcow2");
        final long l1Offset;
        try (Qcow2Reader reader = Qcow2Reader.open(l1Reserved))
        {
            assertThat(reader.size()).isEqualTo(4 * MIB);
        }
        try (RandomAccessFile raf = new RandomAccessFile(l1Reserved.toFile(), "r"))
        {
            raf.seek(40);
            l1Offset = raf.readLong();
        }
        patch(l1Reserved, l1Offset + 7, (byte)0x01);
        assertRefused(l1Reserved, "reserved bits");

        final Path truncated = freshImage("truncated.qcow2");
        try (RandomAccessFile raf = new RandomAccessFile(truncated.toFile(), "rw"))
        {
            raf.setLength(raf.length() - 128 * KIB);
        }
        assertRefused(truncated, "beyond the end of the file");

        final Path badHeaderLength = freshImage("hl.qcow2");
        patch(badHeaderLength, 100, (byte)0, (byte)0, (byte)0, (byte)13);
        assertRefused(badHeaderLength, "header_length 13");

        final Path raw = dir.resolve("r.raw");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "raw", raw.toString(), "1M");
        new Model(MIB).write(7, 0, 64 * KIB).applyWithQemuIo(raw, "raw");
        final Path compressed = dir.resolve("compressed.qcow2");
        QemuTools.ok("qemu-img", "convert", "-c", "-O", "qcow2", raw.toString(), compressed.toString());
        assertRefused(compressed, "compressed cluster at guest offset 0");

        // Legacy AES (LUKS creation times PBKDF iterations and fails on a loaded machine), then LUKS's method.
        final Path encrypted = dir.resolve("aes.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc", "-o",
            "encrypt.format=aes,encrypt.key-secret=sec0", encrypted.toString(), "1M");
        assertRefused(encrypted, "encrypted image (crypt_method 1)");
        patch(encrypted, 35, (byte)2);
        assertRefused(encrypted, "encrypted image (crypt_method 2)");

        final Path external = dir.resolve("external.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.resolve("external.raw"), external.toString(),
            "1M");
        assertRefused(external, "external data file");

        final Path extendedL2 = dir.resolve("extl2.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", extendedL2.toString(), "1M");
        assertRefused(extendedL2, "extended L2");

        final Path orphan = dir.resolve("orphan.qcow2");
        final Path gone = dir.resolve("gone.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", gone.toString(), "1M");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", orphan.toString());
        Files.delete(gone);
        assertRefused(orphan, "does not exist");

        final Path loopA = dir.resolve("loopA.qcow2");
        final Path loopB = dir.resolve("loopB.qcow2");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", loopA.toString(), "1M");
        QemuTools.ok("qemu-img", "create", "-q", "-f", "qcow2", "-b", "loopA.qcow2", "-F", "qcow2", loopB.toString());
        QemuTools.ok("qemu-img", "rebase", "-u", "-b", "loopB.qcow2", "-F", "qcow2", loopA.toString());
        assertThatThrownBy(() -> Qcow2Reader.open(loopB).close()).isInstanceOf(Qcow2FormatException.class)
            .hasMessageContaining("loops");
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void mutatedImagesOpenAndReadOrFailWithAFormatError() throws Exception
    {
        final Path original = freshImage("original.qcow2");
        final byte[] bytes = Files.readAllBytes(original);
        final long l1Offset = ByteBuffer.wrap(bytes, 40, 8).getLong();
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        int refused = 0;
        int opened = 0;
        final Path mutant = dir.resolve("mutant.qcow2");
        for (int round = 0; round < 300; round++)
        {
            final byte[] copy = bytes.clone();
            final int flips = 1 + random.nextInt(3);
            for (int f = 0; f < flips; f++)
            {
                // Header fields, the L1 table, or anywhere in the metadata clusters.
                final int where = switch (random.nextInt(3))
                {
                    case 0 -> random.nextInt(120);
                    case 1 -> (int)l1Offset + random.nextInt(16);
                    default -> random.nextInt(Math.min(copy.length, 6 * 64 * KIB));
                };
                copy[where] ^= (byte)(1 << random.nextInt(8));
            }
            Files.write(mutant, copy);
            try (Qcow2Reader reader = Qcow2Reader.open(mutant))
            {
                final long length = Math.min(reader.size(), 8 * MIB);
                final ByteBuffer buffer = ByteBuffer.allocate((int)length);
                reader.read(0, buffer);
                reader.forEachAllocationExtent(0, length, (o, l, a, z) -> true);
                opened++;
            }
            catch (final Qcow2FormatException ex)
            {
                refused++;
            }
            catch (final Throwable ex)
            {
                throw new AssertionError("seed " + seed + " round " + round + ": neither a clean read nor a "
                    + "Qcow2FormatException", ex);
            }
        }
        assertThat(refused).as("seed %d", seed).isPositive();
        assertThat(opened + refused).isEqualTo(300);
    }
}
