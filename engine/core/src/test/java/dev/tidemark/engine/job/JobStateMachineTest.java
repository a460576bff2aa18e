package dev.tidemark.engine.job;

import dev.tidemark.engine.EngineException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@Timeout(60)
class JobStateMachineTest
{
    /** QEMU's verb table, written out independently of {@link JobVerb#acceptedIn()} (protocol brief 2.5). */
    private static final Map<String, String> VERBS_ACCEPTED = Map.ofEntries(
        Map.entry("undefined", ""),
        Map.entry("created", "cancel pause resume set-speed change"),
        Map.entry("running", "cancel pause resume set-speed change"),
        Map.entry("paused", "cancel pause resume set-speed change"),
        Map.entry("ready", "cancel pause resume set-speed complete change"),
        Map.entry("standby", "cancel pause resume set-speed complete change"),
        Map.entry("waiting", "cancel"),
        Map.entry("pending", "cancel finalize"),
        Map.entry("aborting", ""),
        Map.entry("concluded", "dismiss"),
        Map.entry("null", ""));

    /** QEMU's transition table, written out independently of {@link JobStatus#successors()}. */
    private static final Map<String, String> SUCCESSORS = new HashMap<>(Map.of(
        "undefined", "created",
        "created", "running aborting null",
        "running", "paused ready waiting aborting",
        "paused", "running",
        "ready", "standby waiting aborting",
        "standby", "ready",
        "waiting", "pending aborting",
        "pending", "aborting concluded",
        "aborting", "aborting concluded",
        "concluded", "null"));

    private final AtomicInteger ids = new AtomicInteger();
    /** The event log and job manager of the test methods that need one of each. */
    private final EventLog log = new EventLog();
    private final JobManager manager = new JobManager();

    @Test
    void tablesMatchTheProtocolBrief()
    {
        SUCCESSORS.put("null", "");
        for (final JobStatus from : JobStatus.values())
        {
            for (final JobStatus to : JobStatus.values())
            {
                final boolean expected = List.of(SUCCESSORS.get(from.qmpName()).split(" ")).contains(to.qmpName());
                assertThat(from.canMoveTo(to)).as(from.qmpName() + " -> " + to.qmpName()).isEqualTo(expected);
            }
            for (final JobVerb verb : JobVerb.values())
            {
                final String accepted = VERBS_ACCEPTED.get(from.qmpName());
                final boolean expected = List.of(accepted.split(" ")).contains(verb.qmpName());
                assertThat(verb.isAcceptedIn(from)).as(verb.qmpName() + " in " + from.qmpName()).isEqualTo(expected);
            }
        }
    }

    @Test
    void everyVerbInEveryReachableState() throws Exception
    {
        final EnumSet<JobStatus> reachable = EnumSet.complementOf(EnumSet.of(JobStatus.UNDEFINED));
        for (final JobStatus state : reachable)
        {
            for (final JobVerb verb : JobVerb.values())
            {
                final JobManager manager = new JobManager();
                final EventLog log = new EventLog();
                final List<Runnable> cleanup = new ArrayList<>();
                final ScriptedJob job = enter(state, manager, log, cleanup);
                try
                {
                    applyAndCheck(job, state, verb, log);
                }
                finally
                {
                    cleanup.forEach(Runnable::run);
                    job.finish = true;
                    if (job.status() == JobStatus.PAUSED || job.status() == JobStatus.STANDBY)
                    {
                        job.resume();
                    }
                    job.awaitWorker(10_000);
                    final EnumSet<JobStatus> ends = EnumSet.of(JobStatus.CREATED, JobStatus.NULL, JobStatus.CONCLUDED,
                        JobStatus.PENDING);
                    EventLog.await(() -> ends.contains(job.status()), 10_000,
                        "job left in " + state.qmpName() + " after " + verb.qmpName() + " to end");
                }
            }
        }
    }

