package dev.tidemark.engine.job;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.ForwardingBlockStore;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A guest that keeps rewriting chunks a slow, throttled backup still needs refills the copy-before-write stash as
 * fast as the worker drains it; cancel must still end the job promptly (the worker drains at most one stash's worth
 * between its checks, and nothing once cancelled). One test thread plus one writer thread, joined under the timeout.
 */
@Timeout(60)
class CbwStashCancelTest extends DiskTestSupport
{
    private static final long SIZE = 1L << 30;
    private static final int CHUNK = 64 << 10;
    private static final int CHUNKS = (int)(SIZE / CHUNK);

    @Test
    void cancelIsNotHeldOffByAGuestRefillingTheStash() throws Exception
    {
        openDisk(RawFileStore.create(dir.resolve("sparse.raw"), SIZE));
        disk.transaction(BitmapActions.add("b0"));
        final ByteBuffer small = ByteBuffer.allocateDirect(4096);
        for (int chunk = 0; chunk < CHUNKS; chunk++)
        {
            small.clear();
            disk.write((long)chunk * CHUNK, small, false);
        }
        final AtomicBoolean writing = new AtomicBoolean(true);
        // Each target write lets the guest rewrite one more needed chunk and waits for it: the stash is refilled
        // exactly as fast as the worker drains it, so a drain without a bound would never end.
        final Semaphore refill = new Semaphore(0);
        final Semaphore refilled = new Semaphore(0);
        final AtomicLong rewrites = new AtomicLong();
        try (RawFileStore raw = target(SIZE))
        {
            // Every target write takes 1 ms: the worker drains about 1,000 chunks a second at best.
            final ForwardingBlockStore slow = new ForwardingBlockStore(raw)
            {
                @Override
                public void write(final long offset, final ByteBuffer src) throws IOException
                {
                    try
                    {
                        Thread.sleep(1);
                        super.write(offset, src);
                        if (writing.get())
                        {
                            refill.release();
                            refilled.tryAcquire(200, TimeUnit.MILLISECONDS);
                        }
                    }
                    catch (final InterruptedException ex)
                    {
                        Thread.currentThread().interrupt();
                        throw new IOException(ex);
                    }
                }
            };
            final BackupStartAction start = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId("slow").withBitmap("b0", null)
                    .withJob(new JobOptions(true, true, 1 << 20)), slow, null);
            disk.transaction(start);
            // The guest walks the disk from the end (the worker starts at 0, throttled), so each write meets a chunk
            // the backup still needs and nobody claimed: its old data goes to the stash.
            final Thread guest = new Thread(() ->
            {
                final ByteBuffer data = ByteBuffer.allocateDirect(4096);
                for (long i = 0; writing.get(); )
                {
                    try
                    {
                        if (!refill.tryAcquire(10, TimeUnit.MILLISECONDS))
                        {
                            continue;
                        }
                        data.clear();
                        disk.write((CHUNKS - 1 - i % CHUNKS) * CHUNK + 8192, data, false);
                        i++;
                        rewrites.incrementAndGet();
                        refilled.release();
                    }
                    catch (final Exception ex)
                    {
                        return;
                    }
                }
            }, "guest");
            guest.start();
            // The worker's own runs are throttled to 16 chunks a second, so this many rewrites mean it is draining.
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (rewrites.get() < 200 && System.nanoTime() < deadline)
            {
                Thread.sleep(5);
            }
            assertThat(rewrites.get()).as("rewrites while the worker drains the stash").isGreaterThanOrEqualTo(200);
            final long cancelled = System.nanoTime();
            start.job().cancel();
            awaitGone(start.job());
            final long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - cancelled);
            final boolean guestStillWriting = guest.isAlive();
            writing.set(false);
            guest.join();
            assertThat(guestStillWriting).as("the guest was still refilling the stash when the job ended").isTrue();
            assertThat(millis).as("cancel to the job's end, while the guest writes (seed %d)", seed)
                .isLessThan(5_000);
        }
    }
}
