package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Clear and merge built off the ring ({@link ControlAction#stage}) and the ring's epochs and control times; runs
 * on JUnit's thread plus two writer threads per test.
 *
 * <p>Every write's ring sequence is known ({@link TrackedDisk#submit}), and so is every cut's, so the exact bits a
 * bitmap must hold after concurrent clears and merges are computed from the writes' sequences alone.
 */
@Timeout(120)
class StagedCutTest
{
    private static final int BLOCK = 4096;
    private static final int SIZE = 64 << 20;

    @TempDir
    Path dir;

    /** One completed write: its ring sequence and its chunk. */
    private record Write(long sequence, int chunk)
    {
    }

    /** Writes 4 KiB at random chunks from two threads, keeping every write's sequence. */
    private static final class Writers implements AutoCloseable
    {
        final ConcurrentLinkedQueue<Write> writes = new ConcurrentLinkedQueue<>();
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        private final AtomicBoolean stop = new AtomicBoolean();
        private final List<Thread> threads = new ArrayList<>();
        private final TrackedDisk disk;

        Writers(final TrackedDisk disk, final long seed)
        {
            this.disk = disk;
            final ByteBuffer zeros = ByteBuffer.allocateDirect(BLOCK).asReadOnlyBuffer();
            for (int t = 0; t < 2; t++)
            {
                final SplittableRandom random = new SplittableRandom(seed + t);
                final Thread thread = new Thread(() ->
                {
                    try
                    {
                        while (!stop.get())
                        {
                            final int chunk = random.nextInt(SIZE / BLOCK);
                            final long sequence = disk.submit(RequestKind.WRITE, (long)chunk * BLOCK, BLOCK,
                                zeros.duplicate(), false, false, (s, error) ->
                                {
                                    if (error != null)
                                    {
                                        failure.compareAndSet(null, error);
                                    }
                                });
                            writes.add(new Write(sequence, chunk));
                            if (random.nextInt(64) == 0)
                            {
                                Thread.yield();
                            }
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                }, "writer-" + t);
                threads.add(thread);
                thread.start();
            }
        }

        @Override
        public void close() throws IOException
        {
            stop.set(true);
            for (final Thread thread : threads)
            {
                try
                {
                    thread.join(30_000);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
            }
            // Every write published before the flush has completed once it returns.
            disk.flush();
            assertThat(failure.get()).isNull();
        }

        /** @return the chunks of the writes whose sequence is in (after, before). */
        BitSet chunks(final long after, final long before)
        {
            final BitSet out = new BitSet();
            for (final Write write : writes)
            {
                if (write.sequence() > after && write.sequence() < before)
                {
                    out.set(write.chunk());
                }
            }
            return out;
        }
    }

    private static BitSet bits(final TrackedDisk disk, final String name)
    {
        final BitSet out = new BitSet();
        disk.bitmaps().view(name).forEachDirtyExtent(0, SIZE, (offset, length) ->
        {
            out.set((int)(offset / BLOCK), (int)((offset + length) / BLOCK));
            return true;
        });
        return out;
    }

    private long fileOf(final String name)
    {
        return Journal.inspect(dir.resolve("bm").resolve(Journal.FILE_NAME)).bitmaps().get(name).fileId();
    }

    private TrackedDisk open(final HeapStore store, final Pipeline pipeline) throws IOException
    {
        return TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm")).withPipeline(pipeline)
            .withCloseStore(false));
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void clearAndMergeSwappedInAtTheCutAreExactUnderConcurrentWrites(final Pipeline pipeline) throws Exception
    {
        final long seed = System.nanoTime();
        final HeapStore store = new HeapStore(SIZE);
        final BitSet expected;
        final BitSet actual;
        try (TrackedDisk disk = open(store, pipeline))
        {
            disk.transaction(BitmapActions.add("a", BLOCK, true, false), BitmapActions.add("b", BLOCK, true, false));
            final long fileBefore = fileOf("a");
            final long cutD;
            final long cutC;
            final long cutM;
            final Writers writers = new Writers(disk, seed);
            try (writers)
            {
                Thread.sleep(100);
                cutD = disk.transaction(BitmapActions.disable("b"));
                Thread.sleep(50);
                cutC = disk.transaction(BitmapActions.clear("a"));
                final long fileAfterClear = fileOf("a");
                assertThat(fileAfterClear).as("clear put a staged file in place").isNotEqualTo(fileBefore);
                Thread.sleep(50);
                cutM = disk.transaction(BitmapActions.merge("a", List.of("b")));
                assertThat(fileOf("a")).as("merge put a staged file in place").isNotEqualTo(fileAfterClear);
                Thread.sleep(50);
            }
            // b recorded until its disable; a was cleared at cutC, then got b's bits at cutM and kept recording.
            expected = writers.chunks(0, cutD);
            expected.or(writers.chunks(cutC, Long.MAX_VALUE));
            assertThat(writers.chunks(cutD, cutC).cardinality()).as("writes fell between disable and clear")
                .isPositive();
            actual = bits(disk, "a");
            assertThat(actual).as("seed %d, cuts %d %d %d", seed, cutD, cutC, cutM).isEqualTo(expected);
            assertThat(bits(disk, "b")).as("seed %d", seed).isEqualTo(writers.chunks(0, cutD));
        }
        try (TrackedDisk reopened = open(store, pipeline))
        {
            assertThat(bits(reopened, "a")).as("after reopening, seed %d", seed).isEqualTo(expected);
        }
    }

    @Test
    void aMergeAfterAnotherChangeInItsTransactionMergesInPlaceAndStaysExact() throws Exception
    {
        final long seed = System.nanoTime();
        try (TrackedDisk disk = open(new HeapStore(SIZE), Pipeline.FUSED))
        {
            disk.transaction(BitmapActions.add("a", BLOCK, true, false), BitmapActions.add("b", BLOCK, true, false));
            final long fileBefore = fileOf("a");
            final long cutM;
            final Writers writers = new Writers(disk, seed);
            try (writers)
            {
                Thread.sleep(100);
                // The disables change the bitmaps before the merge's prepare, so its staged copy must not be used:
                // the writes since the copy were recorded (in a and b), yet neither records at the cut.
                cutM = disk.transaction(BitmapActions.disable("a"), BitmapActions.disable("b"),
                    BitmapActions.merge("a", List.of("b")));
                Thread.sleep(50);
            }
            assertThat(fileOf("a")).as("merged in place").isEqualTo(fileBefore);
            final BitSet expected = writers.chunks(0, cutM);
            assertThat(bits(disk, "a")).as("seed %d, cut %d", seed, cutM).isEqualTo(expected);
        }
    }

    @Test
    void aFailedTransactionRestoresTheSwappedBitsAndReleasesTheStagedOnes() throws Exception
    {
        try (TrackedDisk disk = open(new HeapStore(SIZE), Pipeline.FUSED))
        {
            disk.transaction(BitmapActions.add("a", BLOCK, true, false), BitmapActions.add("b", BLOCK, false, false));
            disk.write(0, ByteBuffer.allocate(BLOCK), false);
            disk.write(8L * BLOCK, ByteBuffer.allocate(BLOCK), false);
            final long file = fileOf("a");
            final long epoch = disk.ringStatistics().epoch();
            assertThatThrownBy(() -> disk.transaction(BitmapActions.clear("a"), BitmapActions.merge("b", List.of("a")),
                BitmapActions.clear("b"), BitmapActions.abort())).hasMessageContaining("Abort action");
            // The merge's staging opened a write log with a task (one cut); the aborted transaction opened none.
            assertThat(disk.ringStatistics().controlTimes().get("task").count()).isEqualTo(1);
            assertThat(disk.ringStatistics().epoch()).as("an aborted cut opens no epoch").isEqualTo(epoch + 1);
            assertThat(fileOf("a")).isEqualTo(file);
            assertThat(bits(disk, "a")).isEqualTo(BitSet.valueOf(new long[] {1 | 1 << 8}));
            assertThat(bits(disk, "b")).isEqualTo(BitSet.valueOf(new long[] {1 | 1 << 8}));
            // The staged files were released: only a's own file and the journal are left, once retirement ran.
            final long deadline = System.nanoTime() + 10_000_000_000L;
            List<String> files;
            do
            {
                Thread.sleep(10);
                try (var list = java.nio.file.Files.list(dir.resolve("bm")))
                {
                    files = list.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".tmbm")).toList();
                }
            }
            while (files.size() > 1 && System.nanoTime() < deadline);
            assertThat(files).containsExactly("bitmap-" + file + ".tmbm");
        }
    }

    @Test
    void theRingCountsEpochsAndTimesEachKindOfControlRequest() throws Exception
    {
        try (TrackedDisk disk = open(new HeapStore(SIZE), Pipeline.FUSED))
        {
            final long start = disk.ringStatistics().epoch();
            disk.transaction(BitmapActions.add("a", BLOCK, false, false));
            assertThat(disk.ringStatistics().epoch()).isEqualTo(start + 1);
            disk.ring().submitTask(() ->
            {
                final long until = System.nanoTime() + 30_000_000L;
                while (System.nanoTime() < until)
                {
                    Thread.onSpinWait();
                }
            }).join();
            assertThatThrownBy(() -> disk.transaction(BitmapActions.add("a", BLOCK, false, false)))
                .hasMessageContaining("already exists");
            final RingStatistics statistics = disk.ringStatistics();
            assertThat(statistics.epoch()).isEqualTo(start + 2);
            assertThat(statistics.controlTimes().get("block-dirty-bitmap-add").count()).isEqualTo(2);
            assertThat(statistics.controlTimes().get("task").count()).isEqualTo(1);
            assertThat(statistics.controlTimes().get("task").maxNanos()).isGreaterThanOrEqualTo(30_000_000L);
            assertThat(statistics.controlTimes().get("block-dirty-bitmap-add").maxNanos())
                .isLessThan(statistics.controlTimes().get("task").maxNanos());
        }
    }
}
