package dev.tidemark.engine.job;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.ForwardingBlockStore;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Copy-before-write into the job's stash: a guest write that must preserve a chunk does not wait for a target the
 * worker holds, the stash is bounded, and a stashed chunk the target refuses fails the job without losing a bit.
 * The target blocks every write until the test lets it go, so "the worker holds the target" is certain, not timed.
 */
@Timeout(60)
class CbwStashTest extends DiskTestSupport
{
    private static final int SIZE = 8 << 20;
    private static final int CHUNK = 64 << 10;
    /** Chunks dirty at the backup's cut: the incremental backup copies exactly these. */
    private static final int[] DIRTY = {0, 10, 20, 30, 40};
    private static final long NO_FAILURE = -1;

    private final CountDownLatch workerInTarget = new CountDownLatch(1);
    private final CountDownLatch releaseTarget = new CountDownLatch(1);
    /** The content the backup must hold: the disk at its cut. */
    private byte[] atCut;

    @BeforeEach
    void open() throws Exception
    {
        openDisk(SIZE);
        disk.transaction(BitmapActions.add("b0"));
        atCut = base.clone();
        for (final int chunk : DIRTY)
        {
            final byte[] data = new byte[4096];
            Arrays.fill(data, (byte)(chunk + 1));
            disk.write((long)chunk * CHUNK, ByteBuffer.wrap(data), false);
            System.arraycopy(data, 0, atCut, chunk * CHUNK, data.length);
        }
    }

    @AfterEach
    void clearProperty()
    {
        releaseTarget.countDown();
        System.clearProperty(BackupJob.STASH_PROPERTY);
    }