    private void applyAndCheck(final ScriptedJob job, final JobStatus state, final JobVerb verb, final EventLog log)
    {
        final String what = verb.qmpName() + " in " + state.qmpName();
        final boolean accepted = List.of(VERBS_ACCEPTED.get(state.qmpName()).split(" ")).contains(verb.qmpName());
        if (!accepted)
        {
            assertThatThrownBy(() -> apply(job, verb)).as(what)
                .isInstanceOf(EngineException.class)
                .hasMessage("Job '" + job.id() + "' in state '" + state.qmpName()
                    + "' cannot accept command verb '" + verb.qmpName() + "'");
            assertThat(job.status()).as(what + " leaves the state").isEqualTo(state);
            return;
        }
        final boolean paused = state == JobStatus.PAUSED || state == JobStatus.STANDBY;
        switch (verb)
        {
            case PAUSE:
                if (paused)
                {
                    assertThatThrownBy(job::pause).as(what).hasMessage("Job is already paused");
                }
                else
                {
                    job.pause();
                    if (state != JobStatus.CREATED)
                    {
                        final JobStatus expected = state == JobStatus.READY ? JobStatus.STANDBY : JobStatus.PAUSED;
                        EventLog.await(() -> job.status() == expected, 10_000, what);
                    }
                }
                break;
            case RESUME:
                if (paused)
                {
                    job.resume();
                    final JobStatus expected = state == JobStatus.STANDBY ? JobStatus.READY : JobStatus.RUNNING;
                    EventLog.await(() -> job.status() == expected, 10_000, what);
                }
                else
                {
                    assertThatThrownBy(job::resume).as(what).hasMessage("Can't resume a job that was not paused");
                }
                break;
            case SET_SPEED:
                job.setSpeed(1 << 20);
                assertThat(job.speed()).isEqualTo(1 << 20);
                assertThatThrownBy(() -> job.setSpeed(-1)).hasMessage("Parameter 'speed' expects a non-negative value");
                break;
            case CHANGE:
                assertThatThrownBy(() -> job.change(Map.of())).as(what)
                    .hasMessage("Job type 'backup' does not support changes");
                break;
            case CANCEL:
                job.cancel();
                EventLog.await(() -> job.status() == JobStatus.NULL
                    || job.status() == JobStatus.CONCLUDED && !job.autoDismiss()
                    || state == JobStatus.WAITING && job.status() == JobStatus.ABORTING, 10_000, what);
                if (state != JobStatus.WAITING)
                {
                    assertThat(log.last(job.id(), "BLOCK_JOB_CANCELLED")).as(what).isNotNull();
                }
                break;
            case COMPLETE:
                job.complete();
                if (state == JobStatus.STANDBY)
                {
                    // A paused job completes once it runs again.
                    assertThat(job.status()).isEqualTo(JobStatus.STANDBY);
                    job.resume();
                }
                EventLog.await(() -> job.status() == JobStatus.NULL, 10_000, what);
                assertThat(log.last(job.id(), "BLOCK_JOB_COMPLETED")).as(what).isNotNull();
                break;
            case FINALIZE:
                job.finalizeJob();
                EventLog.await(() -> job.status() == JobStatus.NULL, 10_000, what);
                assertThat(log.last(job.id(), "BLOCK_JOB_COMPLETED")).as(what).isNotNull();
                break;
            case DISMISS:
                job.dismiss();
                assertThat(job.status()).isEqualTo(JobStatus.NULL);
                break;
            default:
                throw new AssertionError(verb);
        }
    }

    private static void apply(final Job job, final JobVerb verb)
    {
        switch (verb)
        {
            case CANCEL -> job.cancel();
            case PAUSE -> job.pause();
            case RESUME -> job.resume();
            case SET_SPEED -> job.setSpeed(0);
            case COMPLETE -> job.complete();
            case FINALIZE -> job.finalizeJob();
            case DISMISS -> job.dismiss();
            case CHANGE -> job.change(Map.of());
            default -> throw new AssertionError(verb);
        }
    }

    private ScriptedJob newJob(final JobManager manager, final EventLog log, final JobOptions options)
    {
        return new ScriptedJob("job" + ids.incrementAndGet(), options, log);
    }

