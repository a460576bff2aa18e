package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.testing.HeapStore;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Seeded operations across three disks (writes, and transactions of bitmap actions over random subsets of the
 * disks, some of which fail) mirrored on a plain model: per disk, per bitmap, a {@link BitSet} of dirty chunks and
 * a recording flag. After every step each disk's bitmaps equal the model's: a transaction over several disks
 * changes every disk or none, and every write lands in exactly the bitmaps that recorded at its place.
 */
@Timeout(120)
class JointTransactionModelTest
{
    private static final int DISKS = 3;
    private static final long CHUNK = 65536;
    private static final int CHUNKS = 64 * 3 + 5;
    private static final String[] NAMES = {"a", "b", "c", "d"};

    @TempDir
    Path dir;

    /** The model of one bitmap. */
    private static final class ModelBitmap
    {
        final BitSet dirty = new BitSet();
        boolean recording = true;

        ModelBitmap copy()
        {
            final ModelBitmap c = new ModelBitmap();
            c.dirty.or(dirty);
            c.recording = recording;
            return c;
        }
    }

    @RepeatedTest(6)
    void jointTransactionsMatchThePlainModel() throws Exception
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        final List<TrackedDisk> disks = new ArrayList<>();
        final List<Map<String, ModelBitmap>> model = new ArrayList<>();
        try
        {
            for (int d = 0; d < DISKS; d++)
            {
                disks.add(TrackedDisk.open(DiskOptions.of(new HeapStore((int)(CHUNKS * CHUNK)), dir.resolve(seed + "-" + d))
                    .withName("vd" + d).withPipeline(random.nextBoolean() ? Pipeline.FUSED : Pipeline.STAGED)
                    .withDurable(random.nextInt(4) == 0)));
                model.add(new TreeMap<>());
            }
            for (int step = 0; step < 300; step++)
            {
                if (random.nextInt(3) > 0)
                {
                    final int d = random.nextInt(DISKS);
                    final long offset = random.nextLong(CHUNKS * CHUNK - 1);
                    final int length = 1 + random.nextInt((int)Math.min(3 * CHUNK, CHUNKS * CHUNK - offset));
                    disks.get(d).write(offset, ByteBuffer.allocate(length), false);
                    for (final ModelBitmap b : model.get(d).values())
                    {
                        if (b.recording)
                        {
                            b.dirty.set((int)(offset / CHUNK), (int)((offset + length - 1) / CHUNK) + 1);
                        }
                    }
                }
                else
                {
                    transaction(random, disks, model, seed, step);
                }
                for (int d = 0; d < DISKS; d++)
                {
                    check(disks.get(d), model.get(d), seed, step);
                }
            }
        }
        finally
        {
            for (final TrackedDisk disk : disks)
            {
                disk.close();
            }
        }
    }

    private static void transaction(final SplittableRandom random, final List<TrackedDisk> disks,
        final List<Map<String, ModelBitmap>> model, final long seed, final int step)
    {
        final Map<TrackedDisk, List<ControlAction>> txn = new LinkedHashMap<>();
        final List<Map<String, ModelBitmap>> after = new ArrayList<>();
        boolean fails = false;
        for (int d = 0; d < DISKS; d++)
        {
            final Map<String, ModelBitmap> next = new TreeMap<>();
            model.get(d).forEach((name, bitmap) -> next.put(name, bitmap.copy()));
            after.add(next);
            if (random.nextBoolean())
            {
                continue;
            }
            final List<ControlAction> actions = new ArrayList<>();
            for (int a = 1 + random.nextInt(3); a > 0; a--)
            {
                final String name = NAMES[random.nextInt(NAMES.length)];
                final ModelBitmap existing = next.get(name);
                switch (random.nextInt(7))
                {
                    case 0, 1 ->
                    {
                        actions.add(BitmapActions.add(name, CHUNK, false, false));
                        fails |= existing != null;
                        next.putIfAbsent(name, new ModelBitmap());
                    }
                    case 2 ->
                    {
                        actions.add(BitmapActions.remove(name));
                        fails |= existing == null;
                        next.remove(name);
                    }
                    case 3 ->
                    {
                        actions.add(BitmapActions.clear(name));
                        fails |= existing == null;
                        if (existing != null)
                        {
                            existing.dirty.clear();
                        }
                    }
                    case 4 ->
                    {
                        actions.add(BitmapActions.disable(name));
                        fails |= existing == null;
                        if (existing != null)
                        {
                            existing.recording = false;
                        }
                    }
                    case 5 ->
                    {
                        actions.add(BitmapActions.enable(name));
                        fails |= existing == null;
                        if (existing != null)
                        {
                            existing.recording = true;
                        }
                    }
                    default ->
                    {
                        final String source = NAMES[random.nextInt(NAMES.length)];
                        actions.add(BitmapActions.merge(name, List.of(source)));
                        fails |= existing == null || !next.containsKey(source);
                        if (existing != null && next.containsKey(source))
                        {
                            existing.dirty.or(next.get(source).dirty);
                        }
                    }
                }
            }
            txn.put(disks.get(d), actions);
        }
        if (txn.isEmpty())
        {
            return;
        }
        boolean failed = false;
        try
        {
            TrackedDisk.transaction(txn);
        }
        catch (final EngineException ex)
        {
            failed = true;
        }
        assertThat(failed).as("seed %d step %d: the transaction %s", seed, step, fails ? "fails" : "succeeds")
            .isEqualTo(fails);
        if (!failed)
        {
            for (int d = 0; d < DISKS; d++)
            {
                model.set(d, after.get(d));
            }
        }
    }

    private static void check(final TrackedDisk disk, final Map<String, ModelBitmap> model, final long seed,
        final int step)
    {
        final Map<String, ModelBitmap> actual = new TreeMap<>();
        for (final BitmapInfo info : disk.bitmaps().query())
        {
            final BitmapView view = disk.bitmaps().view(info.name());
            final ModelBitmap b = new ModelBitmap();
            b.recording = info.recording();
            for (long c = 0; c < CHUNKS; c++)
            {
                if (view.isDirty(c * CHUNK))
                {
                    b.dirty.set((int)c);
                }
            }
            actual.put(info.name(), b);
        }
        assertThat(actual.keySet()).as("seed %d step %d %s", seed, step, disk.name()).isEqualTo(model.keySet());
        for (final Map.Entry<String, ModelBitmap> e : model.entrySet())
        {
            assertThat(actual.get(e.getKey()).dirty).as("seed %d step %d %s %s", seed, step, disk.name(), e.getKey())
                .isEqualTo(e.getValue().dirty);
            assertThat(actual.get(e.getKey()).recording).as("seed %d step %d %s %s recording", seed, step,
                disk.name(), e.getKey()).isEqualTo(e.getValue().recording);
        }
    }
}
