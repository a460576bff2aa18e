package dev.tidemark.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.qmp.QmpClient;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpJson;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The checkpoint QMP commands: replies and errors, the {@code transaction} action over two disks, and exactness
 * against qemu-storage-daemon (libvirt's way: one bitmap per checkpoint, merged at backup time) for 8 checkpoints
 * over a seeded workload, compared with {@code x-debug-block-dirty-bitmap-sha256}.
 */
@Timeout(value = 180, unit = TimeUnit.SECONDS)
class CheckpointCommandsTest
{
    private static final long SIZE = 64L << 20;

    @TempDir
    Path work;

    private Daemon daemon;

    @BeforeEach
    void start() throws Exception
    {
        for (final String image : List.of("a.raw", "b.raw"))
        {
            try (RandomAccessFile f = new RandomAccessFile(work.resolve(image).toFile(), "rw"))
            {
                f.setLength(SIZE);
            }
        }
        daemon = Daemon.create(null, false, false);
        daemon.execute("blockdev-add", node("{'driver':'file','node-name':'fa','filename':'" + work.resolve("a.raw")
            + "'}"));
        daemon.execute("blockdev-add", node("{'driver':'raw','node-name':'da','file':'fa'}"));
        daemon.execute("blockdev-add", node("{'driver':'file','node-name':'fb','filename':'" + work.resolve("b.raw")
            + "'}"));
    }

    @AfterEach
    void stop()
    {
        if (daemon != null)
        {
            daemon.close();
        }
    }

    private static ObjectNode node(final String singleQuoted)
    {
        try
        {
            return (ObjectNode)QmpJson.MAPPER.readTree(singleQuoted.replace('\'', '"'));
        }
        catch (final IOException ex)
        {
            throw new IllegalArgumentException(singleQuoted, ex);
        }
    }

    private JsonNode run(final String command, final String args) throws QmpError
    {
        return daemon.execute(command, node(args));
    }

    private String error(final String command, final String args)
    {
        try
        {
            daemon.execute(command, node(args));
            return "no error";
        }
        catch (final QmpError ex)
        {
            return ex.errorClass() + ": " + ex.desc();
        }
    }

    private TrackedDisk disk(final String node)
    {
        return daemon.graph().disk(daemon.graph().device(node));
    }

    @Test
    void commandsReplyAndRefuseBadInputClearly() throws Exception
    {
        final TrackedDisk a = disk("da");
        a.write(0, ByteBuffer.allocate(4096), false);
        run("__dev.tidemark_checkpoint-add", "{'node':'da','name':'c1'}");
        a.write(1 << 20, ByteBuffer.allocate(100_000), false);
        final JsonNode list = run("__dev.tidemark_query-checkpoints", "{'node':'da'}");
        assertThat(list).hasSize(1);
        assertThat(list.get(0).get("name").asText()).isEqualTo("c1");
        assertThat(list.get(0).get("epoch").asLong()).isEqualTo(1);
        assertThat(list.get(0).get("changed-bytes").asLong()).isEqualTo(2 * 65536);
        assertThat(list.get(0).get("exact").asBoolean()).isTrue();
        assertThat(list.get(0).get("created").asLong()).isPositive();
        run("__dev.tidemark_bitmap-from-checkpoint", "{'node':'da','checkpoint':'c1','name':'m1'}");
        final JsonNode sha = run("x-debug-block-dirty-bitmap-sha256", "{'node':'da','name':'m1'}");
        assertThat(sha.get("sha256").asText()).hasSize(64);

        assertThat(error("__dev.tidemark_checkpoint-add", "{'node':'nosuch','name':'c'}"))
            .isEqualTo("GenericError: Cannot find device='nosuch' nor node-name='nosuch'");
        assertThat(error("__dev.tidemark_checkpoint-add", "{'node':'da','name':''}"))
            .isEqualTo("GenericError: Checkpoint name cannot be empty");
        assertThat(error("__dev.tidemark_checkpoint-add", "{'node':'da','name':'c1'}"))
            .isEqualTo("GenericError: Checkpoint already exists: c1");
        assertThat(error("__dev.tidemark_checkpoint-add", "{'node':'da'}")).startsWith("GenericError: ")
            .contains("name");
        assertThat(error("__dev.tidemark_checkpoint-add", "{'node':'da','name':'c9','granularity':4096}"))
            .isEqualTo("GenericError: The epoch map of disk 'fa' already has granularity 65536; remove its file to"
                + " change it");
        assertThat(error("__dev.tidemark_checkpoint-remove", "{'node':'da','name':'nope'}"))
            .isEqualTo("GenericError: Checkpoint 'nope' not found");
        assertThat(error("__dev.tidemark_checkpoint-remove", "{'node':'nosuch','name':'c1'}"))
            .isEqualTo("GenericError: Node 'nosuch' not found");
        assertThat(error("__dev.tidemark_query-checkpoints", "{}")).startsWith("GenericError: ");
        assertThat(error("__dev.tidemark_bitmap-from-checkpoint", "{'node':'da','checkpoint':'nope','name':'x'}"))
            .isEqualTo("GenericError: Checkpoint 'nope' not found");
        assertThat(error("__dev.tidemark_bitmap-from-checkpoint", "{'node':'da','checkpoint':'c1','name':'m1'}"))
            .isEqualTo("GenericError: Bitmap already exists: m1");
        assertThat(error("__dev.tidemark_bitmap-from-checkpoint",
            "{'node':'da','checkpoint':'c1','name':'g','granularity':1000}"))
            .isEqualTo("GenericError: Granularity must be power of 2 and at least 512");
        run("__dev.tidemark_checkpoint-remove", "{'node':'da','name':'c1'}");
        assertThat(run("__dev.tidemark_query-checkpoints", "{'node':'da'}")).isEmpty();
    }

    @Test
    void transactionAddsACheckpointOnEveryDiskOrNone() throws Exception
    {
        run("transaction", "{'actions':[{'type':'__dev.tidemark_checkpoint-add','data':{'node':'da','name':'vm'}},"
            + "{'type':'__dev.tidemark_checkpoint-add','data':{'node':'fb','name':'vm'}},"
            + "{'type':'block-dirty-bitmap-add','data':{'node':'da','name':'inc'}}]}");
        final JsonNode a = run("__dev.tidemark_query-checkpoints", "{'node':'da'}");
        final JsonNode b = run("__dev.tidemark_query-checkpoints", "{'node':'fb'}");
        assertThat(a.get(0).get("disks").toString()).isEqualTo("[\"da\",\"fb\"]");
        assertThat(b.get(0).get("disks").toString()).isEqualTo("[\"da\",\"fb\"]");
        assertThat(error("transaction", "{'actions':[{'type':'__dev.tidemark_checkpoint-add','data':{'node':'da',"
            + "'name':'vm2'}},{'type':'__dev.tidemark_checkpoint-add','data':{'node':'fb','name':'vm'}}]}"))
            .isEqualTo("GenericError: Checkpoint already exists: vm");
        assertThat(run("__dev.tidemark_query-checkpoints", "{'node':'da'}")).hasSize(1);
        assertThat(run("__dev.tidemark_query-checkpoints", "{'node':'fb'}")).hasSize(1);
    }

    @Test
    void oneTransactionAddsTheNextCheckpointMaterialisesThePreviousAndBacksItUp() throws Exception
    {
        final TrackedDisk a = disk("da");
        final byte[] before = new byte[65536];
        java.util.Arrays.fill(before, (byte)1);
        final byte[] after = new byte[65536];
        java.util.Arrays.fill(after, (byte)2);
        a.write(0, ByteBuffer.wrap(before), false);
        run("__dev.tidemark_checkpoint-add", "{'node':'da','name':'c1'}");
        a.write(10 * 65536, ByteBuffer.wrap(after), false);
        assertThat(error("transaction", "{'actions':[{'type':'__dev.tidemark_bitmap-from-checkpoint','data':"
            + "{'node':'da','checkpoint':'c1','name':'inc'}},{'type':'abort','data':{}}]}"))
            .isEqualTo("GenericError: Transaction aborted using Abort action");
        assertThat(a.bitmaps().exists("inc")).isFalse();
        run("transaction", "{'actions':[{'type':'__dev.tidemark_checkpoint-add','data':{'node':'da','name':'c2'}},"
            + "{'type':'__dev.tidemark_bitmap-from-checkpoint','data':{'node':'da','checkpoint':'c1','name':'inc'}},"
            + "{'type':'blockdev-backup','data':{'device':'da','target':'fb','sync':'incremental','bitmap':'inc',"
            + "'job-id':'j1'}}]}");
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (run("query-jobs", "{}").size() > 0)
        {
            assertThat(System.nanoTime()).as("backup job j1 still there").isLessThan(deadline);
            Thread.sleep(20);
        }
        final byte[] target = Files.readAllBytes(work.resolve("b.raw"));
        assertThat(java.util.Arrays.copyOfRange(target, 10 * 65536, 11 * 65536)).isEqualTo(after);
        assertThat(java.util.Arrays.copyOfRange(target, 0, 65536)).as("before c1: not copied")
            .isEqualTo(new byte[65536]);
        assertThat(run("__dev.tidemark_query-checkpoints", "{'node':'da'}")).hasSize(2);
        assertThat(a.bitmaps().query("inc").recording()).isFalse();
    }

    /** Issue 11's exactness check: the same writes on qemu-storage-daemon with one bitmap per checkpoint. */
    @Test
    void materialisedBitmapsEqualQemuStorageDaemonsMergedChains() throws Exception
    {
        DaemonEndToEndTest.require("qemu-storage-daemon");
        final Path q = work.resolve("q");
        Files.createDirectories(q);
        try (RandomAccessFile f = new RandomAccessFile(q.resolve("disk.raw").toFile(), "rw"))
        {
            f.setLength(SIZE);
        }
        final Process qsd = new ProcessBuilder("qemu-storage-daemon",
            "--blockdev", "{\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"" + q.resolve("disk.raw") + "\"}",
            "--blockdev", "{\"driver\":\"raw\",\"node-name\":\"d0\",\"file\":\"f0\"}",
            "--nbd-server", "addr.type=unix,addr.path=" + q.resolve("nbd.sock"),
            "--export", "type=nbd,id=e0,node-name=d0,name=d0,writable=on",
            "--chardev", "socket,id=m0,path=" + q.resolve("qmp.sock") + ",server=on,wait=off",
            "--monitor", "chardev=m0").redirectErrorStream(true).redirectOutput(q.resolve("qsd.log").toFile()).start();
        try
        {
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!Files.exists(q.resolve("qmp.sock")) || !Files.exists(q.resolve("nbd.sock")))
            {
                assertThat(qsd.isAlive()).as("qemu-storage-daemon: %s", Files.readString(q.resolve("qsd.log")))
                    .isTrue();
                assertThat(System.nanoTime()).isLessThan(deadline);
                Thread.sleep(50);
            }
            try (QmpClient theirs = QmpClient.connectUnix(q.resolve("qmp.sock"));
                NbdClient theirDisk = NbdClient.builder().unix(q.resolve("nbd.sock")).exportName("d0").connect())
            {
                theirs.negotiate();
                compareWithQsd(theirs, theirDisk);
            }
        }
        finally
        {
            qsd.destroy();
            if (!qsd.waitFor(10, TimeUnit.SECONDS))
            {
                qsd.destroyForcibly();
            }
        }
    }

    private void compareWithQsd(final QmpClient theirs, final NbdClient theirDisk) throws Exception
    {
        final long seed = Long.getLong("tidemark.test.seed", System.nanoTime());
        System.out.println("CheckpointCommandsTest exactness seed=" + seed);
        final SplittableRandom random = new SplittableRandom(seed);
        final TrackedDisk ours = disk("da");
        final int checkpoints = 8;
        for (int i = 1; i <= checkpoints; i++)
        {
            run("__dev.tidemark_checkpoint-add", "{'node':'da','name':'c" + i + "'}");
            final List<String> actions = new ArrayList<>();
            actions.add("{'type':'block-dirty-bitmap-add','data':{'node':'d0','name':'c" + i + "'}}");
            if (i > 1)
            {
                actions.add("{'type':'block-dirty-bitmap-disable','data':{'node':'d0','name':'c" + (i - 1) + "'}}");
            }
            theirs.execute("transaction", node("{'actions':[" + String.join(",", actions) + "]}"));
            final int writes = 5 + random.nextInt(40);
            for (int w = 0; w < writes; w++)
            {
                final int length = 512 * (1 + random.nextInt(random.nextInt(10) == 0 ? 2048 : 64));
                final long offset = 512 * random.nextLong((SIZE - length) / 512 + 1);
                final byte[] data = new byte[length];
                random.nextBytes(data);
                ours.write(offset, ByteBuffer.wrap(data), false);
                theirDisk.write(offset, ByteBuffer.wrap(data));
            }
        }
        for (int i = 1; i <= checkpoints; i++)
        {
            final StringBuilder chain = new StringBuilder();
            for (int j = i; j <= checkpoints; j++)
            {
                chain.append(j == i ? "" : ",").append("'c").append(j).append('\'');
            }
            theirs.execute("block-dirty-bitmap-add", node("{'node':'d0','name':'m" + i + "','disabled':true}"));
            theirs.execute("block-dirty-bitmap-merge", node("{'node':'d0','target':'m" + i + "','bitmaps':["
                + chain + "]}"));
            final String expected = theirs.execute("x-debug-block-dirty-bitmap-sha256",
                node("{'node':'d0','name':'m" + i + "'}")).get("sha256").asText();
            run("__dev.tidemark_bitmap-from-checkpoint", "{'node':'da','checkpoint':'c" + i + "','name':'m" + i + "'}");
            final String actual = run("x-debug-block-dirty-bitmap-sha256", "{'node':'da','name':'m" + i + "'}")
                .get("sha256").asText();
            assertThat(actual).as("changed since c%d (seed %d)", i, seed).isEqualTo(expected);
        }
        final JsonNode list = run("__dev.tidemark_query-checkpoints", "{'node':'da'}");
        assertThat(list.get(0).get("changed-bytes").asLong()).isPositive();
        assertThatThrownBy(() -> run("__dev.tidemark_bitmap-from-checkpoint",
            "{'node':'da','checkpoint':'c1','name':'m1'}")).isInstanceOf(QmpError.class);
    }
}