    /** Brings a fresh job into {@code state}. */
    private ScriptedJob enter(final JobStatus state, final JobManager manager, final EventLog log,
        final List<Runnable> cleanup)
    {
        final ScriptedJob job;
        switch (state)
        {
            case CREATED:
                job = newJob(manager, log, JobOptions.DEFAULTS);
                manager.reserve(job.id());
                manager.register(job, new JobTransaction());
                break;
            case RUNNING:
                job = newJob(manager, log, JobOptions.DEFAULTS);
                manager.startAlone(job);
                break;
            case PAUSED:
                job = newJob(manager, log, JobOptions.DEFAULTS);
                manager.startAlone(job);
                job.pause();
                break;
            case READY:
            case STANDBY:
                job = newJob(manager, log, JobOptions.DEFAULTS);
                job.goReady = true;
                manager.startAlone(job);
                EventLog.await(() -> job.status() == JobStatus.READY, 10_000, "ready");
                if (state == JobStatus.STANDBY)
                {
                    job.pause();
                }
                break;
            case WAITING:
            {
                job = newJob(manager, log, JobOptions.DEFAULTS);
                final ScriptedJob peer = newJob(manager, log, JobOptions.DEFAULTS);
                registerGrouped(manager, job, peer);
                job.finish = true;
                manager.start(job);
                manager.start(peer);
                cleanup.add(() -> peer.finish = true);
                break;
            }
            case PENDING:
                job = startFinishingAlone(manager, log, new JobOptions(false, true, 0));
                break;
            case ABORTING:
            {
                job = newJob(manager, log, JobOptions.DEFAULTS);
                final ScriptedJob peer = newJob(manager, log, JobOptions.DEFAULTS);
                final CountDownLatch hold = new CountDownLatch(1);
                peer.stubborn = hold;
                registerGrouped(manager, job, peer);
                job.failWrite = true;
                manager.start(peer);
                manager.start(job);
                cleanup.add(hold::countDown);
                break;
            }
            case CONCLUDED:
                job = startFinishingAlone(manager, log, new JobOptions(true, false, 0));
                break;
            case NULL:
                job = startFinishingAlone(manager, log, JobOptions.DEFAULTS);
                break;
            default:
                throw new AssertionError(state);
        }
        EventLog.await(() -> job.status() == state, 10_000, "job in " + state.qmpName());
        return job;
    }

    @Test
    void successEventOrder() throws Exception
    {
        final ScriptedJob job = new ScriptedJob("j", JobOptions.DEFAULTS, log);
        job.finish = true;
        manager.startAlone(job);
        EventLog.await(() -> job.status() == JobStatus.NULL, 10_000, "null");
        // No BLOCK_JOB_PENDING with auto-finalize: qemu-storage-daemon 7.2 emits none either.
        assertThat(log.briefFor("j")).containsExactly("j:created", "j:running", "j:waiting", "j:pending",
            "j:BLOCK_JOB_COMPLETED", "j:concluded", "j:null");
        final Map<String, Object> completed = log.last("j", "BLOCK_JOB_COMPLETED").data();
        assertThat(completed).containsEntry("type", "backup").containsEntry("device", "j")
            .containsEntry("len", 1000L).containsEntry("offset", 1000L).containsEntry("speed", 0L)
            .doesNotContainKey("error");
        assertThat(manager.jobs()).isEmpty();
    }

    @Test
    void failureEventOrder()
    {
        final ScriptedJob job = new ScriptedJob("j", JobOptions.DEFAULTS, log);
        job.failWrite = true;
        manager.startAlone(job);
        EventLog.await(() -> job.status() == JobStatus.NULL, 10_000, "null");
        assertThat(log.briefFor("j")).containsExactly("j:created", "j:running", "j:BLOCK_JOB_ERROR", "j:aborting",
            "j:BLOCK_JOB_COMPLETED", "j:concluded", "j:null");
        assertThat(log.last("j", "BLOCK_JOB_ERROR").data()).containsEntry("operation", "write")
            .containsEntry("action", "report");
        final Map<String, Object> completed = log.last("j", "BLOCK_JOB_COMPLETED").data();
        assertThat(completed).containsEntry("error", "Input/output error");
        assertThat((Long)completed.get("offset")).isLessThan((Long)completed.get("len"));
    }

