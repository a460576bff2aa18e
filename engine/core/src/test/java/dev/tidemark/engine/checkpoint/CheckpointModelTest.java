package dev.tidemark.engine.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.bitmap.OpenState;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The model test of issue 11: seeded writes, checkpoint adds and removals, materialised bitmaps, clean restarts
 * and kill -9 restarts, mirrored on a model that keeps one {@link BitSet} per live checkpoint; after every step
 * "changed since X" from the epoch map equals the model for every live X. A tiny epoch period makes the stamps wrap
 * and the background compaction run many times. Single-threaded test driver; prints its seed.
 *
 * <p>A kill -9 is simulated in-process: with no request in flight, the bitmap directory's files are copied (what
 * the page cache holds is exactly what a killed process leaves) and the store snapshotted; the copy is opened.
 */
@Timeout(120)
class CheckpointModelTest
{
    private static final long G = 4096;
    private static final int CHUNKS = 700;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void changedSinceEqualsTheModelAfterEveryStep(final Pipeline pipeline) throws Exception
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        System.out.println("CheckpointModelTest seed=" + seed + " pipeline=" + pipeline);
        final List<String> log = new ArrayList<>();
        try
        {
            run(pipeline, seed, log);
        }
        catch (final Throwable ex)
        {
            throw new AssertionError("checkpoint model failed, seed=" + seed + " (-Dtidemark.test.seed=" + seed
                + "), last steps " + log.subList(Math.max(0, log.size() - 10), log.size()) + ": " + ex, ex);
        }
    }

    private void run(final Pipeline pipeline, final long seed, final List<String> log) throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final int size = (int)(CHUNKS * G);
        HeapStore store = new HeapStore(size);
        int generation = 0;
        Path bm = dir.resolve("bm" + generation);
        TrackedDisk disk = open(store, bm, pipeline);
        final Map<String, BitSet> model = new LinkedHashMap<>();
        int names = 0;
        int kills = 0;
        int wraps = 0;
        try
        {
            for (int step = 0; step < 400; step++)
            {
                final int op = random.nextInt(100);
                if (op < 55)
                {
                    final long offset = random.nextLong(size);
                    final int length = (int)Math.min(size - offset, 1 + random.nextInt((int)(6 * G)));
                    log.add("write " + offset + "+" + length);
                    if (random.nextBoolean())
                    {
                        disk.write(offset, ByteBuffer.allocate(length), false);
                    }
                    else
                    {
                        disk.discard(offset, length, false);
                    }
                    for (final BitSet changed : model.values())
                    {
                        changed.set((int)(offset / G), (int)((offset + length - 1) / G) + 1);
                    }
                }
                else if (op < 72)
                {
                    final String name = "c" + names++;
                    log.add("add " + name);
                    try
                    {
                        disk.transaction(CheckpointActions.add(name, List.of("d")));
                    }
                    catch (final EngineException exhausted)
                    {
                        // The oldest checkpoint pins the floor: remove it, let compaction run, add again.
                        assertThat(exhausted).hasMessageContaining("are exhausted");
                        if (!model.isEmpty())
                        {
                            final String oldest = model.keySet().iterator().next();
                            log.add("exhausted; remove " + oldest);
                            disk.transaction(CheckpointActions.remove(oldest));
                            model.remove(oldest);
                        }
                        disk.checkpoints().awaitCompaction();
                        disk.checkpoints().startCompaction();
                        disk.checkpoints().awaitCompaction();
                        disk.transaction(CheckpointActions.add(name, List.of("d")));
                        wraps++;
                    }
                    model.put(name, new BitSet());
                }
                else if (op < 84 && !model.isEmpty())
                {
                    final List<String> live = new ArrayList<>(model.keySet());
                    final String name = live.get(random.nextInt(live.size()));
                    log.add("remove " + name);
                    disk.transaction(CheckpointActions.remove(name));
                    model.remove(name);
                }
                else if (op < 90 && !model.isEmpty())
                {
                    final List<String> live = new ArrayList<>(model.keySet());
                    final String name = live.get(random.nextInt(live.size()));
                    final String bitmap = "m" + step;
                    log.add("materialise " + name);
                    disk.transaction(CheckpointActions.bitmapFrom(name, bitmap, 0, random.nextBoolean()));
                    final BitSet bits = new BitSet();
                    disk.bitmaps().view(bitmap).forEachDirtyExtent(0, size, (o, l) ->
                    {
                        bits.set((int)(o / G), (int)((o + l - 1) / G) + 1);
                        return true;
                    });
                    assertThat(bits).as("materialised %s", name).isEqualTo(model.get(name));
                    disk.transaction(dev.tidemark.engine.registry.BitmapActions.remove(bitmap));
                }
                else if (op < 95)
                {
                    log.add("clean restart");
                    disk.checkpoints().awaitCompaction();
                    disk.close();
                    disk = open(store, bm, pipeline);
                    assertThat(disk.checkpoints().epochMap() == null
                        || disk.checkpoints().epochMap().openState() == OpenState.CLEAN).isTrue();
                }
                else
                {
                    log.add("kill -9");
                    disk.checkpoints().awaitCompaction();
                    generation++;
                    final Path copy = dir.resolve("bm" + generation);
                    copyDirectory(bm, copy);
                    final HeapStore survivor = new HeapStore(store.snapshot(), false);
                    disk.close();
                    store = survivor;
                    bm = copy;
                    disk = open(store, bm, pipeline);
                    kills++;
                    if (disk.checkpoints().epochMap() != null)
                    {
                        assertThat(disk.checkpoints().epochMap().openState()).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
                    }
                }
                assertThat(disk.checkpoints().checkpoints()).extracting(Checkpoint::name)
                    .containsExactlyElementsOf(model.keySet());
                for (final Map.Entry<String, BitSet> checkpoint : model.entrySet())
                {
                    final BitSet actual = new BitSet();
                    disk.checkpoints().changedSince(checkpoint.getKey(), 0, size, (o, l) ->
                    {
                        actual.set((int)(o / G), (int)((o + l - 1) / G) + 1);
                        return true;
                    });
                    assertThat(actual).as("changed since %s at step %d", checkpoint.getKey(), step)
                        .isEqualTo(checkpoint.getValue());
                }
            }
            assertThat(disk.checkpoints().currentEpoch()).as("stamps wrapped (period 11)").isGreaterThan(22);
            System.out.println("CheckpointModelTest seed=" + seed + ": epoch " + disk.checkpoints().currentEpoch()
                + ", kills " + kills + ", exhausted-and-recovered " + wraps);
        }
        finally
        {
            disk.close();
        }
    }

    private static TrackedDisk open(final HeapStore store, final Path bm, final Pipeline pipeline) throws IOException
    {
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, bm).withName("d").withPipeline(pipeline)
            .withCloseStore(false));
        if (!disk.checkpoints().hasMap())
        {
            // The choice is made by the first checkpoint (its map keeps it), so it is repeated until then.
            disk.checkpoints().configure(G, 11);
        }
        return disk;
    }

    private static void copyDirectory(final Path from, final Path to) throws IOException
    {
        Files.createDirectories(to);
        try (Stream<Path> files = Files.list(from))
        {
            for (final Path file : files.toList())
            {
                try
                {
                    Files.copy(file, to.resolve(file.getFileName()));
                }
                catch (final NoSuchFileException gone)
                {
                    // The retirement thread deleted a removed bitmap's file after the listing: a kill -9 a moment
                    // later leaves no file either, which is one of the states recovery must take.
                }
            }
        }
    }
}
