package dev.tidemark.engine.job;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A job's end reclaims its successor by a merge staged ahead of the cut plus the writes logged since (BackupJob's
 * {@code Finish}); writers race every job end, and afterwards the bitmap must hold exactly the chunks written since it
 * was added, a plain {@link BitSet} being the model. Fails if the cut skips the logged writes, or if the early merge
 * misses a bit. Each instance is confined to its test thread; writers are its own threads.
 */
@Timeout(180)
class StagedReclaimTest extends DiskTestSupport
{
    private static final long SIZE = 4L << 30;
    private static final int CHUNK = 4096;
    private static final int ROUNDS = 16;
    private static final int WRITERS = 3;

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void reclaimStagedAheadOfTheCutLosesAndAddsNoBit(final Pipeline pipeline) throws Exception
    {
        openDisk(RawFileStore.create(dir.resolve("disk.raw"), SIZE), pipeline);
        final SplittableRandom random = new SplittableRandom(seed);
        final BitSet written = new BitSet();
        disk.transaction(BitmapActions.add("b0", CHUNK, true, false));
        int staged = 0;
        for (int round = 0; round < ROUNDS; round++)
        {
            if (round == ROUNDS / 2)
            {
                // Durable mode forces the early merge off the ring and the rest at the cut.
                disk.durable(true);
            }
            final AtomicBoolean stop = new AtomicBoolean();
            final List<Thread> writers = new ArrayList<>();
            final List<BitSet> perWriter = new ArrayList<>();
            for (int w = 0; w < WRITERS; w++)
            {
                final SplittableRandom own = random.split();
                final BitSet mine = new BitSet();
                perWriter.add(mine);
                final Thread writer = new Thread(() -> write(own, mine, stop), "writer-" + w);
                writer.start();
                writers.add(writer);
            }
            try (RawFileStore target = target(SIZE))
            {
                // Bitmap mode never: every outcome reclaims, so the bitmap only ever grows.
                final BackupStartAction start = new BackupStartAction(manager,
                    BackupOptions.of("vda", SyncMode.BITMAP).withJobId("j" + round)
                        .withBitmap("b0", BitmapMode.NEVER).withJob(new JobOptions(true, true, 4L << 20)),
                    target, null);
                disk.transaction(start);
                final BackupJob job = start.job();
                Thread.sleep(20 + random.nextInt(200));
                try
                {
                    job.cancel();
                }
                catch (final dev.tidemark.engine.EngineException alreadyDone)
                {
                    // It may have finished first: it reclaims all the same.
                }
                awaitGone(job);
                staged += job.reclaimedAhead() ? 1 : 0;
            }
            finally
            {
                stop.set(true);
                for (final Thread writer : writers)
                {
                    writer.join(30_000);
                    assertThat(writer.isAlive()).as(writer.getName() + " stuck (seed " + seed + ")").isFalse();
                }
            }
            for (final BitSet mine : perWriter)
            {
                written.or(mine);
            }
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            check(disk.bitmaps().view("b0"), written, "round " + round + " " + pipeline);
        }
        // Not every end may stage (another action's write log may be open), but most must, or nothing was tested.
        assertThat(staged).as("job ends reclaimed by the staged merge (seed " + seed + ")").isGreaterThan(ROUNDS / 2);
    }

    private void write(final SplittableRandom random, final BitSet mine, final AtomicBoolean stop)
    {
        final ByteBuffer data = ByteBuffer.allocateDirect(CHUNK);
        try
        {
            while (!stop.get())
            {
                final long chunk = random.nextLong(SIZE / CHUNK);
                data.clear();
                data.putLong(0, chunk);
                disk.write(chunk * CHUNK, data, false);
                mine.set((int)chunk);
            }
        }
        catch (final Exception ex)
        {
            throw new AssertionError("write failed (seed " + seed + ")", ex);
        }
    }

    private void check(final BitmapView bits, final BitSet expected, final String what)
    {
        assertThat(bits.dirtyChunkCount()).as(what + ": dirty chunks (seed " + seed + ")")
            .isEqualTo(expected.cardinality());
        for (int chunk = expected.nextSetBit(0); chunk >= 0; chunk = expected.nextSetBit(chunk + 1))
        {
            assertThat(bits.isDirty((long)chunk * CHUNK)).as(what + ": chunk " + chunk + " (seed " + seed + ")")
                .isTrue();
        }
    }
}