    @Test
    void cancelEventOrder()
    {
        final ScriptedJob job = new ScriptedJob("j", JobOptions.DEFAULTS, log);
        manager.startAlone(job);
        EventLog.await(() -> job.status() == JobStatus.RUNNING, 10_000, "running");
        manager.cancel("j");
        EventLog.await(() -> job.status() == JobStatus.NULL, 10_000, "null");
        assertThat(log.briefFor("j")).containsExactly("j:created", "j:running", "j:aborting",
            "j:BLOCK_JOB_CANCELLED", "j:concluded", "j:null");
        assertThatThrownBy(() -> manager.cancel("j")).isInstanceOf(EngineException.class)
            .hasMessage("Job 'j' not found")
            .extracting(e -> ((EngineException)e).errorClass())
            .isEqualTo(EngineException.ErrorClass.DeviceNotActive);
    }

    @Test
    void autoFinalizeFalseStopsAtPendingAndCancelThereCancels()
    {
        final ScriptedJob a = new ScriptedJob("a", new JobOptions(false, true, 0), log);
        a.finish = true;
        manager.startAlone(a);
        EventLog.await(() -> a.status() == JobStatus.PENDING, 10_000, "pending");
        assertThat(log.briefFor("a")).endsWith("a:pending", "a:BLOCK_JOB_PENDING");
        manager.finalizeJob("a");
        assertThat(a.status()).isEqualTo(JobStatus.NULL);
        assertThat(log.briefFor("a")).endsWith("a:BLOCK_JOB_PENDING", "a:BLOCK_JOB_COMPLETED", "a:concluded",
            "a:null");

        final ScriptedJob b = new ScriptedJob("b", new JobOptions(false, true, 0), log);
        b.finish = true;
        manager.startAlone(b);
        EventLog.await(() -> b.status() == JobStatus.PENDING, 10_000, "pending");
        manager.cancel("b");
        assertThat(log.briefFor("b")).endsWith("b:BLOCK_JOB_PENDING", "b:aborting", "b:BLOCK_JOB_CANCELLED",
            "b:concluded", "b:null");
    }

    @Test
    void autoDismissFalseStaysConcludedUntilDismiss()
    {
        final ScriptedJob a = new ScriptedJob("a", new JobOptions(true, false, 0), log);
        a.finish = true;
        manager.startAlone(a);
        EventLog.await(() -> a.status() == JobStatus.CONCLUDED, 10_000, "concluded");
        assertThat(manager.queryJobs()).singleElement().satisfies(info ->
            assertThat(info).containsEntry("id", "a").containsEntry("status", "concluded")
                .containsEntry("current-progress", 1000L).containsEntry("total-progress", 1000L));
        assertThatThrownBy(() -> manager.startAlone(new ScriptedJob("a", JobOptions.DEFAULTS, log)))
            .hasMessage("Job ID 'a' already in use");
        manager.dismiss("a");
        assertThat(log.briefFor("a")).endsWith("a:concluded", "a:null");
        assertThat(manager.queryJobs()).isEmpty();
    }

    @Test
    void stopPolicyPausesAndResumeRetries()
    {
        final ScriptedJob a = new ScriptedJob("a", JobOptions.DEFAULTS, log);
        a.targetPolicy = OnError.STOP;
        a.failuresLeft = 1;
        manager.startAlone(a);
        EventLog.await(() -> a.status() == JobStatus.PAUSED, 10_000, "paused");
        assertThat(log.last("a", "BLOCK_JOB_ERROR").data()).containsEntry("action", "stop")
            .containsEntry("operation", "write");
        assertThat(manager.queryBlockJobs()).singleElement().satisfies(info ->
            assertThat(info).containsEntry("io-status", "failed").containsEntry("paused", true)
                .containsEntry("status", "paused").containsEntry("device", "a"));
        a.finish = true;
        manager.resume("a");
        EventLog.await(() -> a.status() == JobStatus.NULL, 10_000, "null");
        assertThat(log.last("a", "BLOCK_JOB_COMPLETED").data()).doesNotContainKey("error");
    }

    /** @return a new job with nothing left to do, started alone. */
    private ScriptedJob startFinishingAlone(final JobManager manager, final EventLog log,
        final JobOptions options)
    {
        final ScriptedJob job = newJob(manager, log, options);
        job.finish = true;
        manager.startAlone(job);
        return job;
    }

