package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The seam between the engine and its write ring: transactions run as cut handlers, the actions' context built
 * around the ring's cut, the registry's mark side owned by the ring; runs on JUnit's thread and the disk's ring
 * threads.
 */
@Timeout(30)
class RingSeamTest
{
    @TempDir
    Path dir;

    private TrackedDisk open(final Pipeline pipeline) throws IOException
    {
        return TrackedDisk.open(DiskOptions.of(new HeapStore(4 << 20), dir.resolve("bm")).withPipeline(pipeline));
    }

    /** An action that records what it saw and may fail in one of its steps. */
    private static final class Probe implements ControlAction
    {
        final List<String> calls = new CopyOnWriteArrayList<>();
        final List<Thread> afterCommitThreads = new CopyOnWriteArrayList<>();
        final List<Object> seen = new ArrayList<>();
        private final String type;
        private final WriteInterceptor interceptor;
        private final boolean failPrepare;
        private final boolean failCommit;

        Probe(final String type, final WriteInterceptor interceptor, final boolean failPrepare,
            final boolean failCommit)
        {
            this.type = type;
            this.interceptor = interceptor;
            this.failPrepare = failPrepare;
            this.failCommit = failCommit;
        }

        @Override
        public void prepare(final CutContext ctx)
        {
            calls.add("prepare");
            seen.add(ctx.disk());
            seen.add(ctx.registry());
            seen.add(ctx.journal());
            if (interceptor != null)
            {
                ctx.addInterceptor(interceptor);
            }
            ctx.afterCommit(() ->
            {
                calls.add("afterCommit");
                afterCommitThreads.add(Thread.currentThread());
            });
            if (failPrepare)
            {
                throw EngineException.generic(type + " refused");
            }
        }

        @Override
        public void commit(final CutContext ctx)
        {
            calls.add("commit");
            if (failCommit)
            {
                throw new IllegalStateException(type + " commit failed");
            }
        }

        @Override
        public void abort(final CutContext ctx)
        {
            calls.add("abort");
        }

        @Override
        public void unstage()
        {
            calls.add("unstage");
        }

        @Override
        public String type()
        {
            return type;
        }
    }

    @Test
    void theRingOfAnOpenDiskOwnsItsRegistrysMarkSide() throws IOException
    {
        try (TrackedDisk disk = open(Pipeline.FUSED))
        {
            assertThatThrownBy(() -> disk.bitmaps().claimMarkSide()).isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("belongs to a write ring");
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void actionsSeeTheirDiskAndAnAbortedTransactionLeavesNoInterceptorNorEpoch(final Pipeline pipeline)
        throws IOException
    {
        try (TrackedDisk disk = open(pipeline))
        {
            final List<Long> intercepted = new CopyOnWriteArrayList<>();
            final Probe first = new Probe("x-first", (offset, length) -> intercepted.add(offset), false, false);
            final Probe refusing = new Probe("x-refusing", null, true, false);
            final long epoch = disk.ringStatistics().epoch();
            assertThatThrownBy(() -> disk.transaction(first, refusing)).isInstanceOf(EngineException.class)
                .hasMessage("x-refusing refused");
            assertThat(first.seen).containsExactly(disk, disk.bitmaps(), disk.journal());
            assertThat(first.calls).containsExactly("prepare", "abort", "unstage");
            assertThat(refusing.calls).containsExactly("prepare", "unstage");
            assertThat(disk.ringStatistics().epoch()).as("an aborted cut opens no epoch").isEqualTo(epoch);
            assertThat(disk.ringStatistics().controlTimes()).containsKey("x-first+x-refusing");
            disk.write(4096, ByteBuffer.allocate(512), false);
            assertThat(intercepted).as("the aborted transaction's interceptor").isEmpty();
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void aFailingCommitFailsTheTransactionButItsCutCommits(final Pipeline pipeline) throws IOException
    {
        try (TrackedDisk disk = open(pipeline))
        {
            final List<Long> intercepted = new CopyOnWriteArrayList<>();
            final Probe failing = new Probe("x-failing", (offset, length) -> intercepted.add(offset), false, true);
            final long epoch = disk.ringStatistics().epoch();
            assertThatThrownBy(() -> disk.transaction(failing)).isInstanceOf(IllegalStateException.class)
                .hasMessage("x-failing commit failed");
            // The ring releases the staging at the cut; the after-commit task waits for the caller.
            assertThat(failing.calls).containsExactly("prepare", "commit", "unstage", "afterCommit");
            assertThat(failing.afterCommitThreads).containsExactly(Thread.currentThread());
            assertThat(disk.ringStatistics().epoch()).isEqualTo(epoch + 1);
            disk.write(8192, ByteBuffer.allocate(512), false);
            assertThat(intercepted).as("the committed transaction's interceptor").containsExactly(8192L);
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void afterCommitTasksRunOnTheCallersThreadNotTheRings(final Pipeline pipeline) throws IOException
    {
        try (TrackedDisk disk = open(pipeline))
        {
            final Probe probe = new Probe("x-probe", null, false, false);
            disk.transaction(probe);
            assertThat(probe.calls).containsExactly("prepare", "commit", "unstage", "afterCommit");
            assertThat(probe.afterCommitThreads).as("a wake-up from the ring could cost the ring its CPU")
                .containsExactly(Thread.currentThread());
        }
    }

    @Test
    void aJointTransactionRunsEveryMembersAfterCommitTasksOnTheCallersThread() throws IOException
    {
        final List<TrackedDisk> disks = new ArrayList<>();
        try
        {
            final java.util.Map<TrackedDisk, List<ControlAction>> actions = new java.util.LinkedHashMap<>();
            final List<Probe> probes = new ArrayList<>();
            for (int i = 0; i < 3; i++)
            {
                final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new HeapStore(4 << 20), dir.resolve("j" + i)));
                disks.add(disk);
                final Probe probe = new Probe("x-member", null, false, i == 1);
                probes.add(probe);
                actions.put(disk, List.of(probe));
            }
            // The second member's commit step fails: the cut still commits everywhere, so every task runs.
            assertThatThrownBy(() -> TrackedDisk.transaction(actions)).isInstanceOf(IllegalStateException.class)
                .hasMessage("x-member commit failed");
            for (final Probe probe : probes)
            {
                assertThat(probe.calls).containsExactly("prepare", "commit", "unstage", "afterCommit");
                assertThat(probe.afterCommitThreads).containsExactly(Thread.currentThread());
            }
        }
        finally
        {
            for (final TrackedDisk disk : disks)
            {
                disk.close();
            }
        }
    }
}
