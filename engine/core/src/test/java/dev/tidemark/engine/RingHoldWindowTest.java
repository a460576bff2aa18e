package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.io.testing.Waits;
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
            Waits.sleepAtLeast(HOLD_NANOS);
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
        return Waits.firstFound(disk::takeRingHoldWindow, window -> window.longestBatchNanos() > 0, 10);
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

            store.hook((offset, length) -> Waits.sleepAtLeast(HOLD_NANOS));
            disk.write(8192, ByteBuffer.allocate(4096), false);
            store.hook((offset, length) -> { });
            final RingStatistics.HoldWindow slow = awaitBatch(disk);
            assertThat(slow.longestBatchNanos()).isGreaterThanOrEqualTo(HOLD_NANOS);
            assertThat(slow.longestBatchRequests()).isEqualTo(1);
            assertThat(slow.longestControlNanos()).as("no control request ran").isZero();
        }
    }
}