    /** Reserves each job's id and registers the jobs in one transaction, as a grouped transaction does. */
    private static void registerGrouped(final JobManager manager, final ScriptedJob... jobs)
    {
        final JobTransaction txn = new JobTransaction();
        for (final ScriptedJob job : jobs)
        {
            manager.reserve(job.id());
            manager.register(job, txn);
        }
    }

    @Test
    void groupedFailureCancelsThePeers()
    {
        final ScriptedJob a = new ScriptedJob("a", JobOptions.DEFAULTS, log);
        final ScriptedJob b = new ScriptedJob("b", JobOptions.DEFAULTS, log);
        final ScriptedJob c = new ScriptedJob("c", JobOptions.DEFAULTS, log);
        registerGrouped(manager, a, b, c);
        c.finish = true;
        for (final ScriptedJob j : List.of(a, b, c))
        {
            manager.start(j);
        }
        EventLog.await(() -> c.status() == JobStatus.WAITING, 10_000, "c waiting");
        a.failWrite = true;
        EventLog.await(() -> a.status() == JobStatus.NULL && b.status() == JobStatus.NULL
            && c.status() == JobStatus.NULL, 10_000, "all null");
        assertThat(log.last("a", "BLOCK_JOB_COMPLETED").data()).containsEntry("error", "Input/output error");
        assertThat(log.last("b", "BLOCK_JOB_CANCELLED")).isNotNull();
        assertThat(log.last("c", "BLOCK_JOB_CANCELLED")).isNotNull();
        assertThat(log.last("b", "BLOCK_JOB_COMPLETED")).isNull();
        assertThat(log.briefFor("c")).containsExactly("c:created", "c:running", "c:waiting", "c:aborting",
            "c:BLOCK_JOB_CANCELLED", "c:concluded", "c:null");
    }

    @Test
    void groupedSuccessWaitsForAll()
    {
        final ScriptedJob a = new ScriptedJob("a", JobOptions.DEFAULTS, log);
        final ScriptedJob b = new ScriptedJob("b", JobOptions.DEFAULTS, log);
        registerGrouped(manager, a, b);
        a.finish = true;
        manager.start(a);
        manager.start(b);
        EventLog.await(() -> a.status() == JobStatus.WAITING, 10_000, "a waiting");
        assertThat(log.last("a", "BLOCK_JOB_PENDING")).isNull();
        b.finish = true;
        EventLog.await(() -> a.status() == JobStatus.NULL && b.status() == JobStatus.NULL, 10_000, "all null");
        assertThat(log.last("a", "BLOCK_JOB_COMPLETED")).isNotNull();
        assertThat(log.last("b", "BLOCK_JOB_COMPLETED")).isNotNull();
    }

    @Test
    void idsAreCheckedLikeQemu()
    {
        for (final String bad : new String[] {"", "1abc", "a b", "a/b", "-x", "é"})
        {
            assertThatThrownBy(() -> manager.reserve(bad)).isInstanceOf(EngineException.class)
                .hasMessage("Invalid job ID '" + bad + "'");
        }
        manager.reserve("ok-1.2_x");
        assertThatThrownBy(() -> manager.reserve("ok-1.2_x")).hasMessage("Job ID 'ok-1.2_x' already in use");
        manager.unreserve("ok-1.2_x");
        manager.reserve("ok-1.2_x");
        assertThatThrownBy(() -> manager.setSpeed("nope", 1)).hasMessage("Block job 'nope' not found");
    }

    @Test
    void speedLimitThrottlesAndSetSpeedLiftsIt()
    {
        final RateLimiter limiter = new RateLimiter(1000);
        final long now = 1_000_000_000L;
        assertThat(limiter.reserve(100, now)).isZero();
        assertThat(limiter.reserve(1000, now)).isEqualTo(1_000_000_000L);
        limiter.setRate(0);
        assertThat(limiter.reserve(1L << 40, now)).isZero();
        assertThatThrownBy(() -> new RateLimiter(-1)).isInstanceOf(IllegalArgumentException.class);
    }
}
