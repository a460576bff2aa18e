package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.io.testing.HeapStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@link TrackedDisk#takeRingHoldWindow()}: the longest ring holds, per window; one test thread. */
@Timeout(60)
class RingHoldWindowTest
{
    private static final long HOLD_NANOS = TimeUnit.MILLISECONDS.toNanos(40);

    @TempDir
    Path dir;

    /** Holds the ring thread in its commit, as a slow control action would. */
    private static final class SlowAction implements ControlAction
    {
        @Override
        public void prepare(final CutContext ctx)
        {
        }

        @Override
        public void commit(final CutContext ctx)
        {
            sleepAtLeast(HOLD_NANOS);
        }

        @Override
        public void abort(final CutContext ctx)
        {
        }

        @Override
        public String type()
        {
            return "x-slow";
        }
    }

    /**
     * The ring records a drain after it completed the drain's requests, so the write's caller can be back before the
     * figure is; a window taken that early is empty and loses nothing.
     */
    private static RingStatistics.HoldWindow awaitBatch(final TrackedDisk disk)
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        RingStatistics.HoldWindow window = disk.takeRingHoldWindow();
        while (window.longestBatchNanos() == 0 && System.nanoTime() < deadline)
        {
            Thread.onSpinWait();
            window = disk.takeRingHoldWindow();
        }
        return window;
    }

    private static void sleepAtLeast(final long nanos)
    {
        final long end = System.nanoTime() + nanos;
        for (long left = nanos; left > 0; left = end - System.nanoTime())
        {
            LockSupport.parkNanos(left);
        }
    }

    @Test
    void aSlowControlRequestShowsInItsWindowOnlyAndIsNamed() throws IOException
    {
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new HeapStore(4 << 20), dir.resolve("bm"))))
        {
            disk.takeRingHoldWindow();
            disk.transaction(List.of(new SlowAction()));
            final RingStatistics.HoldWindow window = disk.takeRingHoldWindow();
            assertThat(window.longestControlNanos()).isGreaterThanOrEqualTo(HOLD_NANOS);
            assertThat(window.longestControlKind()).isEqualTo("x-slow");
            assertThat(window.longestControlCpuNanos()).isLessThan(window.longestControlNanos());

            final RingStatistics.HoldWindow next = disk.takeRingHoldWindow();
            assertThat(next.longestControlNanos()).as("a new window starts empty").isZero();
            assertThat(next.longestControlKind()).isEmpty();
            assertThat(next.longestBatchNanos()).isZero();
        }
    }

    @Test
    void aSlowStoreWriteShowsAsTheLongestBatch() throws IOException
    {
        final HeapStore store = new HeapStore(4 << 20);
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm"))))
        {
            disk.write(0, ByteBuffer.allocate(4096), false);
            final RingStatistics.HoldWindow quick = awaitBatch(disk);
            assertThat(quick.longestBatchNanos()).isPositive().isLessThan(HOLD_NANOS);

            store.hook((offset, length) -> sleepAtLeast(HOLD_NANOS));
            disk.write(8192, ByteBuffer.allocate(4096), false);
            store.hook((offset, length) -> { });
            final RingStatistics.HoldWindow slow = awaitBatch(disk);
            assertThat(slow.longestBatchNanos()).isGreaterThanOrEqualTo(HOLD_NANOS);
            assertThat(slow.longestBatchRequests()).isEqualTo(1);
            assertThat(slow.longestControlNanos()).as("no control request ran").isZero();
        }
    }
}
