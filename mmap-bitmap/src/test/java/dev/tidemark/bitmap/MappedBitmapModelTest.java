package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Model-based test: seeded random operation sequences applied both to a {@link MappedBitmap} and to a
 * {@link BitSet} of chunks, compared after every step; single-threaded. Sizes sit at word (64 chunks),
 * level-1 word (4096), page (32768) and region boundaries (regions of 4 KiB = 32768 chunks here).
 */
class MappedBitmapModelTest
{
    private static final int SMALL_REGION = 4096;

    @TempDir
    Path dir;

    static Stream<Arguments> cases()
    {
        final long[] chunkCounts = {0, 1, 63, 64, 65, 4095, 4096, 4097, 32767, 32768, 32769, 65535, 65536, 65537, 98305};
        final List<Arguments> out = new ArrayList<>();
        final long baseSeed = Long.getLong("tidemark.test.seed", System.nanoTime());
        int i = 0;
        for (final long chunks : chunkCounts)
        {
            out.add(Arguments.of(chunks, false, baseSeed + i++, baseSeed));
            out.add(Arguments.of(chunks, true, baseSeed + i++, baseSeed));
        }
        return out.stream();
    }

    @ParameterizedTest(name = "chunks={0} file={1} seed={2}")
    @MethodSource("cases")
    void randomOperationsMatchTheModel(final long chunks, final boolean fileBacked, final long seed, final long baseSeed)
        throws Exception
    {
        final List<String> log = new ArrayList<>();
        try
        {
            run(chunks, fileBacked, seed, log);
        }
        catch (final Throwable ex)
        {
            throw new AssertionError("model test failed: seed=" + seed + " chunks=" + chunks + " file=" + fileBacked +
                "; replay all cases with -Dtidemark.test.seed=" + baseSeed + "; last operations " +
                log.subList(Math.max(0, log.size() - 12), log.size()) + ": " + ex, ex);
        }
    }

