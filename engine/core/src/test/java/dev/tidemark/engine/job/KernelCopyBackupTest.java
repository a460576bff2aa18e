package dev.tidemark.engine.job;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Both copy methods of the pump (the kernel's {@code copy_file_range} into raw files and qcow2 clusters, and the
 * pooled buffer): each copies exactly the ranges it should, keeps the source's holes as holes (and zeroes whatever
 * the target held there), and a failed backup loses no bit (I4). Point in time under load (I3) for the kernel path is
 * {@link BackupPointInTimeTest}, whose raw targets take it by default.
 */
@Timeout(60)
class KernelCopyBackupTest extends DiskTestSupport
{
    private static final int SIZE = 8 << 20;
    private static final int CHUNK = 64 << 10;

    private final SplittableRandom random = new SplittableRandom(seed);
    /** What the target must hold after the test's backups. */
    private final byte[] expected = new byte[SIZE];

    /**
     * Creates {@code disk.raw} with random non-zero bytes at each {offset, length} of {@code ranges}, also put into
     * {@link #expected}, and holes everywhere else.
     */
    private RawFileStore sparseDisk(final long[][] ranges) throws Exception
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        for (final long[] range : ranges)
        {
            final byte[] data = new byte[(int)range[1]];
            for (int i = 0; i < data.length; i++)
            {
                data[i] = (byte)(1 + random.nextInt(255));
            }
            System.arraycopy(data, 0, expected, (int)range[0], data.length);
            store.write(range[0], ByteBuffer.wrap(data));
        }
        return store;
    }

    /** Awaits the started backup's success; it copied through the kernel exactly when asked and possible. */
    private void assertSucceededWithCopyMethod(final BackupStartAction start, final CopyMethod method,
        final RawFileStore source)
    {
        awaitSucceeded(start);
        assertThat(start.job().usesKernelCopy()).isEqualTo(method == CopyMethod.KERNEL && source.kernelCopySupported());
    }

    private static List<long[]> holes(final RawFileStore store) throws Exception
    {
        final List<long[]> holes = new ArrayList<>();
        store.forEachAllocationExtent(0, store.size(), (off, len, allocated, zero) ->
        {
            if (!allocated)
            {
                holes.add(new long[] {off, len});
            }
            return true;
        });
        return holes;
    }

    @ParameterizedTest
    @EnumSource(CopyMethod.class)
    void fullBackupCopiesEachDataRangeToItsPlaceAndZeroesTheHoles(final CopyMethod method) throws Exception
    {
        // Data that starts and ends inside chunks and copy runs, one range across a run boundary, the last page.
        final RawFileStore store = sparseDisk(new long[][] {{4096, 8192}, {CHUNK + 12288, 3 * CHUNK},
            {(256 << 10) - 4096, 8192}, {(3 << 20) + 20480, 200 << 10}, {SIZE - 4096, 4096}});
        final List<long[]> sourceHoles = holes(store);
        assertThat(sourceHoles).as("the source must have holes for this test to mean anything").hasSizeGreaterThan(3);
        openDisk(store);

        try (RawFileStore target = RawFileStore.create(dir.resolve("full.raw"), SIZE))
        {
            // Garbage everywhere: a hole the pump skipped instead of zeroing would show it.
            final ByteBuffer garbage = ByteBuffer.allocateDirect(1 << 20);
            while (garbage.hasRemaining())
            {
                garbage.put((byte)0xEE);
            }
            for (long at = 0; at < SIZE; at += 1 << 20)
            {
                target.write(at, garbage.clear());
            }
            final BackupStartAction start = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full").withMaxRunBytes(256 << 10).withCopyMethod(method),
                target, null);
            disk.transaction(start);
            assertSucceededWithCopyMethod(start, method, store);
            Workload.assertSameContent(expected, Workload.read(target), "full backup (seed " + seed + ")");
            final List<long[]> targetHoles = holes(target);
            // The kernel path keeps holes as the source reports them; the buffer path where a whole copy piece
            // (256 KiB here) reads as zeroes.
            final long grain = method == CopyMethod.KERNEL ? 1 : 256 << 10;
            for (final long[] hole : sourceHoles)
            {
                final long from = (hole[0] + grain - 1) / grain * grain;
                final long to = (hole[0] + hole[1]) / grain * grain;
                if (to > from)
                {
                    assertThat(targetHoles).as("source hole [%d, %d) stays a hole in the target", from, to)
                        .anySatisfy(h -> assertThat(h[0] <= from && h[0] + h[1] >= to).isTrue());
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(CopyMethod.class)
    void incrementalCopiesOnlyTheDirtyChunksAndAFailedOneLosesNoBit(final CopyMethod method) throws Exception
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        final byte[] base = Workload.fill(store, seed);
        openDisk(store);
        disk.transaction(BitmapActions.add("b0"));
        final boolean[] dirty = new boolean[SIZE / CHUNK];
        for (int i = 0; i < 40; i++)
        {
            final int chunk = random.nextInt(SIZE / CHUNK);
            final int within = random.nextInt(CHUNK / 4096) * 4096;
            final int length = 4096 * (1 + random.nextInt(Math.min(8, (CHUNK - within) / 4096)));
            final byte[] data = new byte[length];
            random.nextBytes(data);
            disk.write((long)chunk * CHUNK + within, ByteBuffer.wrap(data), false);
            System.arraycopy(data, 0, base, chunk * CHUNK + within, length);
            dirty[chunk] = true;
        }
        for (int c = 0; c < dirty.length; c++)
        {
            if (dirty[c])
            {
                System.arraycopy(base, c * CHUNK, expected, c * CHUNK, CHUNK);
            }
        }
        final long dirtyCount = disk.bitmaps().query("b0").count();

        // A closed target: the kernel copy refuses, the buffer path reports the target error, the job fails.
        final RawFileStore closed = RawFileStore.create(dir.resolve("closed.raw"), SIZE);
        closed.close();
        final BackupStartAction failing = new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.INCREMENTAL)
            .withJobId("failing").withBitmap("b0", BitmapMode.ON_SUCCESS).withCopyMethod(method), closed, null);
        disk.transaction(failing);
        awaitGone(failing.job());
        assertThat(events.last("failing", "BLOCK_JOB_COMPLETED").data()).containsKey("error");
        assertThat(disk.bitmaps().query("b0").count()).as("bits after the failed backup").isEqualTo(dirtyCount);

        try (RawFileStore target = RawFileStore.create(dir.resolve("inc.raw"), SIZE))
        {
            final BackupStartAction start = new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.INCREMENTAL)
                .withJobId("inc").withBitmap("b0", BitmapMode.ON_SUCCESS).withMaxRunBytes(128 << 10)
                .withCopyMethod(method), target, null);
            disk.transaction(start);
            awaitSucceeded(start);
            // Clean chunks stay zero in the fresh target: nothing outside the dirty chunks was copied.
            Workload.assertSameContent(expected, Workload.read(target), "incremental (seed " + seed + ")");
            assertThat(disk.bitmaps().query("b0").count()).isZero();
        }
    }

    @ParameterizedTest
    @EnumSource(CopyMethod.class)
    void fullAndIncrementalBackupsIntoQcow2ThroughTheKernelReadBackAsTheDisk(final CopyMethod method) throws Exception
    {
        final RawFileStore store = sparseDisk(new long[][] {{4096, 8192}, {CHUNK + 12288, 5 * CHUNK},
            {(5 << 20) + 20480, 300 << 10}});
        openDisk(store);
        final Path fullImage = dir.resolve("full.qcow2");
        try (dev.tidemark.io.qcow2.Qcow2Writer target = BackupTargets.createQcow2(fullImage, SIZE, CHUNK))
        {
            final BackupStartAction start = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full").withCopyMethod(method), target, null);
            disk.transaction(List.of(BitmapActions.add("b0"), start));
            assertSucceededWithCopyMethod(start, method, store);
        }
        try (dev.tidemark.io.qcow2.Qcow2Reader back = dev.tidemark.io.qcow2.Qcow2Reader.open(fullImage))
        {
            Workload.assertSameContent(expected, Workload.read(back), "full qcow2 backup (seed " + seed + ")");
        }
        for (int i = 0; i < 30; i++)
        {
            final long at = (long)random.nextInt(SIZE / 4096) * 4096;
            final byte[] data = new byte[4096];
            random.nextBytes(data);
            disk.write(at, ByteBuffer.wrap(data), false);
            System.arraycopy(data, 0, expected, (int)at, 4096);
        }
        final Path incImage = dir.resolve("inc.qcow2");
        try (dev.tidemark.io.qcow2.Qcow2Writer target = BackupTargets.createQcow2(incImage, SIZE, CHUNK, fullImage))
        {
            final BackupStartAction start = new BackupStartAction(manager, BackupOptions.of("vda",
                SyncMode.INCREMENTAL).withJobId("inc").withBitmap("b0", BitmapMode.ON_SUCCESS).withCopyMethod(method),
                target, null);
            disk.transaction(start);
            awaitSucceeded(start);
        }
        try (dev.tidemark.io.qcow2.Qcow2Reader back = dev.tidemark.io.qcow2.Qcow2Reader.open(incImage))
        {
            Workload.assertSameContent(expected, Workload.read(back), "full + incremental qcow2 (seed " + seed + ")");
        }
    }
}
