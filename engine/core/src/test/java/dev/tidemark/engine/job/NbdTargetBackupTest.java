package dev.tidemark.engine.job;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.testing.ExternalTools;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Backup jobs whose target is a remote NBD server (qemu-nbd, nbdkit memory) through {@link NbdClient}, under guest
 * load; and a target that dies mid-job: the job fails cleanly and the bitmap keeps every bit (I4).
 */
@Timeout(120)
class NbdTargetBackupTest extends DiskTestSupport
{
    private static final int SIZE = 32 << 20;

    private final List<Process> servers = new ArrayList<>();
    @BeforeEach
    void open() throws Exception
    {
        openDisk(SIZE);
    }
    @AfterEach
    @Override
    void close() throws Exception
    {
        super.close();
        for (final Process server : servers)
        {
            ExternalTools.stop(server);
        }
    }

    private Path server(final String name, final String... command) throws Exception
    {
        final Path socket = dir.resolve(name + ".sock");
        final String[] argv = new String[command.length];
        for (int i = 0; i < command.length; i++)
        {
            argv[i] = command[i].replace("SOCKET", socket.toString());
        }
        servers.add(ExternalTools.startServer(socket, dir.resolve(name + ".log"), argv));
        return socket;
    }

    private static NbdClient client(final Path socket, final String export) throws Exception
    {
        return NbdClient.builder().unix(socket).exportName(export).minimumSize(SIZE)
            .replyTimeout(Duration.ofSeconds(20)).connect();
    }

    private void runToEnd(final BackupStartAction start, final String what)
    {
        final BackupJob job = start.job();
        EventLog.await(() -> job.status() == JobStatus.NULL, 60_000, what + " to finish (seed " + seed + ")");
        final EventLog.Event completed = events.last(job.id(), "BLOCK_JOB_COMPLETED");
        assertThat(completed).as(what).isNotNull();
        assertThat(completed.data()).as(what + " (seed " + seed + ")").doesNotContainKey("error");
    }

    /** @return two writers on the disk, started and past their first writes; the caller halts them. */
    private Workload runningLoad()
    {
        final Workload load = new Workload(disk, base, seed, 2, 64 << 10);
        load.start();
        try
        {
            EventLog.await(() -> load.logged() > 30, 20_000, "load to start");
        }
        catch (final RuntimeException | Error ex)
        {
            load.halt();
            throw ex;
        }
        return load;
    }

    @Test
    void fullAndIncrementalToQemuNbdEqualTheDiskAtTheirCuts() throws Exception
    {
        final Path target = dir.resolve("target.raw");
        ExternalTools.run(30, "qemu-img", "create", "-q", "-f", "raw", target.toString(), String.valueOf(SIZE));
        final Path socket = server("qemu-nbd", "qemu-nbd", "-t", "-f", "raw", "-x", "tgt", "--cache=none",
            "--socket=SOCKET", target.toString());
        final Workload load = runningLoad();
        try (NbdClient client = client(socket, "tgt"))
        {
            final BackupStartAction full = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full"), client, null);
            final long cut0 = disk.transaction(List.of(BitmapActions.add("b0", 65536, false, false), full));
            runToEnd(full, "full backup to qemu-nbd");
            client.flush();
            // Compared after the writers stopped: a writer logs a request only after it completed, so the log is
            // complete up to a cut only once every writer has moved past it.
            final byte[] fullCopy = Files.readAllBytes(target);

            final int before = load.logged();
            EventLog.await(() -> load.logged() > before + 40, 20_000, "more load");
            final BackupStartAction incremental = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.INCREMENTAL).withJobId("inc").withBitmap("b0", null), client, null);
            final long cut1 = disk.transaction(incremental);
            runToEnd(incremental, "incremental backup to qemu-nbd");
            client.flush();
            final byte[] incrementalCopy = Files.readAllBytes(target);
            load.stop();
            Workload.assertSameContent(load.contentAt(cut0), fullCopy, "full (seed " + seed + ")");
            Workload.assertSameContent(load.contentAt(cut1), incrementalCopy, "full + incremental (seed " + seed + ")");
        }
        finally
        {
            load.halt();
        }
    }

    @Test
    void fullBackupToNbdkitMemoryReadsBackAsTheDiskAtTheCut() throws Exception
    {
        final Path socket = server("nbdkit", "nbdkit", "-f", "-U", "SOCKET", "memory", "size=" + SIZE);
        final Workload load = runningLoad();
        try (NbdClient client = client(socket, ""))
        {
            final BackupStartAction full = new BackupStartAction(manager,
                BackupOptions.of("vda", SyncMode.FULL).withJobId("full"), client, null);
            final long cut = disk.transaction(full);
            runToEnd(full, "full backup to nbdkit");
            final byte[] copy = Workload.read(client);
            load.stop();
            Workload.assertSameContent(load.contentAt(cut), copy, "nbdkit copy (seed " + seed + ")");
        }
        finally
        {
            load.halt();
        }
    }

    /** The target server is killed while an incremental runs: the job reports the error, no dirty bit is lost. */
    @Test
    void aTargetThatDiesFailsTheJobAndKeepsEveryDirtyBit() throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        disk.transaction(BitmapActions.add("b0", 65536, false, false));
        for (int i = 0; i < 200; i++)
        {
            final byte[] data = new byte[4096];
            random.nextBytes(data);
            disk.write(random.nextLong(SIZE - data.length), ByteBuffer.wrap(data), false);
        }
        final String before = disk.bitmaps().sha256("b0");
        final long dirtyBefore = disk.bitmaps().query("b0").count();
        final Path socket = server("nbdkit", "nbdkit", "-f", "-U", "SOCKET", "memory", "size=" + SIZE);
        final Process nbdkit = servers.get(0);
        try (NbdClient client = client(socket, ""))
        {
            // 4 MiB/s: the copy of about 12 MiB takes seconds, so the kill lands in the middle.
            final BackupStartAction start = new BackupStartAction(manager, BackupOptions.of("vda", SyncMode.INCREMENTAL)
                .withJobId("inc").withBitmap("b0", null).withJob(new JobOptions(true, true, 4L << 20)), client, null);
            disk.transaction(start);
            final BackupJob job = start.job();
            EventLog.await(() -> job.currentProgress() > 0, 20_000, "the copy to start");
            nbdkit.destroyForcibly().waitFor();
            EventLog.await(() -> job.status() == JobStatus.NULL, 60_000, "the job to fail (seed " + seed + ")");
            final EventLog.Event completed = events.last("inc", "BLOCK_JOB_COMPLETED");
            assertThat(completed).isNotNull();
            assertThat(completed.data()).containsKey("error");
            assertThat((long)(Long)completed.data().get("offset")).isLessThan(dirtyBefore);
        }
        // No write happened since: the bitmap is exactly what it was, and free for the next attempt.
        assertThat(disk.bitmaps().sha256("b0")).isEqualTo(before);
        assertThat(disk.bitmaps().query("b0").busy()).isFalse();
    }
}
