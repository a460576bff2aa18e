package dev.tidemark.engine.job;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Random verbs from two threads against running backups under write load: every refusal has one of QEMU's
 * messages, every status change follows the table, and every backup that completes equals the disk at its cut.
 */
@Timeout(120)
class VerbStressTest
{
    private static final int SIZE = 16 << 20;
    private static final Set<String> ALLOWED_REFUSALS = Set.of("Job is already paused",
        "Can't resume a job that was not paused");

    @TempDir
    Path dir;

    private final long seed = System.nanoTime();

    @Test
    void randomVerbsKeepTheMachineAndTheDataExact() throws Exception
    {
        final EventLog events = new EventLog();
        final JobManager manager = new JobManager();
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        final byte[] base = Workload.fill(store, seed);
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm")).withName("vda")))
        {
            disk.addListener(events);
            final Workload load = new Workload(disk, base, seed, 2, 64 << 10);
            try
            {
                load.start();
                for (int round = 0; round < 3; round++)
                {
                    final List<BackupJob> jobs = new ArrayList<>();
                    final List<Long> cuts = new ArrayList<>();
                    final List<RawFileStore> targets = new ArrayList<>();
                    for (int j = 0; j < 3; j++)
                    {
                        final RawFileStore t = RawFileStore.create(dir.resolve("r" + round + "j" + j), SIZE);
                        targets.add(t);
                        final BackupStartAction start = new BackupStartAction(manager, BackupOptions.of("vda",
                            SyncMode.FULL).withJobId("r" + round + "j" + j).withMaxRunBytes(128 << 10)
                            .withJob(new JobOptions(true, true, 8L << 20)), t, null);
                        cuts.add(disk.transaction(start));
                        jobs.add(start.job());
                    }
                    final List<Thread> pokers = new ArrayList<>();
                    final List<Throwable> failures = new ArrayList<>();
                    for (int p = 0; p < 2; p++)
                    {
                        final SplittableRandom random = new SplittableRandom(seed + round * 10 + p);
                        final Thread poker = new Thread(() ->
                        {
                            try
                            {
                                for (int i = 0; i < 300; i++)
                                {
                                    final Job job = jobs.get(random.nextInt(jobs.size()));
                                    try
                                    {
                                        switch (random.nextInt(10))
                                        {
                                            case 0, 1, 2 -> job.pause();
                                            case 3, 4, 5 -> job.resume();
                                            case 6, 7 -> job.setSpeed(random.nextInt(3) == 0 ? 0 : 8L << 20);
                                            case 8 -> job.queryBlockJobsInfo();
                                            default ->
                                            {
                                                if (random.nextInt(20) == 0)
                                                {
                                                    job.cancel();
                                                }
                                            }
                                        }
                                    }
                                    catch (final EngineException refused)
                                    {
                                        final String text = refused.getMessage();
                                        if (!ALLOWED_REFUSALS.contains(text)
                                            && !text.matches("Job '.*' in state '.*' cannot accept command verb '.*'"))
                                        {
                                            throw new AssertionError("unexpected refusal: " + text);
                                        }
                                    }
                                    Thread.sleep(random.nextInt(3));
                                }
                            }
                            catch (final Throwable t)
                            {
                                synchronized (failures)
                                {
                                    failures.add(t);
                                }
                            }
                        });
                        pokers.add(poker);
                        poker.start();
                    }
                    for (final Thread t : pokers)
                    {
                        t.join(60_000);
                    }
                    assertThat(failures).as("seed " + seed).isEmpty();
                    for (final BackupJob job : jobs)
                    {
                        // Leave every job free to finish: unpaused and unthrottled (it may end meanwhile).
                        try
                        {
                            job.setSpeed(0);
                            // Also clears a pause requested but not yet reached at a pause point.
                            job.resume();
                        }
                        catch (final EngineException raced)
                        {
                            assertThat(raced.getMessage()).matches(
                                "Job '.*' in state '.*' cannot accept command verb '.*'|Job is already paused"
                                    + "|Can't resume a job that was not paused");
                        }
                    }
                    for (int j = 0; j < jobs.size(); j++)
                    {
                        final BackupJob job = jobs.get(j);
                        EventLog.await(() -> job.status() == JobStatus.NULL
                            && events.briefFor(job.id()).contains(job.id() + ":null"), 60_000,
                            job.id() + " to end (seed " + seed + ")");
                        checkTransitions(events, job.id());
                        final EventLog.Event completed = events.last(job.id(), "BLOCK_JOB_COMPLETED");
                        if (completed != null)
                        {
                            assertThat(completed.data()).doesNotContainKey("error");
                            Workload.assertSameContent(load.contentAt(cuts.get(j)), Workload.read(targets.get(j)),
                                job.id() + " (seed " + seed + ")");
                        }
                        else
                        {
                            assertThat(events.last(job.id(), "BLOCK_JOB_CANCELLED")).isNotNull();
                        }
                        targets.get(j).close();
                    }
                }
                load.stop();
            }
            finally
            {
                load.halt();
            }
        }
    }

    /** Replays a job's JOB_STATUS_CHANGE events against QEMU's table, written out independently. */
    private void checkTransitions(final EventLog events, final String id)
    {
        final Map<String, Set<String>> table = Map.ofEntries(
            Map.entry("undefined", Set.of("created")),
            Map.entry("created", Set.of("running", "aborting", "null")),
            Map.entry("running", Set.of("paused", "ready", "waiting", "aborting")),
            Map.entry("paused", Set.of("running")),
            Map.entry("ready", Set.of("standby", "waiting", "aborting")),
            Map.entry("standby", Set.of("ready")),
            Map.entry("waiting", Set.of("pending", "aborting")),
            Map.entry("pending", Set.of("aborting", "concluded")),
            Map.entry("aborting", Set.of("aborting", "concluded")),
            Map.entry("concluded", Set.of("null")));
        String state = "undefined";
        for (final String e : events.briefFor(id))
        {
            final String what = e.substring(id.length() + 1);
            if (what.equals(what.toLowerCase(java.util.Locale.ROOT)))
            {
                assertThat(table.get(state)).as(id + ": " + state + " -> " + what + " (seed " + seed + ")")
                    .contains(what);
                state = what;
            }
        }
        assertThat(state).isEqualTo("null");
    }
}
