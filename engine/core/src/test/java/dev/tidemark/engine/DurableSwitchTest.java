package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.MappedBitmap;
import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Turning durable mode on forces the bits a lazy disk left unforced before its cut, from the caller's thread, so the
 * cut (on the ring) finds nothing left of them; writers racing the switch lose no bit and leave nothing unforced; and
 * switches from several threads at once force ahead only while the ring is still lazy. Each instance is confined to its test thread; writers are its own threads.
 */
@Timeout(120)
class DurableSwitchTest
{
    /** 128 bitmap pages at 4 KiB chunks: one data page of bits covers 128 MiB of disk. */
    private static final long SIZE = 16L << 30;
    private static final long CHUNK = 4096;
    private static final long PAGE_SPAN = 128L << 20;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void theCutForcesOnlyWhatWasMarkedAfterTheForceAhead(final Pipeline pipeline) throws Exception
    {
        final long seed = System.nanoTime();
        final PendingAtSwitch files = new PendingAtSwitch();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("d.raw"), SIZE),
            dir.resolve("bm"), files).withPipeline(pipeline)))
        {
            disk.transaction(BitmapActions.add("b", CHUNK, true, false),
                CheckpointActions.add("c0", List.of(disk.name())));
            final BitSet written = new BitSet();
            final ByteBuffer data = ByteBuffer.allocateDirect((int)CHUNK);
            for (long page = 0; page < SIZE / PAGE_SPAN; page++)
            {
                final long chunk = page * (PAGE_SPAN / CHUNK) + 7;
                data.clear();
                disk.write(chunk * CHUNK, data, false);
                written.set((int)chunk);
            }
            final MappedBitmap bits = files.made.get(0);
            assertThat(bits.pendingPageCount()).as("lazy mode leaves every page unforced").isEqualTo(SIZE / PAGE_SPAN);

            // Writers race the switch: their bits must all be set and, once durable, forced.
            final AtomicBoolean stop = new AtomicBoolean();
            final List<BitSet> perWriter = new ArrayList<>();
            final List<Thread> writers = new ArrayList<>();
            final List<Throwable> failures = new CopyOnWriteArrayList<>();
            for (int w = 0; w < 2; w++)
            {
                final SplittableRandom random = new SplittableRandom(seed + w);
                final BitSet mine = new BitSet();
                perWriter.add(mine);
                final Thread writer = new Thread(() ->
                {
                    final ByteBuffer buffer = ByteBuffer.allocateDirect((int)CHUNK);
                    try
                    {
                        while (!stop.get())
                        {
                            final long chunk = random.nextLong(SIZE / CHUNK);
                            buffer.clear();
                            disk.write(chunk * CHUNK, buffer, false);
                            mine.set((int)chunk);
                        }
                    }
                    catch (final IOException | RuntimeException ex)
                    {
                        failures.add(ex);
                    }
                }, "writer-" + w);
                writers.add(writer);
            }
            disk.durable(true);
            assertThat(files.pendingAtSwitch).as("pages left to the cut before any writer ran (seed " + seed + ")")
                .containsExactly(0L);

            disk.durable(false);
            writers.forEach(Thread::start);
            Thread.sleep(50);
            disk.durable(true);
            Thread.sleep(50);
            stop.set(true);
            for (final Thread writer : writers)
            {
                writer.join(30_000);
                assertThat(writer.isAlive()).as(writer.getName() + " stuck (seed " + seed + ")").isFalse();
            }
            assertThat(failures).isEmpty();
            perWriter.forEach(written::or);
            assertThat(bits.pendingPageCount()).as("durable mode leaves nothing unforced (seed " + seed + ")")
                .isZero();
            assertThat(bits.dirtyChunkCount()).as("dirty chunks (seed " + seed + ")").isEqualTo(written.cardinality());
            for (int chunk = written.nextSetBit(0); chunk >= 0; chunk = written.nextSetBit(chunk + 1))
            {
                assertThat(bits.isDirty(chunk * CHUNK)).as("chunk " + chunk + " (seed " + seed + ")").isTrue();
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void switchesFromSeveralThreadsForceAheadOnlyWhileTheRingIsLazy(final Pipeline pipeline) throws Exception
    {
        final long seed = System.nanoTime();
        final SpyFiles files = new SpyFiles();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("d.raw"), SIZE),
            dir.resolve("bm"), files).withPipeline(pipeline)))
        {
            disk.transaction(BitmapActions.add("b", CHUNK, true, false));
            final SpyBitmap spy = files.made.get(0);
            final List<String> violations = new CopyOnWriteArrayList<>();
            // A force off the ring is a force ahead: if the ring turned durable before it ended, a group commit could
            // have found the pages it needed already taken, and let a write through before they were on disk.
            spy.forcing = () ->
            {
                final String thread = Thread.currentThread().getName();
                if (!thread.startsWith("tidemark-") && disk.isDurable())
                {
                    violations.add(thread + " forced ahead while the ring was durable");
                }
            };
            final AtomicBoolean stop = new AtomicBoolean();
            final List<Throwable> failures = new CopyOnWriteArrayList<>();
            final List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < 2; w++)
            {
                final SplittableRandom random = new SplittableRandom(seed + w);
                threads.add(new Thread(() ->
                {
                    final ByteBuffer buffer = ByteBuffer.allocateDirect((int)CHUNK);
                    try
                    {
                        while (!stop.get())
                        {
                            buffer.clear();
                            disk.write(random.nextLong(SIZE / CHUNK) * CHUNK, buffer, false);
                        }
                    }
                    catch (final IOException | RuntimeException ex)
                    {
                        failures.add(ex);
                    }
                }, "writer-" + w));
            }
            final List<Thread> switchers = new ArrayList<>();
            for (int s = 0; s < 4; s++)
            {
                final SplittableRandom random = new SplittableRandom(seed + 100 + s);
                switchers.add(new Thread(() ->
                {
                    try
                    {
                        for (int i = 0; i < 40; i++)
                        {
                            disk.durable(random.nextInt(3) != 0);
                        }
                    }
                    catch (final RuntimeException ex)
                    {
                        failures.add(ex);
                    }
                }, "switcher-" + s));
            }
            threads.addAll(switchers);
            threads.forEach(Thread::start);
            for (final Thread switcher : switchers)
            {
                switcher.join(60_000);
                assertThat(switcher.isAlive()).as(switcher.getName() + " stuck (seed " + seed + ")").isFalse();
            }
            stop.set(true);
            for (final Thread thread : threads)
            {
                thread.join(30_000);
                assertThat(thread.isAlive()).as(thread.getName() + " stuck (seed " + seed + ")").isFalse();
            }
            assertThat(failures).isEmpty();
            assertThat(spy.forces.get()).as("forces ahead and group commits happened").isPositive();
            assertThat(violations).as("seed " + seed).isEmpty();
        }
    }

    /** Real mapped bitmaps; records, at the first switch to durable (on the ring), how many pages were unforced. */
    private static final class PendingAtSwitch extends ObservedBitmapFiles
    {
        final List<MappedBitmap> made = new CopyOnWriteArrayList<>();
        final List<Long> pendingAtSwitch = new CopyOnWriteArrayList<>();

        @Override
        DirtyBitmap made(final DirtyBitmap created)
        {
            made.add((MappedBitmap)created);
            return created;
        }

        @Override
        void switching(final DirtyBitmap bitmap, final boolean on)
        {
            if (on && pendingAtSwitch.isEmpty())
            {
                pendingAtSwitch.add(((MappedBitmap)bitmap).pendingPageCount());
            }
        }
    }
}
