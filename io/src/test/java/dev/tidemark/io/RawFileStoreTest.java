package dev.tidemark.io;

import static dev.tidemark.io.testing.Stores.readAll;

import dev.tidemark.io.testing.Workers;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class RawFileStoreTest
{
    private static final int KIB = 1024;
    private static final int MIB = 1024 * KIB;

    @TempDir
    Path dir;

    /** One extent as the store reported it. */
    record Extent(long offset, long length, boolean allocated, boolean zero)
    {
    }

    static List<Extent> extents(final BlockStore store, final long offset, final long length) throws IOException
    {
        final List<Extent> out = new ArrayList<>();
        store.forEachAllocationExtent(offset, length, (o, l, a, z) -> out.add(new Extent(o, l, a, z)));
        return out;
    }

    static ByteBuffer direct(final byte[] bytes)
    {
        final ByteBuffer buffer = ByteBuffer.allocateDirect(bytes.length);
        buffer.put(bytes).flip();
        return buffer;
    }

    @Test
    void createsSparseFileThatReadsAsZeroesAndIsOneHole() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(dir.resolve("a.raw"), 8 * MIB))
        {
            assertThat(store.size()).isEqualTo(8 * MIB);
            assertThat(store.isReadOnly()).isFalse();
            assertThat(readAll(store)).isEqualTo(new byte[8 * MIB]);
            assertThat(store.allocationQuerySupported()).isTrue();
            assertThat(extents(store, 0, 8 * MIB)).containsExactly(new Extent(0, 8 * MIB, false, true));
        }
    }

    @Test
    void runByRunWalksOfADataRegionStayExactAcrossLaterWritesAndPunchedHoles() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(dir.resolve("runs.raw"), 8 * MIB))
        {
            final byte[] data = new byte[4 * MIB];
            Arrays.fill(data, (byte)0x33);
            store.write(0, direct(data));
            // A backup asks run by run; the first answer is remembered for the rest of the region.
            for (int run = 0; run < 4; run++)
            {
                assertThat(extents(store, (long)run * MIB, MIB)).containsExactly(
                    new Extent((long)run * MIB, MIB, true, false));
            }
            // Data written after the region was remembered joins it in one extent.
            store.write(4 * MIB, direct(new byte[] {1, 2, 3}));
            assertThat(extents(store, 0, 8 * MIB)).containsExactly(
                new Extent(0, 4 * MIB + 4 * KIB, true, false),
                new Extent(4 * MIB + 4 * KIB, 4 * MIB - 4 * KIB, false, true));
            // A hole punched inside the remembered region shows at once.
            assertThat(extents(store, 0, MIB)).containsExactly(new Extent(0, MIB, true, false));
            store.discard(MIB, MIB);
            assertThat(extents(store, MIB, MIB)).containsExactly(new Extent(MIB, MIB, false, true));
            assertThat(extents(store, 0, 8 * MIB)).containsExactly(
                new Extent(0, MIB, true, false),
                new Extent(MIB, MIB, false, true),
                new Extent(2 * MIB, 2 * MIB + 4 * KIB, true, false),
                new Extent(4 * MIB + 4 * KIB, 4 * MIB - 4 * KIB, false, true));
        }
    }

    @Test
    void writesShowAsDataExtentsAndDiscardPunchesThemOut() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(dir.resolve("a.raw"), 4 * MIB))
        {
            final byte[] data = new byte[64 * KIB];
            Arrays.fill(data, (byte)0x5a);
            store.write(MIB, direct(data));
            store.write(3 * MIB, direct(data));
            assertThat(extents(store, 0, 4 * MIB)).containsExactly(
                new Extent(0, MIB, false, true),
                new Extent(MIB, 64 * KIB, true, false),
                new Extent(MIB + 64 * KIB, 2 * MIB - 64 * KIB, false, true),
                new Extent(3 * MIB, 64 * KIB, true, false),
                new Extent(3 * MIB + 64 * KIB, MIB - 64 * KIB, false, true));
            // A walk over a sub-range is clipped to it.
            assertThat(extents(store, MIB + 4 * KIB, 8 * KIB)).containsExactly(
                new Extent(MIB + 4 * KIB, 8 * KIB, true, false));

            store.discard(MIB, 64 * KIB);
            assertThat(store.punchHoleSupported()).isTrue();
            store.writeZeroes(3 * MIB + 32 * KIB, 32 * KIB, true);
            assertThat(extents(store, 0, 4 * MIB)).containsExactly(
                new Extent(0, 3 * MIB, false, true),
                new Extent(3 * MIB, 32 * KIB, true, false),
                new Extent(3 * MIB + 32 * KIB, MIB - 32 * KIB, false, true));
            final byte[] expected = new byte[4 * MIB];
            Arrays.fill(expected, 3 * MIB, 3 * MIB + 32 * KIB, (byte)0x5a);
            assertThat(readAll(store)).isEqualTo(expected);
        }
    }

    @Test
    void writeZeroesWithoutUnmapAndPartialBlocksReadAsZero() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(dir.resolve("a.raw"), MIB))
        {
            final byte[] data = new byte[MIB];
            new SplittableRandom(1).nextBytes(data);
            store.write(0, direct(data));
            store.writeZeroes(1000, 9000, false);
            store.writeZeroes(50_001, 70_000, true);
            Arrays.fill(data, 1000, 10_000, (byte)0);
            Arrays.fill(data, 50_001, 120_001, (byte)0);
            assertThat(readAll(store)).isEqualTo(data);
        }
    }

    @Test
    void randomOperationsMatchAByteArrayModelWithAndWithoutNativeCalls() throws IOException
    {
        final long seed = System.nanoTime();
        for (final boolean nativeCalls : new boolean[] {true, false})
        {
            final SplittableRandom random = new SplittableRandom(seed);
            final int size = 3 * MIB + 777;
            final byte[] model = new byte[size];
            try (RawFileStore store = RawFileStore.create(dir.resolve("m" + nativeCalls + ".raw"), size))
            {
                if (!nativeCalls)
                {
                    store.disableNativeCallsForTest();
                }
                for (int op = 0; op < 300; op++)
                {
                    final int offset = random.nextInt(size);
                    final int length = random.nextInt(Math.min(size - offset, 200 * KIB) + 1);
                    switch (random.nextInt(4))
                    {
                        case 0, 1 ->
                        {
                            final byte[] data = new byte[length];
                            random.nextBytes(data);
                            System.arraycopy(data, 0, model, offset, length);
                            store.write(offset, random.nextBoolean() ? direct(data) : ByteBuffer.wrap(data));
                        }
                        case 2 ->
                        {
                            store.discard(offset, length);
                            Arrays.fill(model, offset, offset + length, (byte)0);
                        }
                        default ->
                        {
                            store.writeZeroes(offset, length, random.nextBoolean());
                            Arrays.fill(model, offset, offset + length, (byte)0);
                        }
                    }
                }
                assertThat(readAll(store)).as("seed %d native %s", seed, nativeCalls).isEqualTo(model);
                final List<Extent> extents = extents(store, 0, size);
                long expected = 0;
                for (final Extent extent : extents)
                {
                    assertThat(extent.offset()).as("seed %d: contiguous", seed).isEqualTo(expected);
                    assertThat(extent.length()).isPositive();
                    if (!extent.allocated())
                    {
                        final int from = (int)extent.offset();
                        assertThat(Arrays.copyOfRange(model, from, from + (int)extent.length()))
                            .as("seed %d: hole at %d", seed, from).isEqualTo(new byte[(int)extent.length()]);
                    }
                    expected += extent.length();
                }
                assertThat(expected).isEqualTo(size);
                if (!nativeCalls)
                {
                    assertThat(extents).containsExactly(new Extent(0, size, true, false));
                    assertThat(store.punchHoleSupported()).isFalse();
                }
            }
        }
    }

    @Test
    void refusesOutOfRangeAndNegativeArgumentsBeforeAnyIo() throws IOException
    {
        try (RawFileStore store = RawFileStore.create(dir.resolve("a.raw"), 64 * KIB))
        {
            final ByteBuffer buffer = ByteBuffer.allocateDirect(4096);
            assertThatThrownBy(() -> store.read(-1, buffer)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("offset -1");
            assertThatThrownBy(() -> store.read(64 * KIB - 4095, buffer))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("size 65536");
            assertThatThrownBy(() -> store.write(Long.MAX_VALUE - 10, buffer))
                .isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> store.discard(0, -5)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("length -5");
            assertThatThrownBy(() -> store.writeZeroes(60 * KIB, 8 * KIB, true))
                .isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> store.forEachAllocationExtent(0, 64 * KIB + 1, (o, l, a, z) -> true))
                .isInstanceOf(IllegalArgumentException.class);
            assertThat(buffer.position()).isZero();
            // Exactly at the end is fine, and an empty range at the end too.
            store.read(60 * KIB, buffer);
            store.read(64 * KIB, ByteBuffer.allocate(0));
        }
        assertThatThrownBy(() -> RawFileStore.create(dir.resolve("neg.raw"), -1))
            .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> RawFileStore.create(dir.resolve("a.raw"), 10))
            .isInstanceOf(FileAlreadyExistsException.class);
        assertThatThrownBy(() -> RawFileStore.open(dir.resolve("missing.raw")))
            .isInstanceOf(NoSuchFileException.class);
    }

    @Test
    void readOnlyStoreRefusesWrites() throws IOException
    {
        final Path file = dir.resolve("a.raw");
        RawFileStore.create(file, 8192).close();
        try (RawFileStore store = RawFileStore.open(file, RawFileStore.Option.READ_ONLY))
        {
            assertThat(store.isReadOnly()).isTrue();
            assertThatThrownBy(() -> store.write(0, ByteBuffer.allocate(10)))
                .isInstanceOf(IllegalStateException.class).hasMessageContaining("read-only");
            assertThatThrownBy(() -> store.discard(0, 10)).isInstanceOf(IllegalStateException.class);
            assertThatThrownBy(() -> store.writeZeroes(0, 10, false)).isInstanceOf(IllegalStateException.class);
            store.read(0, ByteBuffer.allocate(8192));
        }
    }

    @Test
    void endOfFileInsideTheStoreReadsAsZeroes() throws IOException
    {
        final Path file = dir.resolve("a.raw");
        try (RawFileStore store = RawFileStore.create(file, 256 * KIB))
        {
            final byte[] data = new byte[256 * KIB];
            Arrays.fill(data, (byte)7);
            store.write(0, direct(data));
            // Someone truncates the file behind the store's back.
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw"))
            {
                raf.setLength(100_000);
            }
            final byte[] expected = new byte[256 * KIB];
            Arrays.fill(expected, 0, 100_000, (byte)7);
            assertThat(readAll(store)).isEqualTo(expected);
            final List<Extent> extents = extents(store, 0, 256 * KIB);
            assertThat(extents.get(extents.size() - 1))
                .isEqualTo(new Extent(100_000, 256 * KIB - 100_000, false, true));
        }
    }

    @Test
    void directIoWorksOnExt4AndIsRefusedOrFallsBackOnProcfs() throws IOException
    {
        final Path file = dir.resolve("d.raw");
        try (RawFileStore store = RawFileStore.create(file, MIB, RawFileStore.Option.DIRECT))
        {
            assertThat(store.isDirect()).as("O_DIRECT on %s", Files.getFileStore(dir).type()).isTrue();
            final int alignment = store.directAlignment();
            final byte[] data = new byte[2 * alignment];
            new SplittableRandom(3).nextBytes(data);
            // A heap buffer is bounced through an aligned direct buffer.
            store.write(alignment, ByteBuffer.wrap(data));
            final ByteBuffer back = ByteBuffer.allocate(2 * alignment);
            store.read(alignment, back);
            assertThat(back.array()).isEqualTo(data);
            assertThatThrownBy(() -> store.write(100, ByteBuffer.allocateDirect(alignment)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("aligned");
            store.writeZeroes(alignment, alignment, true);
            store.read(alignment, back.clear());
            assertThat(Arrays.copyOf(back.array(), alignment)).containsOnly((byte)0);
        }
        // procfs refuses O_DIRECT with EINVAL (tmpfs accepts it since Linux 6.6, so it cannot serve here).
        final Path proc = Path.of("/proc/version");
        assertThatThrownBy(() -> RawFileStore.open(proc, RawFileStore.Option.READ_ONLY, RawFileStore.Option.DIRECT))
            .isInstanceOf(IOException.class).hasMessageContaining("O_DIRECT refused").hasMessageContaining("proc");
        try (RawFileStore store = RawFileStore.open(proc, RawFileStore.Option.READ_ONLY,
            RawFileStore.Option.PREFER_DIRECT))
        {
            assertThat(store.isDirect()).isFalse();
            assertThat(store.directAlignment()).isEqualTo(1);
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void threadsWritingDisjointRangesAllLand() throws Exception
    {
        final long seed = System.nanoTime();
        final int threads = 8;
        final int slice = 512 * KIB;
        final int size = threads * slice;
        final byte[] model = new byte[size];
        try (RawFileStore store = RawFileStore.create(dir.resolve("c.raw"), size))
        {
            Workers.run(threads, seed, (t, random) ->
            {
                final int index = t;
                for (int op = 0; op < 300; op++)
                {
                    final int offset = index * slice + random.nextInt(slice);
                    final int length = random.nextInt(Math.min(index * slice + slice - offset, 96 * KIB)) + 1;
                    if (random.nextInt(5) == 0)
                    {
                        store.writeZeroes(offset, length, random.nextBoolean());
                        synchronized (model)
                        {
                            Arrays.fill(model, offset, offset + length, (byte)0);
                        }
                        continue;
                    }
                    final byte[] data = new byte[length];
                    random.nextBytes(data);
                    store.write(offset, direct(data));
                    synchronized (model)
                    {
                        System.arraycopy(data, 0, model, offset, length);
                    }
                }
            });
            store.flush();
            synchronized (model)
            {
                assertThat(readAll(store)).as("seed %d", seed).isEqualTo(model);
            }
        }
    }

    @Test
    void closedStoreRefusesCallsAndCloseIsIdempotent() throws IOException
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("a.raw"), 8192);
        store.close();
        store.close();
        assertThatThrownBy(() -> store.read(0, ByteBuffer.allocate(10))).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> store.discard(0, 10)).isInstanceOf(IOException.class);
        assertThatThrownBy(() -> store.forEachAllocationExtent(0, 10, (o, l, a, z) -> true))
            .isInstanceOf(IOException.class);
    }

    @Test
    void kernelCopyMovesExactlyTheRangeAskedForBetweenDifferentOffsets() throws IOException
    {
        final SplittableRandom random = new SplittableRandom(7);
        final byte[] source = new byte[4 * MIB];
        random.nextBytes(source);
        try (RawFileStore src = RawFileStore.create(dir.resolve("src.raw"), 4 * MIB);
            RawFileStore dst = RawFileStore.create(dir.resolve("dst.raw"), 4 * MIB))
        {
            RawFileStore.create(dir.resolve("ro.raw"), MIB).close();
            src.write(0, ByteBuffer.wrap(source));
            final long copied = src.copyTo(12_345, dst, 1_000_003, 2 * MIB + 17);
            final byte[] expected = new byte[4 * MIB];
            System.arraycopy(source, 12_345, expected, 1_000_003, (int)copied);
            final ByteBuffer back = ByteBuffer.allocate(4 * MIB);
            dst.read(0, back);
            // The kernel may refuse (another platform): what it reports copied is exact, and nothing else moved.
            assertThat(copied).isBetween(0L, 2L * MIB + 17);
            assertThat(back.array()).isEqualTo(expected);
            if (src.kernelCopySupported())
            {
                assertThat(copied).isEqualTo(2L * MIB + 17);
            }
            assertThat(src.copyTo(0, dst, 0, 0)).isZero();
            assertThatThrownBy(() -> src.copyTo(4 * MIB - 10, dst, 0, 11)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> src.copyTo(0, dst, 4 * MIB - 10, 11)).isInstanceOf(IllegalArgumentException.class);
            try (RawFileStore ro = RawFileStore.open(dir.resolve("ro.raw"), RawFileStore.Option.READ_ONLY))
            {
                assertThatThrownBy(() -> src.copyTo(0, ro, 0, 10)).isInstanceOf(IllegalStateException.class);
            }
            final RawFileStore gone = RawFileStore.create(dir.resolve("gone.raw"), MIB);
            gone.close();
            assertThat(src.copyTo(0, gone, 0, 10)).as("a closed target copies nothing").isZero();
        }
    }
}
