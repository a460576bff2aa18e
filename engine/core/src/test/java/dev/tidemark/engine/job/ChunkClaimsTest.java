package dev.tidemark.engine.job;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.bitmap.MappedBitmap;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link ChunkClaims}: sparse pages against a plain {@link BitSet} model (seeded, at page and word edges), needed
 * sets from a frozen bitmap consulted in place, and a 64 TiB disk costing memory only where it is claimed.
 */
@Timeout(60)
class ChunkClaimsTest
{
    private static final long CHUNK = 64 << 10;
    /** Bits per page of {@link ChunkClaims.SparseBits} (16 words) and per group of 1024 pages. */
    private static final long PAGE_BITS = 16 * 64;
    private static final long GROUP_BITS = 1024 * PAGE_BITS;

    @RepeatedTest(20)
    void sparseBitsMatchABitSet()
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        // Sizes around a group edge (1024 pages of 16 words = 2^20 bits); bits are set in a few groups only, so
        // that walks skip missing groups and missing pages.
        final long bits = GROUP_BITS * (2 + random.nextInt(30)) + random.nextInt(130) - 65;
        final long[] active = random.longs(1 + random.nextInt(3), 0, (bits + GROUP_BITS - 1) / GROUP_BITS).toArray();
        final ChunkClaims.SparseBits sparse = new ChunkClaims.SparseBits((bits + 63) >>> 6);
        final BitSet model = new BitSet();
        for (int step = 0; step < 2000; step++)
        {
            final long bit = pick(random, bits, active);
            switch (random.nextInt(4))
            {
                case 0, 1 ->
                {
                    assertThat(sparse.trySet(bit)).as("seed %d bit %d", seed, bit).isEqualTo(!model.get((int)bit));
                    model.set((int)bit);
                }
                case 2 ->
                {
                    sparse.clear(bit);
                    model.clear((int)bit);
                }
                default ->
                {
                    // Half the walks start anywhere, mostly in groups never touched.
                    final long from = random.nextBoolean() ? bit : random.nextLong(bits);
                    final int expectedSet = model.nextSetBit((int)from);
                    assertThat(sparse.nextSet(from)).as("seed %d nextSet(%d)", seed, from)
                        .isEqualTo(expectedSet < 0 ? -1 : expectedSet);
                    assertThat(sparse.nextClear(from)).as("seed %d nextClear(%d)", seed, from)
                        .isEqualTo(model.nextClearBit((int)from));
                }
            }
            assertThat(sparse.get(bit)).as("seed %d get(%d)", seed, bit).isEqualTo(model.get((int)bit));
        }
        assertThat(sparse.count()).as("seed %d", seed).isEqualTo(model.cardinality());
    }

    /** @return a bit in one of the active groups (or just past one), half of them near a page or word edge. */
    private static long pick(final SplittableRandom random, final long bits, final long[] active)
    {
        final long group = active[random.nextInt(active.length)] * GROUP_BITS;
        final long unit = switch (random.nextInt(4))
        {
            case 0 -> GROUP_BITS;
            case 1 -> PAGE_BITS;
            case 2 -> 64L;
            default -> 1L;
        };
        // Edges where off-by-ones live: the group's own ends, its pages' and its words'.
        final long edge = group + unit * random.nextLong(GROUP_BITS / unit + 1);
        return Math.max(0, Math.min(bits - 1, edge + (unit == 1 ? 0 : random.nextInt(5) - 2)));
    }

    @Test
    void neededFromAFrozenBitmapIsItsDirtyChunks()
    {
        final long disk = 100 * CHUNK + 4096;
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("frozen", disk, CHUNK))
        {
            bitmap.mark(3 * CHUNK + 5, 1);
            bitmap.mark(10 * CHUNK, 2 * CHUNK);
            bitmap.mark(disk - 1, 1);
            final ChunkClaims claims = new ChunkClaims(disk, CHUNK);
            claims.needDirty(bitmap);
            final List<Long> needed = new ArrayList<>();
            for (long c = claims.nextNeeded(0); c >= 0; c = claims.nextNeeded(c + 1))
            {
                needed.add(c);
            }
            assertThat(needed).containsExactly(3L, 10L, 11L, 100L);
            assertThat(claims.neededCount()).isEqualTo(4);
            assertThat(claims.neededBytes()).isEqualTo(3 * CHUNK + 4096);
            assertThat(claims.isNeeded(4)).isFalse();
            assertThat(claims.tryClaim(4)).isFalse();
            assertThat(claims.tryClaim(10)).isTrue();
            claims.markDone(10);
            assertThat(claims.nextPending(4)).isEqualTo(11);
            assertThat(claims.nextPending(12)).isEqualTo(100);
        }
    }

    @Test
    void aFrozenBitmapFinerThanTheChunkIsWalked()
    {
        final long disk = 20 * CHUNK;
        try (MappedBitmap bitmap = MappedBitmap.createAnonymous("fine", disk, 4096))
        {
            bitmap.mark(CHUNK + 8192, 1);
            bitmap.mark(CHUNK + 12288, 1);
            bitmap.mark(7 * CHUNK - 1, 1);
            final ChunkClaims claims = new ChunkClaims(disk, CHUNK);
            claims.needDirty(bitmap);
            assertThat(claims.neededBytes()).isEqualTo(2 * CHUNK);
            assertThat(claims.nextNeeded(2)).isEqualTo(6);
        }
    }

    @Test
    void allNeededSkipsDoneRuns()
    {
        final ChunkClaims claims = new ChunkClaims(300 * CHUNK, CHUNK);
        claims.needAll();
        for (long c = 0; c < 200; c++)
        {
            assertThat(claims.tryClaim(c)).isTrue();
            claims.markDone(c);
        }
        assertThat(claims.nextPending(0)).isEqualTo(200);
        assertThat(claims.doneCount()).isEqualTo(200);
        final List<long[]> extents = new ArrayList<>();
        claims.forEachDoneExtent((offset, length) -> extents.add(new long[] {offset, length}));
        assertThat(extents).hasSize(1);
        assertThat(extents.get(0)).containsExactly(0, 200 * CHUNK);
        assertThat(claims.neededBytes()).isEqualTo(300 * CHUNK);
    }

    /** 64 TiB at 64 KiB is 2^30 chunks: the claims are made in microseconds and hold pages only where claimed. */
    @Test
    void aSixtyFourTebibyteDiskCostsOnlyWhatIsClaimed()
    {
        final long disk = 64L << 40;
        final Runtime runtime = Runtime.getRuntime();
        final long start = System.nanoTime();
        final ChunkClaims claims = new ChunkClaims(disk, CHUNK);
        claims.needAll();
        final long made = System.nanoTime() - start;
        assertThat(made).as("made at the cut without touching 2^30 chunks").isLessThan(50_000_000L);
        final long last = claims.chunkCount() - 1;
        assertThat(claims.tryClaim(last)).isTrue();
        claims.markDone(last);
        assertThat(claims.nextPending(last)).isEqualTo(-1);
        assertThat(claims.doneCount()).isEqualTo(1);
        assertThat(runtime.totalMemory()).as("no dense arrays of 2^30 bits").isLessThan(2L << 30);
    }

    @Test
    @Timeout(10)
    void aStashedChunkIsPreservedButStillPendingUntilDone() throws Exception
    {
        final ChunkClaims claims = new ChunkClaims(64L << 20, 64 << 10);
        claims.need(0, 64L << 20);
        assertThat(claims.tryClaim(3)).isTrue();
        assertThat(claims.isPreserved(3)).isFalse();
        // A guest write waiting for chunk 3 returns once its old data is stashed, before it reaches the target.
        final Thread waiter = new Thread(() ->
        {
            try
            {
                assertThat(claims.awaitPreserved(3)).isTrue();
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        });
        waiter.start();
        claims.markStashed(3);
        waiter.join(5_000);
        assertThat(waiter.isAlive()).as("woken by the stash").isFalse();
        assertThat(claims.isPreserved(3)).isTrue();
        assertThat(claims.isDone(3)).isFalse();
        assertThat(claims.nextPending(3)).as("the copy still owes the target chunk 3").isEqualTo(3);
        assertThat(claims.tryClaim(3)).as("nobody else copies it").isFalse();
        claims.markDone(3);
        assertThat(claims.nextPending(3)).isEqualTo(4);
        // Released (a failed copy) or abandoned, a waiter returns without the chunk being preserved.
        assertThat(claims.tryClaim(5)).isTrue();
        claims.release(5);
        assertThat(claims.awaitPreserved(5)).isFalse();
        assertThat(claims.tryClaim(6)).isTrue();
        claims.abandon();
        assertThat(claims.awaitPreserved(6)).isFalse();
    }
}
