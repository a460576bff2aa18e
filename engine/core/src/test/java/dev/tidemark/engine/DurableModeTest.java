package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.ExtentConsumer;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * I5's write path: group commit once per batch, and no data write before its bits are set (and forced); under both
 * pipelines.
 */
class DurableModeTest
{
    private static final int SIZE = 16 << 20;
    private static final long G = 65536;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void durableModeForcesOncePerBatchBeforeAnyWriteOfTheBatch(final Pipeline pipeline)
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> run(pipeline, seed, true), () -> "seed " + seed);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void lazyModeNeverForcesButStillMarksBeforeWriting(final Pipeline pipeline)
    {
        final long seed = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> run(pipeline, seed, false), () -> "seed " + seed);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void aFailedForceFailsEveryWriteOfItsBatchAndWritesNoneOfThem(final Pipeline pipeline) throws Exception
    {
        final SpyFiles files = new SpyFiles();
        final HeapStore store = new HeapStore(SIZE);
        final List<Long> written = new CopyOnWriteArrayList<>();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm"), files)
            .withDurable(true).withPipeline(pipeline)))
        {
            disk.transaction(BitmapActions.add("b", G, true, false));
            final SpyBitmap spy = files.made.get(0);
            store.hook((offset, length) -> written.add(offset));
            spy.failForce = true;
            final List<CompletableFuture<Void>> writes = new ArrayList<>();
            for (int i = 0; i < 64; i++)
            {
                // Distinct chunks, so every batch gains a bit and has to force.
                writes.add(disk.writeAsync(i * G, ByteBuffer.allocate(512), false));
            }
            for (final CompletableFuture<Void> write : writes)
            {
                assertThatThrownBy(write::join).hasRootCauseMessage("injected force failure")
                    .cause().isInstanceOf(IOException.class).hasMessage("durable mode: forcing bitmap pages failed");
            }
            assertThat(written).as("data of writes whose bits were not forced").isEmpty();
            spy.failForce = false;
            disk.write(100 * G, ByteBuffer.allocate(512), false);
            assertThat(written).containsExactly(100 * G);
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void aHandlerBugFailsOnlyItsRequestAndTheRingGoesOn(final Pipeline pipeline) throws Exception
    {
        final SpyFiles files = new SpyFiles();
        final HeapStore store = new HeapStore(SIZE);
        final List<Long> written = new CopyOnWriteArrayList<>();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm"), files)
            .withPipeline(pipeline)))
        {
            disk.transaction(BitmapActions.add("b", G, true, false));
            final SpyBitmap spy = files.made.get(0);
            store.hook((offset, length) -> written.add(offset));
            spy.poison = 5 * G;
            final CompletableFuture<Void> before = disk.writeAsync(0, ByteBuffer.allocate(512), false);
            final CompletableFuture<Void> poisoned = disk.writeAsync(5 * G, ByteBuffer.allocate(512), false);
            final CompletableFuture<Void> after = disk.writeAsync(G, ByteBuffer.allocate(512), false);
            assertThatThrownBy(poisoned::join).hasRootCauseInstanceOf(IllegalStateException.class)
                .hasRootCauseMessage("bitmap bug");
            before.join();
            after.join();
            final CompletableFuture<Long> task = disk.ring().submitTask(() ->
            {
                throw new AssertionError("task bug");
            });
            assertThatThrownBy(task::join).hasRootCauseInstanceOf(AssertionError.class);
            disk.write(2 * G, ByteBuffer.allocate(512), false);
            assertThat(written).containsExactly(0L, G, 2 * G);
        }
    }

    private void run(final Pipeline pipeline, final long seed, final boolean durable) throws Exception
    {
        final SpyFiles files = new SpyFiles();
        final HeapStore store = new HeapStore(SIZE);
        final List<String> violations = new CopyOnWriteArrayList<>();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm"), files)
            .withDurable(durable).withPipeline(pipeline)))
        {
            disk.transaction(BitmapActions.add("b", G, true, false));
            final SpyBitmap spy = files.made.get(0);
            store.hook((offset, length) ->
            {
                for (long chunk = offset / G; chunk <= (offset + length - 1) / G; chunk++)
                {
                    if (!spy.isDirty(chunk * G))
                    {
                        violations.add("chunk " + chunk + " written before its bit was set");
                    }
                    if (durable && !spy.forcedChunk((int) chunk))
                    {
                        violations.add("chunk " + chunk + " written before its bit was forced");
                    }
                }
            });
            final int threads = 4;
            final int each = 300;
            final List<Thread> writers = new ArrayList<>();
            final AtomicInteger failures = new AtomicInteger();
            for (int t = 0; t < threads; t++)
            {
                final SplittableRandom random = new SplittableRandom(seed + t);
                final Thread writer = new Thread(() ->
                {
                    for (int i = 0; i < each; i++)
                    {
                        final long offset = random.nextLong(SIZE - 8192);
                        try
                        {
                            if (i % 10 == 0)
                            {
                                disk.writeZeroes(offset, 1 + random.nextInt(8192), false, false);
                            }
                            else
                            {
                                disk.write(offset, ByteBuffer.allocate(1 + random.nextInt(8192)), false);
                            }
                        }
                        catch (final IOException | RuntimeException ex)
                        {
                            failures.incrementAndGet();
                        }
                    }
                });
                writer.start();
                writers.add(writer);
            }
            for (final Thread writer : writers)
            {
                writer.join();
            }
            assertThat(failures.get()).isZero();
            assertThat(violations).as("seed %d", seed).isEmpty();
            final long groupCommits = disk.ring().groupCommits();
            if (durable)
            {
                assertThat(spy.forces.get()).as("one force per group commit (one bitmap)").isEqualTo(groupCommits);
                assertThat(groupCommits).as("batches were grouped").isGreaterThan(0).isLessThan(threads * each);
                assertThat(groupCommits).isLessThanOrEqualTo(disk.ring().batches());
            }
            else
            {
                assertThat(spy.forces.get()).isZero();
                assertThat(groupCommits).isZero();
            }
            System.out.printf("pipeline=%s durable=%s writes=%d batches=%d groupCommits=%d forces=%d%n", pipeline,
                durable, threads * each, disk.ring().batches(), groupCommits, spy.forces.get());
        }
    }
}
