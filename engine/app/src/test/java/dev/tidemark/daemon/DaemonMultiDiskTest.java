package dev.tidemark.daemon;

import static dev.tidemark.daemon.DaemonTesting.exec;
import static dev.tidemark.daemon.DaemonTesting.error;
import static dev.tidemark.daemon.DaemonTesting.qemuImg;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.qmp.QmpJson;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * libvirt's checkpoint-and-backup flow over QMP on a VM with three disks: one {@code transaction} adds a checkpoint
 * bitmap on every disk and starts a full backup of every disk; the next one does the same with incremental backups
 * from the previous bitmaps; a third backs up all three with {@code completion-mode: grouped}. Every image is checked with qemu-img; a bitmap that
 * a successful incremental used is empty afterwards, so the jobs' success shows in the bitmaps too.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DaemonMultiDiskTest
{
    private static final long SIZE = 8L << 20;
    private static final int DISKS = 3;

    private Path dir;
    private Daemon daemon;
    private final long seed = System.nanoTime();

    @BeforeEach
    void setUp() throws Exception
    {
        DaemonEndToEndTest.require("qemu-img");
        dir = Files.createTempDirectory("tidemark-multi");
        daemon = Daemon.create(null, false, false);
        for (int d = 0; d < DISKS; d++)
        {
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve("d" + d + ".raw").toFile(), "rw"))
            {
                f.setLength(SIZE);
            }
            exec(daemon, "blockdev-add",
                "{'driver':'file','node-name':'f" + d + "','filename':'" + dir.resolve("d" + d + ".raw")
                + "'}");
            exec(daemon, "blockdev-add", "{'driver':'raw','node-name':'d" + d + "','file':'f" + d + "'}");
        }
    }

    @AfterEach
    void tearDown() throws IOException
    {
        DaemonTesting.closeAndDelete(daemon, dir);
    }

    @Test
    void checkpointAndBackupOfThreeDisksInOneTransaction() throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        guestWrites(random, 40);
        for (int d = 0; d < DISKS; d++)
        {
            target("full" + d, null);
        }
        exec(daemon, "transaction", actions("chk1", "full", "full", null));
        DaemonTesting.awaitNoJobs(daemon);
        for (int d = 0; d < DISKS; d++)
        {
            exec(daemon, "blockdev-del", "{'node-name':'tfull" + d + "'}");
            qemuImg("compare", "-f", "raw", "-F", "qcow2", dir.resolve("d" + d + ".raw").toString(),
                dir.resolve("full" + d + ".qcow2").toString());
            assertThat(count("d" + d, "chk1")).isZero();
        }

        guestWrites(random, 25);
        for (int d = 0; d < DISKS; d++)
        {
            assertThat(count("d" + d, "chk1")).as("seed %d", seed).isPositive();
            target("inc" + d, dir.resolve("full" + d + ".qcow2"));
        }
        exec(daemon, "transaction", actions("chk2", "inc", "incremental", "chk1"));
        DaemonTesting.awaitNoJobs(daemon);
        for (int d = 0; d < DISKS; d++)
        {
            exec(daemon, "blockdev-del", "{'node-name':'tinc" + d + "'}");
            qemuImg("check", dir.resolve("inc" + d + ".qcow2").toString());
            qemuImg("compare", "-f", "raw", "-F", "qcow2", dir.resolve("d" + d + ".raw").toString(),
                dir.resolve("inc" + d + ".qcow2").toString());
            assertThat(count("d" + d, "chk1")).as("the incremental's bitmap is cleared on success").isZero();
            assertThat(count("d" + d, "chk2")).isZero();
        }

        guestWrites(random, 10);
        for (int d = 0; d < DISKS; d++)
        {
            target("grouped" + d, null);
        }
        exec(daemon, "transaction", actions(null, "grouped", "full", null));
        DaemonTesting.awaitNoJobs(daemon);
        for (int d = 0; d < DISKS; d++)
        {
            exec(daemon, "blockdev-del", "{'node-name':'tgrouped" + d + "'}");
            qemuImg("compare", "-f", "raw", "-F", "qcow2", dir.resolve("d" + d + ".raw").toString(),
                dir.resolve("grouped" + d + ".qcow2").toString());
        }
    }

    @Test
    void aFailingActionOnTheThirdDiskLeavesTheOthersUntouched() throws Exception
    {
        exec(daemon, "block-dirty-bitmap-add", "{'node':'d2','name':'chk1'}");
        final StringBuilder list = new StringBuilder("{'actions':[");
        for (int d = 0; d < DISKS; d++)
        {
            list.append(d == 0 ? "" : ",").append("{'type':'block-dirty-bitmap-add','data':{'node':'d").append(d)
                .append("','name':'chk1'}}");
        }
        list.append("]}");
        assertThat(error(daemon, "transaction", list.toString())).isEqualTo("Bitmap already exists: chk1");
        assertThat(daemon.execute("query-named-block-nodes", QmpJson.object()).findValuesAsText("name"))
            .containsExactly("chk1");
        // The same set of nodes twice in one transaction, and an abort after them: nothing is left either.
        assertThat(error(daemon, "transaction",
            "{'actions':[{'type':'block-dirty-bitmap-add','data':{'node':'d0','name':'x'}},"
            + "{'type':'block-dirty-bitmap-add','data':{'node':'d1','name':'x'}},{'type':'abort','data':{}}]}"))
            .isEqualTo("Transaction aborted using Abort action");
        assertThat(daemon.execute("query-named-block-nodes", QmpJson.object()).findValuesAsText("name"))
            .containsExactly("chk1");
    }

    /** One transaction for every disk: a checkpoint bitmap (unless null) and a backup into {@code t<prefix><d>}. */
    private String actions(final String checkpoint, final String targetPrefix, final String sync, final String bitmap)
    {
        final StringBuilder list = new StringBuilder("{'actions':[");
        for (int d = 0; d < DISKS; d++)
        {
            if (checkpoint != null)
            {
                list.append("{'type':'block-dirty-bitmap-add','data':{'node':'d").append(d)
                    .append("','name':'").append(checkpoint).append("','persistent':true}},");
            }
            list.append("{'type':'blockdev-backup','data':{'device':'d").append(d).append("','target':'t")
                .append(targetPrefix).append(d).append("','sync':'").append(sync).append("','job-id':'j")
                .append(targetPrefix).append(d).append("'");
            if (bitmap != null)
            {
                list.append(",'bitmap':'").append(bitmap).append("'");
            }
            list.append("}}").append(d == DISKS - 1 ? "" : ",");
        }
        // QEMU refuses grouped completion for a bitmap action: only a backups-only transaction is grouped.
        return list.append(checkpoint == null ? "],'properties':{'completion-mode':'grouped'}}" : "]}").toString();
    }

    private void target(final String name, final Path backing) throws Exception
    {
        final Path image = dir.resolve(name + ".qcow2");
        if (backing == null)
        {
            qemuImg("create", "-f", "qcow2", "-o", "cluster_size=65536", image.toString(), Long.toString(SIZE));
        }
        else
        {
            qemuImg("create", "-f", "qcow2", "-o", "cluster_size=65536", "-b", backing.toString(), "-F", "qcow2",
                image.toString(), Long.toString(SIZE));
        }
        exec(daemon, "blockdev-add",
            "{'driver':'qcow2','node-name':'t" + name + "','backing':null,'file':{'driver':'file',"
            + "'filename':'" + image + "'}}");
    }

    private void guestWrites(final SplittableRandom random, final int count) throws IOException
    {
        for (int d = 0; d < DISKS; d++)
        {
            final TrackedDisk disk = daemon.graph().disk(daemon.graph().device("d" + d));
            for (int i = 0; i < count; i++)
            {
                final byte[] data = new byte[4096];
                random.nextBytes(data);
                disk.write(random.nextLong(SIZE / 4096) * 4096, ByteBuffer.wrap(data), false);
            }
        }
    }

    private long count(final String node, final String bitmap) throws Exception
    {
        for (final JsonNode n : daemon.execute("query-named-block-nodes", QmpJson.object()))
        {
            for (final JsonNode b : n.path("dirty-bitmaps"))
            {
                if (n.path("node-name").asText().equals(node) && b.path("name").asText().equals(bitmap))
                {
                    return b.path("count").asLong();
                }
            }
        }
        throw new AssertionError("no bitmap " + bitmap + " on " + node);
    }
}
