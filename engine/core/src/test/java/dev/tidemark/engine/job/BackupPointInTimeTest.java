package dev.tidemark.engine.job;

import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * I3: backups and fleecing views taken under concurrent writes equal the disk at their cut, byte for byte; under both
 * ring pipelines.
 */
@Timeout(90)
class BackupPointInTimeTest extends DiskTestSupport
{
    private static final int SIZE = 32 << 20;


    private RawFileStore target(final String name) throws Exception
    {
        return RawFileStore.create(dir.resolve(name), SIZE);
    }

    private static final String[] STASH_BYTES_BY_ROUND = {Long.toString(64L << 20), Long.toString(128L << 10), "0"};

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void fullAndTopBackupsUnderLoadEqualTheDiskAtTheirCut(final Pipeline pipeline) throws Exception
    {
        openDisk(SIZE, pipeline);
        final Workload load = new Workload(disk, base, seed, 4, 128 << 10);
        try (RawFileStore full = target("full.raw");
            RawFileStore top = target("top.raw"))
        {
            load.start();
            EventLog.await(() -> load.logged() > 200, 20_000, "load to start");
            final BackupStartAction fullStart = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full").withCopyMethod(CopyMethod.KERNEL), full, null);
            final long fullCut = disk.transaction(fullStart);
            EventLog.await(() -> load.logged() > 400, 20_000, "more load");
            final BackupStartAction topStart = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.TOP).withJobId("top").withMaxRunBytes(256 << 10)
                    .withCopyMethod(CopyMethod.BUFFER), top, null);
            final long topCut = disk.transaction(topStart);
            awaitGone(fullStart.job());
            awaitGone(topStart.job());
            load.stop();
            assertThat(events.last("full", "BLOCK_JOB_COMPLETED").data()).as("seed " + seed)
                .doesNotContainKey("error").containsEntry("offset", (long)SIZE);
            assertThat(events.last("top", "BLOCK_JOB_COMPLETED").data()).as("seed " + seed).doesNotContainKey("error");
            Workload.assertSameContent(load.contentAt(fullCut), Workload.read(full), "full backup (seed " + seed + ")");
            Workload.assertSameContent(load.contentAt(topCut), Workload.read(top), "top backup (seed " + seed + ")");
        }
        finally
        {
            load.halt();
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void incrementalChainUnderLoadRestoresTheDiskAtEachCut(final Pipeline pipeline) throws Exception
    {
        openDisk(SIZE, pipeline);
        final Workload load = new Workload(disk, base, seed, 4, 64 << 10);
        try (RawFileStore full = target("full.raw"))
        {
            load.start();
            EventLog.await(() -> load.logged() > 100, 20_000, "load to start");
            final BackupStartAction fullStart = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full"), full, null);
            final long fullCut = disk.transaction(List.of(BitmapActions.add("b0"), fullStart));
            awaitGone(fullStart.job());
            final byte[] restored = Workload.read(full);
            Workload.assertSameContent(load.contentAt(fullCut), restored, "full backup (seed " + seed + ")");
            for (int round = 0; round < 3; round++)
            {
                final int before = load.logged();
                EventLog.await(() -> load.logged() > before + 200, 20_000, "more load");
                // Copy-before-write stashes freely in round 0, has two slots in round 1 (stashing and copying to the
                // target mixed), and copies to the target itself in round 2.
                System.setProperty(BackupJob.STASH_PROPERTY, STASH_BYTES_BY_ROUND[round]);
                try (RawFileStore inc = target("inc" + round + ".raw"))
                {
                    final BackupStartAction incStart = new BackupStartAction(manager,
                        BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId("inc" + round).withBitmap("b0", null)
                            .withCopyMethod(round % 2 == 0 ? CopyMethod.KERNEL : CopyMethod.BUFFER),
                        inc, null);
                    final long cut = disk.transaction(incStart);
                    awaitGone(incStart.job());
                    assertThat(events.last("inc" + round, "BLOCK_JOB_COMPLETED").data()).as("seed " + seed)
                        .doesNotContainKey("error");
                    applyCopied(incStart.job(), inc, restored);
                    Workload.assertSameContent(load.contentAt(cut), restored,
                        "full + incrementals up to round " + round + " (seed " + seed + ")");
                }
            }
            load.stop();
        }
        finally
        {
            System.clearProperty(BackupJob.STASH_PROPERTY);
            load.halt();
        }
    }

    /** Applies the extents a backup copied from its target onto an image. */
    static void applyCopied(final BackupJob job, final RawFileStore target, final byte[] image)
    {
        final AtomicReference<Exception> failure = new AtomicReference<>();
        job.forEachCopiedExtent((off, len) ->
        {
            try
            {
                final ByteBuffer buffer = ByteBuffer.allocate((int)len);
                target.read(off, buffer);
                System.arraycopy(buffer.array(), 0, image, (int)off, (int)len);
                return true;
            }
            catch (final Exception ex)
            {
                failure.set(ex);
                return false;
            }
        });
        if (failure.get() != null)
        {
            throw new AssertionError(failure.get());
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void fleecingViewUnderLoadReadsTheDiskAtItsCut(final Pipeline pipeline) throws Exception
    {
        openDisk(SIZE, pipeline);
        final Workload load = new Workload(disk, base, seed, 3, 64 << 10);
        try
        {
            load.start();
            EventLog.await(() -> load.logged() > 100, 20_000, "load to start");
            final FleecingView view = FleecingView.create(disk, FleecingOptions.of(dir, SIZE));
            final long cut = disk.transaction(view.openAction());
            final List<Thread> readers = new ArrayList<>();
            final byte[][] seen = new byte[2][];
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            for (int r = 0; r < 2; r++)
            {
                final int reader = r;
                final Thread t = new Thread(() ->
                {
                    try
                    {
                        for (int pass = 0; pass < 3; pass++)
                        {
                            seen[reader] = Workload.read(view);
                        }
                    }
                    catch (final Throwable ex)
                    {
                        failure.compareAndSet(null, ex);
                    }
                });
                readers.add(t);
                t.start();
            }
            for (final Thread t : readers)
            {
                t.join(60_000);
            }
            load.stop();
            if (failure.get() != null)
            {
                throw new AssertionError("reader failed (seed " + seed + ")", failure.get());
            }
            final byte[] expected = load.contentAt(cut);
            Workload.assertSameContent(expected, seen[0], "fleecing reader 0 (seed " + seed + ")");
            Workload.assertSameContent(expected, seen[1], "fleecing reader 1 (seed " + seed + ")");
            Workload.assertSameContent(expected, Workload.read(view), "fleecing after load (seed " + seed + ")");
            assertThat(view.cbwBytesUsed()).isPositive().isLessThanOrEqualTo(SIZE);
            view.close();
        }
        finally
        {
            load.halt();
        }
    }
}
