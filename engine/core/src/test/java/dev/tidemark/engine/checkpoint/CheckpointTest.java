package dev.tidemark.engine.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.bitmap.OpenState;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Checkpoints on one and several disks: catalogue, changed-since, materialise, errors, persistence, durable mode. */
@Timeout(60)
class CheckpointTest
{
    private static final long G = 65536;
    private static final int SIZE = 8 << 20;

    @TempDir
    Path dir;

    private final List<TrackedDisk> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws IOException
    {
        for (final TrackedDisk disk : open)
        {
            disk.close();
        }
    }

    private TrackedDisk open(final String name, final Pipeline pipeline) throws IOException
    {
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new HeapStore(SIZE), dir.resolve(name))
            .withName(name).withPipeline(pipeline));
        open.add(disk);
        return disk;
    }

    private static void write(final TrackedDisk disk, final long offset, final long length) throws IOException
    {
        disk.write(offset, ByteBuffer.allocate((int)length), false);
    }

    private static List<long[]> changed(final TrackedDisk disk, final String checkpoint)
    {
        final List<long[]> out = new ArrayList<>();
        disk.checkpoints().changedSince(checkpoint, 0, disk.size(), (o, l) ->
        {
            out.add(new long[] {o, l});
            return true;
        });
        return out;
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void addWriteListRemove(final Pipeline pipeline) throws IOException
    {
        final TrackedDisk disk = open("d", pipeline);
        assertThat(disk.checkpoints().hasMap()).as("no checkpoint, no map").isFalse();
        assertThat(dir.resolve("d").resolve(DiskCheckpoints.MAP_FILE)).doesNotExist();
        write(disk, 0, 4096);
        disk.transaction(CheckpointActions.add("c1", List.of("d")));
        assertThat(disk.checkpoints().hasMap()).isTrue();
        write(disk, G, 4096);
        write(disk, 5 * G + 10, 2 * G);
        disk.transaction(CheckpointActions.add("c2", List.of("d")));
        write(disk, 100 * G, 512);
        assertThat(changed(disk, "c1")).containsExactly(new long[] {G, G}, new long[] {5 * G, 3 * G},
            new long[] {100 * G, G});
        assertThat(changed(disk, "c2")).containsExactly(new long[] {100 * G, G});
        final List<CheckpointInfo> list = disk.checkpoints().list();
        assertThat(list).extracting(CheckpointInfo::name).containsExactly("c1", "c2");
        assertThat(list).extracting(CheckpointInfo::changedBytes).containsExactly(5 * G, G);
        assertThat(list).extracting(CheckpointInfo::exact).containsExactly(true, true);
        assertThat(list.get(1).epoch()).isEqualTo(list.get(0).epoch() + 1);
        disk.transaction(CheckpointActions.remove("c1"));
        assertThat(disk.checkpoints().checkpoints()).extracting(Checkpoint::name).containsExactly("c2");
        assertThat(Journal.inspect(dir.resolve("d").resolve(Journal.FILE_NAME)).checkpoints()).containsOnlyKeys("c2");
    }

    @Test
    void checkpointsOfSeveralDisksBeginAtOneCutAndAbortTogether() throws IOException
    {
        final TrackedDisk a = open("a", Pipeline.FUSED);
        final TrackedDisk b = open("b", Pipeline.STAGED);
        final Map<TrackedDisk, List<ControlAction>> txn = new LinkedHashMap<>();
        txn.put(a, List.of(CheckpointActions.add("vm1", List.of("a", "b")), BitmapActions.add("inc")));
        txn.put(b, List.of(CheckpointActions.add("vm1", List.of("a", "b"))));
        TrackedDisk.transaction(txn);
        write(a, 0, 4096);
        write(b, 3 * G, 4096);
        assertThat(changed(a, "vm1")).containsExactly(new long[] {0, G});
        assertThat(changed(b, "vm1")).containsExactly(new long[] {3 * G, G});
        assertThat(b.checkpoints().get("vm1").disks()).containsExactly("a", "b");
        final long epochA = a.checkpoints().currentEpoch();
        final Map<TrackedDisk, List<ControlAction>> failing = new LinkedHashMap<>();
        failing.put(a, List.of(CheckpointActions.add("vm2", List.of("a", "b"))));
        failing.put(b, List.of(CheckpointActions.add("vm2", List.of("a", "b")), BitmapActions.remove("nope")));
        assertThatThrownBy(() -> TrackedDisk.transaction(failing)).hasMessage("Dirty bitmap 'nope' not found");
        assertThat(a.checkpoints().checkpoints()).extracting(Checkpoint::name).containsExactly("vm1");
        assertThat(b.checkpoints().checkpoints()).extracting(Checkpoint::name).containsExactly("vm1");
        assertThat(a.checkpoints().currentEpoch()).as("abort restores the epoch").isEqualTo(epochA);
        write(a, 7 * G, 1);
        assertThat(changed(a, "vm1")).containsExactly(new long[] {0, G}, new long[] {7 * G, G});
    }

    @Test
    void badInputIsRefusedWithClearErrorsAndChangesNothing() throws IOException
    {
        final TrackedDisk disk = open("d", Pipeline.FUSED);
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.add("", List.of())))
            .isInstanceOf(EngineException.class).hasMessage("Checkpoint name cannot be empty");
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.add("x".repeat(1024), List.of())))
            .hasMessageStartingWith("Checkpoint name too long: ");
        disk.transaction(CheckpointActions.add("c", List.of()));
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.add("c", List.of())))
            .hasMessage("Checkpoint already exists: c");
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.remove("nope")))
            .hasMessage("Checkpoint 'nope' not found");
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.bitmapFrom("nope", "b", 0, false)))
            .hasMessage("Checkpoint 'nope' not found");
        disk.transaction(BitmapActions.add("b"));
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.bitmapFrom("c", "b", 0, false)))
            .hasMessage("Bitmap already exists: b");
        assertThatThrownBy(() -> disk.transaction(CheckpointActions.bitmapFrom("c", "g", 1000, false)))
            .hasMessage("Granularity must be power of 2 and at least 512");
        assertThatThrownBy(() -> disk.checkpoints().changedSince("c", 0, SIZE + 1L, (o, l) -> true))
            .hasMessageContaining("outside the disk");
        assertThatThrownBy(() -> disk.checkpoints().configure(4096, 99))
            .hasMessageContaining("already has granularity");
        assertThat(disk.bitmaps().query()).hasSize(1);
        assertThat(disk.checkpoints().checkpoints()).extracting(Checkpoint::name).containsExactly("c");
    }

    @Test
    void materialisedBitmapEqualsOneRecordedFromTheSameCut() throws IOException
    {
        final TrackedDisk disk = open("d", Pipeline.FUSED);
        write(disk, 0, 4096);
        disk.transaction(CheckpointActions.add("c", List.of()), BitmapActions.add("rec", G, false, false),
            BitmapActions.add("fine", 4096, false, false));
        write(disk, 3 * G + 4096, 4096);
        write(disk, 20 * G, 3 * G);
        disk.transaction(CheckpointActions.bitmapFrom("c", "m", 0, true),
            CheckpointActions.bitmapFrom("c", "m4k", 4096, false));
        assertThat(disk.bitmaps().query("m").recording()).isFalse();
        assertThat(disk.bitmaps().query("m").persistent()).isTrue();
        assertThat(disk.bitmaps().sha256("m")).isEqualTo(disk.bitmaps().sha256("rec"));
        // Finer than the map: whole map chunks, a superset of what a 4 KiB bitmap recorded.
        assertThat(disk.bitmaps().query("m4k").count()).isEqualTo(4 * G);
        assertThat(disk.bitmaps().query("fine").count()).isEqualTo(4096 + 3 * G);
        write(disk, 50 * G, 1);
        assertThat(disk.bitmaps().query("m").count()).as("disabled").isEqualTo(4 * G);
    }

    /**
     * The map is walked before the cut while writers run; the cut adds the writes logged since. The result must
     * equal a bitmap that recorded from the checkpoint's cut and stopped at the materialising cut (fails if the cut
     * skips the logged writes, or applies writes sequenced after it). A 64 MiB disk at 4 KiB so that a round's
     * writes leave most chunks clean.
     */
    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void materialisingWhileWritersRunEqualsABitmapStoppedAtTheSameCut(final Pipeline pipeline) throws Exception
    {
        final int size = 64 << 20;
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new HeapStore(size), dir.resolve("w"))
            .withName("w").withPipeline(pipeline));
        open.add(disk);
        disk.checkpoints().configure(4096, 0xFFFF_FFFFL);
        final long seed = System.nanoTime();
        final AtomicBoolean stop = new AtomicBoolean();
        final List<Thread> writers = new ArrayList<>();
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        for (int t = 0; t < 3; t++)
        {
            final SplittableRandom random = new SplittableRandom(seed + t);
            final Thread writer = new Thread(() ->
            {
                try
                {
                    while (!stop.get())
                    {
                        final int blocks = 1 + random.nextInt(3);
                        write(disk, random.nextLong(size / 4096 - blocks + 1) * 4096, 4096L * blocks);
                        LockSupport.parkNanos(20_000);
                    }
                }
                catch (final Throwable ex)
                {
                    failure.set(ex);
                }
            }, "writer-" + t);
            writer.start();
            writers.add(writer);
        }
        try
        {
            for (int round = 0; round < 10; round++)
            {
                disk.transaction(CheckpointActions.add("c" + round, List.of()),
                    BitmapActions.add("rec", 4096, false, false));
                Thread.sleep(10);
                disk.transaction(CheckpointActions.bitmapFrom("c" + round, "m", 0, round % 2 == 0),
                    BitmapActions.disable("rec"));
                final long count = disk.bitmaps().query("rec").count();
                assertThat(count).as("seed %d, round %d: writes during the round", seed, round)
                    .isPositive().isLessThan(size / 2);
                assertThat(disk.bitmaps().sha256("m")).as("seed %d, round %d", seed, round)
                    .isEqualTo(disk.bitmaps().sha256("rec"));
                disk.transaction(BitmapActions.remove("m"), BitmapActions.remove("rec"),
                    CheckpointActions.remove("c" + round));
            }
        }
        finally
        {
            stop.set(true);
            for (final Thread writer : writers)
            {
                writer.join(10_000);
            }
        }
        assertThat(failure.get()).as("seed %d", seed).isNull();
    }

    @Test
    void catalogueAndMapSurviveACleanCloseAndAMissingMapReportsEverything() throws IOException
    {
        final Path bm = dir.resolve("p");
        final HeapStore store = new HeapStore(SIZE);
        TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, bm).withCloseStore(false));
        disk.transaction(CheckpointActions.add("c1", List.of()));
        write(disk, 2 * G, 10);
        disk.transaction(CheckpointActions.add("c2", List.of()));
        disk.close();
        disk = TrackedDisk.open(DiskOptions.of(store, bm).withCloseStore(false));
        try
        {
            assertThat(disk.checkpoints().epochMap().openState()).isEqualTo(OpenState.CLEAN);
            assertThat(changed(disk, "c1")).containsExactly(new long[] {2 * G, G});
            assertThat(changed(disk, "c2")).isEmpty();
            write(disk, 0, 1);
            disk.transaction(CheckpointActions.add("c3", List.of()));
            assertThat(disk.checkpoints().get("c3").epoch()).isEqualTo(3);
        }
        finally
        {
            disk.close();
        }
        Files.delete(bm.resolve(DiskCheckpoints.MAP_FILE));
        disk = TrackedDisk.open(DiskOptions.of(store, bm).withCloseStore(false));
        open.add(disk);
        assertThat(changed(disk, "c3")).containsExactly(new long[] {0, SIZE});
        assertThat(disk.checkpoints().list()).extracting(CheckpointInfo::exact).containsOnly(false);
        assertThat(disk.openMessages()).anyMatch(m -> m.contains("report everything"));
        disk.transaction(CheckpointActions.add("c4", List.of()));
        write(disk, G, 1);
        assertThat(changed(disk, "c4")).containsExactly(new long[] {G, G});
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void durableModeForcesEpochPagesInTheGroupCommit(final Pipeline pipeline) throws IOException
    {
        final TrackedDisk disk = open("d", pipeline);
        disk.transaction(CheckpointActions.add("c", List.of()));
        disk.durable(true);
        assertThat(disk.checkpoints().epochMap().isDurable()).isTrue();
        final long before = disk.ringStatistics().forcedPages();
        write(disk, 0, 4096);
        assertThat(disk.ringStatistics().forcedPages()).isGreaterThan(before);
        assertThat(disk.checkpoints().epochMap().pendingPageCount()).isZero();
        write(disk, 0, 4096);
        disk.durable(false);
        assertThat(disk.checkpoints().epochMap().isDurable()).isFalse();
    }

    @Test
    void aTinyEpochPeriodWrapsThroughCompaction() throws Exception
    {
        final TrackedDisk disk = open("w", Pipeline.FUSED);
        disk.checkpoints().configure(G, 8);
        int added = 0;
        for (int i = 0; i < 40; i++)
        {
            write(disk, (i % 100) * G, 1);
            try
            {
                disk.transaction(CheckpointActions.add("c" + i, List.of()));
                added++;
            }
            catch (final EngineException exhausted)
            {
                assertThat(exhausted).hasMessageContaining("are exhausted");
                disk.transaction(CheckpointActions.remove(disk.checkpoints().checkpoints().get(0).name()));
                disk.checkpoints().awaitCompaction();
                disk.checkpoints().startCompaction();
                disk.checkpoints().awaitCompaction();
                disk.transaction(CheckpointActions.add("c" + i, List.of()));
                added++;
            }
            // Keep three live checkpoints: removing the oldest lets the floor rise.
            if (disk.checkpoints().checkpoints().size() > 3)
            {
                disk.transaction(CheckpointActions.remove(disk.checkpoints().checkpoints().get(0).name()));
            }
            disk.checkpoints().awaitCompaction();
            final List<Checkpoint> live = disk.checkpoints().checkpoints();
            final Checkpoint oldest = live.get(0);
            final int k = Integer.parseInt(oldest.name().substring(1));
            final java.util.BitSet expected = new java.util.BitSet();
            for (int j = k + 1; j <= i; j++)
            {
                expected.set(j % 100);
            }
            final java.util.BitSet actual = new java.util.BitSet();
            for (final long[] extent : changed(disk, oldest.name()))
            {
                actual.set((int)(extent[0] / G), (int)((extent[0] + extent[1]) / G));
            }
            assertThat(actual).as("changed since %s after %d", oldest.name(), i).isEqualTo(expected);
        }
        assertThat(added).isEqualTo(40);
        assertThat(disk.checkpoints().currentEpoch()).isGreaterThan(16);
        assertThat(disk.checkpoints().compactionFailure()).isNull();
    }
}