    @Test
    void aGuestWriteDoesNotWaitForTheTargetTheWorkerHolds() throws Exception
    {
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, NO_FAILURE);
            // Chunk 20 is needed and nobody claimed it: its old data goes to the stash, the write goes on.
            final CompletableFuture<Void> write = guestWrite(20);
            write.get(10, TimeUnit.SECONDS);
            assertThat(start.job().status()).isEqualTo(JobStatus.RUNNING);
            releaseTarget.countDown();
            awaitSucceeded(start);
            assertHoldsTheCut(raw);
        }
    }

    @Test
    void withoutTheStashTheSameWriteWaitsForTheTarget() throws Exception
    {
        // The contrast that shows the test above can fail: copying to the target itself waits for the worker.
        System.setProperty(BackupJob.STASH_PROPERTY, "0");
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, NO_FAILURE);
            final CompletableFuture<Void> write = guestWrite(20);
            assertThatThrownBy(() -> write.get(500, TimeUnit.MILLISECONDS)).isInstanceOf(TimeoutException.class);
            releaseTarget.countDown();
            write.get(10, TimeUnit.SECONDS);
            awaitSucceeded(start);
            assertHoldsTheCut(raw);
        }
    }

    @Test
    void aFullStashFallsBackToCopyingToTheTarget() throws Exception
    {
        System.setProperty(BackupJob.STASH_PROPERTY, Integer.toString(2 * CHUNK));
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, NO_FAILURE);
            guestWrite(10).get(10, TimeUnit.SECONDS);
            guestWrite(20).get(10, TimeUnit.SECONDS);
            final CompletableFuture<Void> third = guestWrite(30);
            assertThatThrownBy(() -> third.get(500, TimeUnit.MILLISECONDS)).as("two slots, both in flight")
                .isInstanceOf(TimeoutException.class);
            releaseTarget.countDown();
            third.get(10, TimeUnit.SECONDS);
            awaitSucceeded(start);
            assertHoldsTheCut(raw);
        }
    }

    @Test
    void aStashedChunkTheTargetRefusesFailsTheJobAndKeepsEveryBit() throws Exception
    {
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, 20L * CHUNK);
            guestWrite(20).get(10, TimeUnit.SECONDS);
            releaseTarget.countDown();
            awaitGone(start.job());
            assertThat(events.last(start.job().id(), "BLOCK_JOB_COMPLETED").data().get("error").toString())
                .contains("copy-before-write failed at offset " + 20L * CHUNK);
            // The failed job reclaims: the bits at the cut and the guest's write after it are all still dirty.
            assertThat(disk.bitmaps().query("b0").busy()).isFalse();
            for (final int chunk : DIRTY)
            {
                assertThat(disk.bitmaps().view("b0").isDirty((long)chunk * CHUNK)).as("chunk " + chunk).isTrue();
            }
        }
    }

    @Test
    void inAlwaysModeAStashedChunkLeavesTheBitmapOnlyOnceItIsOnTheTarget() throws Exception
    {
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, NO_FAILURE, BitmapMode.ALWAYS);
            guestWrite(20).get(10, TimeUnit.SECONDS);
            // Stashed, not yet on the target: a failure now must leave the chunk to the next backup, so its bit stays.
            assertThat(disk.bitmaps().view("b0").isDirty(20L * CHUNK)).as("stashed chunk still in the frozen bitmap")
                .isTrue();
            assertThat(disk.bitmaps().query("b0").count()).isEqualTo((long)DIRTY.length * CHUNK);
            releaseTarget.countDown();
            awaitSucceeded(start);
            assertHoldsTheCut(raw);
            // Copied, so cleared; the guest's write after the cut went to the successor and is dirty again.
            assertThat(disk.bitmaps().query("b0").count()).isEqualTo(CHUNK);
            assertThat(disk.bitmaps().view("b0").isDirty(20L * CHUNK)).isTrue();
        }
    }

    @Test
    void inAlwaysModeAStashedChunkTheTargetRefusesStaysInTheBitmapWhileCopiedOnesLeave() throws Exception
    {
        try (RawFileStore raw = target(SIZE))
        {
            final BackupStartAction start = startBlocked(raw, 20L * CHUNK, BitmapMode.ALWAYS);
            // Chunk 30's old data goes to the stash; the target refuses chunk 20, which the worker copies itself.
            guestWrite(30).get(10, TimeUnit.SECONDS);
            releaseTarget.countDown();
            awaitGone(start.job());
            assertThat(events.last(start.job().id(), "BLOCK_JOB_COMPLETED").data()).containsKey("error");
            assertThat(disk.bitmaps().view("b0").isDirty(20L * CHUNK)).as("refused chunk").isTrue();
            assertThat(disk.bitmaps().view("b0").isDirty(30L * CHUNK)).as("rewritten after the cut").isTrue();
            assertThat(disk.bitmaps().view("b0").isDirty(0)).as("chunk 0, copied first").isFalse();
        }
    }

    /**
     * Starts an incremental backup of {@code b0} into {@code raw} behind a target whose writes block until the test
     * releases them (and then fail at {@code failOffset}, if it is not {@link #NO_FAILURE}), and returns once the
     * worker is inside its first target write.
     */
    private BackupStartAction startBlocked(final RawFileStore raw, final long failOffset) throws Exception
    {
        return startBlocked(raw, failOffset, null);
    }

    /** As {@link #startBlocked(RawFileStore, long)} with a bitmap mode ({@code null}: incremental, the default). */
    private BackupStartAction startBlocked(final RawFileStore raw, final long failOffset, final BitmapMode mode)
        throws Exception
    {
        final ForwardingBlockStore gated = new ForwardingBlockStore(raw)
        {
            @Override
            public void write(final long offset, final ByteBuffer src) throws IOException
            {
                workerInTarget.countDown();
                try
                {
                    releaseTarget.await();
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                    throw new IOException(ex);
                }
                if (offset == failOffset)
                {
                    throw new IOException("injected target failure");
                }
                super.write(offset, src);
            }
        };
        final BackupStartAction start = new BackupStartAction(manager,
            BackupOptions.of("vda", mode == null ? SyncMode.INCREMENTAL : SyncMode.BITMAP).withJobId("j")
                .withBitmap("b0", mode), gated, null);
        disk.transaction(start);
        assertThat(workerInTarget.await(10, TimeUnit.SECONDS)).as("the worker reached the target").isTrue();
        return start;
    }

    /** Overwrites the first 4 KiB of a chunk from another thread. */
    private CompletableFuture<Void> guestWrite(final int chunk)
    {
        return CompletableFuture.runAsync(() ->
        {
            final byte[] data = new byte[4096];
            Arrays.fill(data, (byte)0x5a);
            try
            {
                disk.write((long)chunk * CHUNK, ByteBuffer.wrap(data), false);
            }
            catch (final Exception ex)
            {
                throw new IllegalStateException(ex);
            }
        });
    }

    private void assertHoldsTheCut(final RawFileStore raw) throws IOException
    {
        for (final int chunk : DIRTY)
        {
            final ByteBuffer copied = ByteBuffer.allocate(CHUNK);
            raw.read((long)chunk * CHUNK, copied);
            assertThat(copied.array()).as("chunk %d as at the cut (seed %d)", chunk, seed)
                .isEqualTo(Arrays.copyOfRange(atCut, chunk * CHUNK, (chunk + 1) * CHUNK));
        }
    }
}
