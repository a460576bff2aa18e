package dev.tidemark.engine.job;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What the backup tests share, as their base class: a disk {@code vda} of seeded data in a temporary folder, its
 * events and job manager, raw targets, and waiting for a job to be gone; each test instance is confined to its test
 * thread (the disk and the event log are thread-safe).
 */
abstract class DiskTestSupport
{
    @TempDir
    Path dir;

    /** Seeds the disk's data and whatever else a test draws; printed in failures. */
    final long seed = System.nanoTime();
    final EventLog events = new EventLog();
    final JobManager manager = new JobManager();
    TrackedDisk disk;
    /** The disk's content when it was opened. */
    byte[] base;
    private int targets;

    /** Opens {@code disk.raw} of {@code size} bytes, filled by {@link Workload#fill}, with the default pipeline. */
    void openDisk(final int size) throws Exception
    {
        openDisk(createDisk(size));
    }

    /** Opens a store the test filled itself as the disk, with the default pipeline. */
    void openDisk(final RawFileStore store) throws Exception
    {
        openDisk(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda"));
    }

    /** Opens a store the test made itself as the disk, with a given ring pipeline. */
    void openDisk(final RawFileStore store, final Pipeline pipeline) throws Exception
    {
        openDisk(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda").withPipeline(pipeline));
    }

    /** As {@link #openDisk(int)} with a given ring pipeline. */
    void openDisk(final int size, final Pipeline pipeline) throws Exception
    {
        openDisk(DiskOptions.of(createDisk(size), dir.resolve("bitmaps")).withName("vda").withPipeline(pipeline));
    }

    private RawFileStore createDisk(final int size) throws Exception
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), size);
        base = Workload.fill(store, seed);
        return store;
    }

    private void openDisk(final DiskOptions options) throws Exception
    {
        disk = TrackedDisk.open(options);
        disk.addListener(events);
    }

    @AfterEach
    void close() throws Exception
    {
        if (disk != null)
        {
            disk.close();
        }
    }

    /** @return a new all-hole raw target {@code t<n>.raw} in the test's folder. */
    RawFileStore target(final long size) throws Exception
    {
        return RawFileStore.create(dir.resolve("t" + targets++ + ".raw"), size);
    }

    /** Waits (at most 60 s) until the job reached {@code null} and its events say so. */
    void awaitGone(final Job job)
    {
        EventLog.await(() -> job.status() == JobStatus.NULL
            && events.briefFor(job.id()).contains(job.id() + ":null"), 60_000,
            "job " + job.id() + " to finish (seed " + seed + ")");
    }

    /** Waits as {@link #awaitGone} for the started job, which must have completed without an error. */
    void awaitSucceeded(final BackupStartAction start)
    {
        awaitGone(start.job());
        assertThat(events.last(start.job().id(), "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
    }
}