    private void run(final long chunks, final boolean fileBacked, final long seed, final List<String> log) throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        final long granularity = 512;
        // A partial last chunk half of the time.
        final long tail = chunks > 0 && random.nextBoolean() ? 1 + random.nextInt((int)granularity - 1) : 0;
        long diskSize = chunks == 0 ? 0 : (tail == 0 ? chunks * granularity : (chunks - 1) * granularity + tail);
        // Odd seeds keep every level in scratch files (lazily zeroed mappings), the path of large bitmaps.
        final MappedBitmap.Options options = new MappedBitmap.Options().regionBytes(SMALL_REGION)
            .scratchThreshold((seed & 1) != 0 ? 0 : MappedBitmap.DEFAULT_SCRATCH_THRESHOLD);
        final Path file = dir.resolve("model-" + seed + ".tmbm");
        MappedBitmap bitmap = fileBacked ?
            MappedBitmap.create(file, "model", diskSize, granularity, options) :
            MappedBitmap.createAnonymous("model", diskSize, granularity, options);
        BitSet model = new BitSet();
        try
        {
            final int steps = 800;
            for (int step = 0; step < steps; step++)
            {
                final long chunkCount = bitmap.chunkCount();
                final int op = random.nextInt(100);
                if (diskSize > 0 && op < 45)
                {
                    final long[] range = randomRange(random, diskSize, granularity);
                    final BitSet before = (BitSet)model.clone();
                    model.set((int)(range[0] / granularity), (int)((range[0] + range[1] - 1) / granularity) + 1);
                    log.add("mark " + range[0] + "+" + range[1]);
                    assertThat(bitmap.mark(range[0], range[1])).isEqualTo(!before.equals(model));
                }
                else if (op < 60)
                {
                    final long[] range = randomRange(random, diskSize, granularity);
                    final long end = range[0] + range[1];
                    final long first = (range[0] + granularity - 1) / granularity;
                    final long stop = end == diskSize ? chunkCount : end / granularity;
                    if (first < stop)
                    {
                        model.clear((int)first, (int)stop);
                    }
                    log.add("clear " + range[0] + "+" + range[1]);
                    bitmap.clear(range[0], range[1]);
                }
                else if (op < 62)
                {
                    log.add("clearAll");
                    model.clear();
                    bitmap.clearAll();
                }
                else if (op < 70)
                {
                    final long sourceGranularity = new long[] {256 * 2, 1024, 4096, 512}[random.nextInt(4)];
                    try (MappedBitmap source = MappedBitmap.createAnonymous("src", diskSize, sourceGranularity, options))
                    {
                        for (int k = random.nextInt(5); k > 0 && diskSize > 0; k--)
                        {
                            final long[] range = randomRange(random, diskSize, granularity);
                            if (range[1] > 0)
                            {
                                source.mark(range[0], range[1]);
                            }
                        }
                        final BitSet target = model;
                        source.forEachDirtyExtent(0, diskSize, (o, l) ->
                        {
                            target.set((int)(o / granularity), (int)((o + l - 1) / granularity) + 1);
                            return true;
                        });
                        log.add("merge granularity " + sourceGranularity + " " + source.dirtyChunkCount() + " chunks");
                        bitmap.merge(random.nextBoolean() ? source : source.readOnlyView());
                    }
                }
                else if (op < 73)
                {
                    final long newChunks = Math.max(0, chunkCount + random.nextInt(200) - 100);
                    final long newSize = newChunks == 0 ? 0 : newChunks * granularity - random.nextInt((int)granularity);
                    log.add("resize " + diskSize + " -> " + newSize);
                    bitmap.resize(newSize);
                    diskSize = newSize;
                    final long kept = bitmap.chunkCount();
                    model = model.get(0, (int)kept);
                }
                else if (op < 75 && fileBacked)
                {
                    log.add("reopen");
                    bitmap.close();
                    bitmap = MappedBitmap.open(file, false, options);
                    assertThat(bitmap.openState()).isEqualTo(OpenState.CLEAN);
                }
                else if (op < 77 && fileBacked)
                {
                    // What a killed process leaves (in use, no stored summary); the operations that follow
                    // run while the summary is rebuilt in the background.
                    log.add("crash-reopen");
                    final Path crashed = dir.resolve("crashed-" + seed + ".tmbm");
                    Files.copy(file, crashed);
                    bitmap.close();
                    Files.move(crashed, file, StandardCopyOption.REPLACE_EXISTING);
                    bitmap = MappedBitmap.open(file, false, options);
                    assertThat(bitmap.openState()).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
                }
                else
                {
                    checkQueries(random, bitmap, model, diskSize, granularity);
                }
                if (step % 25 == 0 || step == steps - 1)
                {
                    checkAll(bitmap, model, diskSize, granularity);
                }
            }
        }
        finally
        {
            bitmap.close();
        }
    }

    private static long[] randomRange(final SplittableRandom random, final long diskSize, final long granularity)
    {
        if (diskSize == 0)
        {
            return new long[] {0, 0};
        }
        final long offset = random.nextLong(diskSize);
        final long maxLength = diskSize - offset;
        final long length;
        switch (random.nextInt(4))
        {
            case 0:
                length = 1 + random.nextLong(Math.min(maxLength, granularity * 2));
                break;
            case 1:
                length = 1 + random.nextLong(Math.min(maxLength, granularity * 200));
                break;
            case 2:
                length = maxLength;
                break;
            default:
                length = 1 + random.nextLong(maxLength);
                break;
        }
        return new long[] {offset, length};
    }

    private static void checkQueries(
        final SplittableRandom random, final MappedBitmap bitmap, final BitSet model, final long diskSize,
        final long granularity)
    {
        if (diskSize == 0)
        {
            assertThat(bitmap.nextDirty(0)).isEqualTo(-1);
            assertThat(bitmap.nextClean(0)).isEqualTo(-1);
            return;
        }
        final long chunks = bitmap.chunkCount();
        for (int i = 0; i < 20; i++)
        {
            final long offset = random.nextLong(diskSize + 1);
            final long chunk = offset / granularity;
            final int nextSet = offset == diskSize ? -1 : model.nextSetBit((int)chunk);
            assertThat(bitmap.nextDirty(offset)).as("nextDirty(%d)", offset)
                .isEqualTo(nextSet < 0 ? -1 : Math.max(nextSet * granularity, offset));
            final int nextClear = offset == diskSize ? -1 : model.nextClearBit((int)chunk);
            assertThat(bitmap.nextClean(offset)).as("nextClean(%d)", offset)
                .isEqualTo(nextClear < 0 || nextClear >= chunks ? -1 : Math.max(nextClear * granularity, offset));
            if (offset < diskSize)
            {
                assertThat(bitmap.isDirty(offset)).isEqualTo(model.get((int)chunk));
            }
            final long[] range = randomRange(random, diskSize, granularity);
            assertThat(MappedBitmapBasicsTest.extents(bitmap, range[0], range[1]))
                .as("extents in [%d, +%d)", range[0], range[1])
                .isEqualTo(modelExtents(model, range[0], range[1], diskSize, granularity));
        }
    }

    static void checkAll(final MappedBitmap bitmap, final BitSet model, final long diskSize, final long granularity)
        throws Exception
    {
        assertThat(bitmap.diskSize()).isEqualTo(diskSize);
        assertThat(bitmap.dirtyChunkCount()).isEqualTo(model.cardinality());
        assertThat(bitmap.dirtyByteCount()).isEqualTo(model.cardinality() * granularity);
        assertThat(MappedBitmapBasicsTest.extents(bitmap, 0, diskSize))
            .isEqualTo(modelExtents(model, 0, diskSize, diskSize, granularity));
        assertThat(bitmap.sha256()).isEqualTo(qemuSha256(model, bitmap.chunkCount()));
        assertThat(bitmap.checkConsistency()).isEmpty();
    }

    static List<Long> modelExtents(
        final BitSet model, final long offset, final long length, final long diskSize, final long granularity)
    {
        final List<Long> out = new ArrayList<>();
        if (length == 0)
        {
            return out;
        }
        final long end = offset + length;
        int chunk = model.nextSetBit((int)(offset / granularity));
        while (chunk >= 0 && chunk * granularity < end)
        {
            final int clean = model.nextClearBit(chunk);
            final long start = Math.max(chunk * granularity, offset);
            final long stop = Math.min(Math.min(clean * granularity, end), diskSize);
            out.add(start);
            out.add(stop - start);
            chunk = model.nextSetBit(clean);
        }
        return out;
    }

    /** QEMU's digest, computed independently: max(1, ceil(chunks/64)) little-endian words from the BitSet. */
    static byte[] qemuSha256(final BitSet model, final long chunks) throws Exception
    {
        final int words = (int)Math.max(1, (chunks + 63) / 64);
        final byte[] bytes = new byte[words * 8];
        for (int bit = model.nextSetBit(0); bit >= 0; bit = model.nextSetBit(bit + 1))
        {
            bytes[bit / 8] |= (byte)(1 << (bit % 8));
        }
        return MessageDigest.getInstance("SHA-256").digest(bytes);
    }
}
