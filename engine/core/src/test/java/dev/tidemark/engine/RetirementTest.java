package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Removed bitmaps are closed and deleted off the ring thread, after their last reader: a sha256 racing removals
 * never reads unmapped memory (the JVM would crash), transactions do not wait for the hash, and a clean close
 * leaves no retired file behind.
 */
@Timeout(120)
class RetirementTest
{
    private static final long SIZE = 64L << 30;

    @TempDir
    Path dir;

    @Test
    void hashesRacingRemovalsReadOnlyLiveBitmaps() throws Exception
    {
        final long seed = System.nanoTime();
        final SplittableRandom random = new SplittableRandom(seed);
        final Path bitmaps = dir.resolve("bm");
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicInteger hashes = new AtomicInteger();
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(dir.resolve("disk.raw"), SIZE),
            bitmaps).withCloseStore(true)))
        {
            final Thread hasher = new Thread(() ->
            {
                while (!stop.get())
                {
                    try
                    {
                        assertThat(disk.bitmaps().sha256("b")).hasSize(64);
                        hashes.incrementAndGet();
                    }
                    catch (final EngineException ex)
                    {
                        // Between a remove and the next add the bitmap does not exist: QEMU's error, expected.
                        assertThat(ex.getMessage()).isEqualTo("Dirty bitmap 'b' not found");
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                        return;
                    }
                }
            }, "hasher");
            hasher.start();
            for (int i = 0; i < 150 && failure.get() == null; i++)
            {
                disk.transaction(BitmapActions.add("b", 4096, i % 2 == 0, false));
                disk.write(random.nextLong(SIZE / 4096) * 4096, ByteBuffer.allocate(4096), false);
                if (i % 3 == 0)
                {
                    disk.transaction(BitmapActions.clear("b"));
                }
                disk.transaction(BitmapActions.remove("b"));
            }
            stop.set(true);
            hasher.join(30_000);
            assertThat(failure.get()).as("seed %d", seed).isNull();
            assertThat(hashes.get()).as("the hasher ran").isPositive();
        }
        try (Stream<Path> files = Files.list(bitmaps))
        {
            assertThat(files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".tmbm")))
                .as("every removed bitmap's file was deleted by close").isEmpty();
        }
    }
}
