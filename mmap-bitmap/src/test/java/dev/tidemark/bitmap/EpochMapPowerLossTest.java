package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.UUID;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Power loss for the epoch map: a simulator keeps the bytes that reached storage (what was forced, through the
 * map's force seam) and builds crash states that keep, for every 4 KiB page that differs, the durable or the current
 * version at random. In durable mode every state must open trusted and "changed since X" must cover every mark that
 * was acknowledged (marked, then forced, as the ring's group commit does) after X; in lazy mode every state
 * opens untrusted and answers "everything" for every checkpoint. Single-threaded.
 */
class EpochMapPowerLossTest
{
    private static final long G = 4096;
    private static final int PAGE = 4096;

    @TempDir
    Path dir;

    @AfterEach
    void resetSeam()
    {
        EpochMap.forceListener = null;
    }

    @Test
    void durableModeCoversEveryAcknowledgedMarkInEveryCrashState() throws Exception
    {
        runNamingTheSeed(true);
    }

    @Test
    void lazyModeIsExactOrUntrustedInEveryCrashState() throws Exception
    {
        runNamingTheSeed(false);
    }

    /** Runs one mode with a new seed (or {@code -Dtidemark.test.seed}); a failure names the seed. */
    private void runNamingTheSeed(final boolean durable)
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        try
        {
            run(durable, seed);
        }
        catch (final Throwable ex)
        {
            throw new AssertionError((durable ? "durable" : "lazy") + " power loss failed, seed " + seed + ": " + ex,
                ex);
        }
    }

    private void run(final boolean durable, final long seed) throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final long chunks = 3000;
        final Path file = dir.resolve("epochs.tmem");
        final Map<Path, byte[]> durableCopy = new HashMap<>();
        final EpochMap map = EpochMap.create(file, chunks * G, G, 13);
        durableCopy.put(file, Files.readAllBytes(file));
        EpochMap.forceListener = (f, offset, length) ->
        {
            try
            {
                final byte[] current = Files.readAllBytes(f);
                final byte[] kept = durableCopy.get(f);
                System.arraycopy(current, (int)offset, kept, (int)offset, (int)length);
            }
            catch (final java.io.IOException ex)
            {
                throw new java.io.UncheckedIOException(ex);
            }
        };
        if (durable)
        {
            map.setDurable(true);
        }
        // Acknowledged marks: chunk ranges with the epoch they were stamped in.
        final List<long[]> acknowledged = new ArrayList<>();
        final List<Long> checkpoints = new ArrayList<>();
        long epoch = 0;
        int states = 0;
        for (int step = 0; step < 300; step++)
        {
            if (random.nextInt(8) == 0)
            {
                if (!map.canAdvanceTo(epoch + 1))
                {
                    checkpoints.remove(0);
                    map.compact(checkpoints.isEmpty() ? epoch + 1 : checkpoints.get(0));
                }
                if (map.tryAdvance(epoch + 1))
                {
                    epoch++;
                    checkpoints.add(epoch);
                }
            }
            final long chunk = random.nextLong(chunks);
            final long count = 1 + random.nextInt(20);
            final long length = Math.min(chunks - chunk, count) * G;
            map.mark(chunk * G, length, epoch);
            if (durable)
            {
                map.force();
                acknowledged.add(new long[] {chunk, chunk + length / G, epoch});
            }
            if (random.nextInt(10) == 0)
            {
                states++;
                checkCrashState(file, durableCopy.get(file), random, durable, checkpoints, acknowledged);
            }
        }
        assertThat(states).isPositive();
        map.abandon();
    }

    private void checkCrashState(final Path file, final byte[] durableBytes, final SplittableRandom random,
        final boolean durable, final List<Long> checkpoints, final List<long[]> acknowledged) throws Exception
    {
        final byte[] current = Files.readAllBytes(file);
        final byte[] state = durableBytes.clone();
        for (int page = 0; page * PAGE < current.length; page++)
        {
            final int from = page * PAGE;
            final int to = Math.min(current.length, from + PAGE);
            if (!java.util.Arrays.equals(current, from, to, state, from, to))
            {
                if (random.nextBoolean())
                {
                    System.arraycopy(current, from, state, from, to - from);
                }
            }
        }
        final Path crash = dir.resolve("crash-" + System.nanoTime() + ".tmem");
        Files.write(crash, state);
        final EpochMap.ForceListener seam = EpochMap.forceListener;
        EpochMap.forceListener = null;
        try (EpochMap reopened = EpochMap.open(crash, UUID.randomUUID()))
        {
            if (durable)
            {
                assertThat(reopened.openState()).isEqualTo(OpenState.TRUSTED_DURABLE);
                for (final long checkpoint : checkpoints)
                {
                    for (final long[] mark : acknowledged)
                    {
                        if (mark[2] >= checkpoint)
                        {
                            final long[] covered = {mark[0] * G};
                            reopened.changedSince(checkpoint, mark[0] * G, (mark[1] - mark[0]) * G, (o, l) ->
                            {
                                if (o == covered[0])
                                {
                                    covered[0] = o + l;
                                }
                                return true;
                            });
                            assertThat(covered[0]).as("acknowledged mark %d..%d in epoch %d since %d", mark[0],
                                mark[1], mark[2], checkpoint).isEqualTo(mark[1] * G);
                        }
                    }
                }
            }
            else
            {
                assertThat(reopened.openState()).isEqualTo(OpenState.INCONSISTENT);
                // As DiskCheckpoints does: the header may predate the newest checkpoint the catalogue knows.
                if (!checkpoints.isEmpty())
                {
                    reopened.distrust(checkpoints.get(checkpoints.size() - 1));
                }
                for (final long checkpoint : checkpoints)
                {
                    assertThat(reopened.countChangedSince(checkpoint)).as("untrusted: everything")
                        .isEqualTo(reopened.diskSize());
                }
            }
        }
        finally
        {
            EpochMap.forceListener = seam;
            Files.delete(crash);
        }
    }
}
