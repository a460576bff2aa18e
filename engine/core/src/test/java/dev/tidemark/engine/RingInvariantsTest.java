package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.testing.HeapStore;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * I1 and I2 under load: many writers, bitmaps rotated and cleared by transactions at random moments, and a model
 * replayed in ring order that must equal every bitmap exactly; under both pipelines.
 */
class RingInvariantsTest
{
    private static final int DISK = 32 << 20;
    private static final long GRANULARITY = 4096;
    private static final int CHUNKS = (int) (DISK / GRANULARITY);

    @TempDir
    Path dir;

    /** What happened at one ring sequence. */
    private record Step(long sequence, long offset, long length, List<String> control)
    {
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void everyWriteIsDirtyInExactlyTheBitmapsRecordingAtItsPlaceInTheRing(final Pipeline pipeline)
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> runScenario(pipeline, seed, 4, 6000, false),
            () -> "seed " + seed);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void persistentBitmapsInDurableModeKeepTheSameInvariant(final Pipeline pipeline)
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> runScenario(pipeline, seed, 3, 3000, true),
            () -> "seed " + seed);
    }

    private void runScenario(final Pipeline pipeline, final long seed, final int writers, final int writesEach, final boolean durable)
        throws Exception
    {
        final HeapStore store = new HeapStore(DISK);
        final ConcurrentLinkedQueue<Step> log = new ConcurrentLinkedQueue<>();
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bitmaps"))
            .withDurable(durable).withRingSize(256).withPipeline(pipeline)))
        {
            assertThat(disk.ring().pipeline()).isEqualTo(pipeline);
            long cut = disk.transaction(BitmapActions.add("g0", GRANULARITY, durable, false));
            log.add(new Step(cut, 0, 0, List.of("add g0")));
            assertThat(disk.ring().markThread().getName())
                .isEqualTo(pipeline == Pipeline.FUSED ? "tidemark-disk0-ring" : "tidemark-disk0-mark");
            final CountDownLatch start = new CountDownLatch(1);
            final AtomicBoolean writing = new AtomicBoolean(true);
            // Writers go on past writesEach until the control loop has rotated a few times: on a fast JVM the
            // writes alone can end before the second rotation (seen on JDK 25), and then the run checks little.
            final AtomicInteger rotations = new AtomicInteger();
            final List<Thread> threads = new ArrayList<>();
            final List<CompletableFuture<Void>> pending = Collections.synchronizedList(new ArrayList<>());
            for (int t = 0; t < writers; t++)
            {
                final SplittableRandom random = new SplittableRandom(seed + t);
                final Thread thread = new Thread(() ->
                {
                    try
                    {
                        start.await();
                        for (int i = 0; i < writesEach || rotations.get() < 3 && i < 50 * writesEach; i++)
                        {
                            final long offset = random.nextLong(DISK - 1);
                            final long length = 1 + random.nextLong(Math.min(3 * GRANULARITY, DISK - offset));
                            final CompletableFuture<Void> done = new CompletableFuture<>();
                            final int kind = random.nextInt(10);
                            final long sequence;
                            if (kind == 0)
                            {
                                sequence = disk.submit(RequestKind.WRITE_ZEROES, offset, length, null, false, true,
                                    (s, e) -> complete(done, e));
                            }
                            else if (kind == 1)
                            {
                                sequence = disk.submit(RequestKind.DISCARD, offset, length, null, false, true,
                                    (s, e) -> complete(done, e));
                            }
                            else
                            {
                                sequence = disk.submit(RequestKind.WRITE, offset, length,
                                    ByteBuffer.allocate((int) length), random.nextInt(50) == 0,
                                    false, (s, e) -> complete(done, e));
                            }
                            log.add(new Step(sequence, offset, length, null));
                            pending.add(done);
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                }, "writer-" + t);
                thread.start();
                threads.add(thread);
            }
            final SplittableRandom random = new SplittableRandom(seed);
            final List<String> live = new ArrayList<>(List.of("g0"));
            int generation = 0;
            start.countDown();
            while (threads.stream().anyMatch(Thread::isAlive))
            {
                Thread.sleep(0, random.nextInt(200_000));
                final String current = "g" + generation;
                final int choice = random.nextInt(3);
                if (choice == 0)
                {
                    generation++;
                    final String next = "g" + generation;
                    cut = disk.transaction(BitmapActions.add(next, GRANULARITY, durable, false),
                        BitmapActions.disable(current));
                    log.add(new Step(cut, 0, 0, List.of("add " + next, "disable " + current)));
                    live.add(next);
                    rotations.incrementAndGet();
                }
                else if (choice == 1)
                {
                    cut = disk.transaction(BitmapActions.clear(current));
                    log.add(new Step(cut, 0, 0, List.of("clear " + current)));
                }
                else
                {
                    // A transaction that fails must leave no trace in the ring order either.
                    try
                    {
                        disk.transaction(BitmapActions.clear(current), BitmapActions.add(current));
                        throw new AssertionError("duplicate add was accepted");
                    }
                    catch (final EngineException expected)
                    {
                        assertThat(expected).hasMessage("Bitmap already exists: " + current);
                    }
                }
            }
            writing.set(false);
            for (final Thread thread : threads)
            {
                thread.join();
            }
            if (failure.get() != null)
            {
                throw new AssertionError("writer failed, seed " + seed, failure.get());
            }
            for (final CompletableFuture<Void> done : pending)
            {
                done.join();
            }
            final Map<String, BitSet> expected = replay(new ArrayList<>(log));
            for (final String name : live)
            {
                final BitmapView view = disk.bitmaps().view(name);
                final BitSet actual = new BitSet(CHUNKS);
                view.forEachDirtyExtent(0, DISK, (offset, length) ->
                {
                    actual.set((int) (offset / GRANULARITY), (int) ((offset + length + GRANULARITY - 1) / GRANULARITY));
                    return true;
                });
                final BitSet missing = (BitSet) expected.get(name).clone();
                missing.andNot(actual);
                final BitSet extra = (BitSet) actual.clone();
                extra.andNot(expected.get(name));
                assertThat(missing).as("chunks written while %s recorded but clean in it (I1), seed %d", name, seed)
                    .hasToString("{}");
                assertThat(extra).as("chunks dirty in %s though no write reached it while it recorded (I2), seed %d",
                    name, seed).hasToString("{}");
            }
            assertThat(live).as("rotations happened").hasSizeGreaterThan(2);
            assertThat(disk.ring().groupCommits()).as("group commits").isLessThanOrEqualTo(disk.ring().batches());
            if (!durable)
            {
                assertThat(disk.ring().groupCommits()).isZero();
            }
        }
    }

    private static void complete(final CompletableFuture<Void> done, final Throwable error)
    {
        if (error == null)
        {
            done.complete(null);
        }
        else
        {
            done.completeExceptionally(error);
        }
    }

    /** Replays the log in ring order on BitSets: the model of which bitmap recorded what. */
    private static Map<String, BitSet> replay(final List<Step> steps)
    {
        steps.sort((a, b) -> Long.compare(a.sequence(), b.sequence()));
        final Map<String, BitSet> bits = new LinkedHashMap<>();
        final Map<String, Boolean> recording = new LinkedHashMap<>();
        long previous = -1;
        for (final Step step : steps)
        {
            assertThat(step.sequence()).as("each sequence once").isGreaterThan(previous);
            previous = step.sequence();
            if (step.control() == null)
            {
                for (final Map.Entry<String, BitSet> entry : bits.entrySet())
                {
                    if (recording.get(entry.getKey()))
                    {
                        entry.getValue().set((int) (step.offset() / GRANULARITY),
                            (int) ((step.offset() + step.length() - 1) / GRANULARITY) + 1);
                    }
                }
                continue;
            }
            for (final String action : step.control())
            {
                final String[] parts = action.split(" ");
                switch (parts[0])
                {
                    case "add" ->
                    {
                        bits.put(parts[1], new BitSet(CHUNKS));
                        recording.put(parts[1], true);
                    }
                    case "disable" -> recording.put(parts[1], false);
                    case "clear" -> bits.get(parts[1]).clear();
                    default -> throw new IllegalStateException(action);
                }
            }
        }
        return bits;
    }
}
