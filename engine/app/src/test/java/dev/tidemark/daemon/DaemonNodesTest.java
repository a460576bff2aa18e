package dev.tidemark.daemon;

import static dev.tidemark.daemon.DaemonTesting.exec;
import static dev.tidemark.daemon.DaemonTesting.error;
import static dev.tidemark.daemon.DaemonTesting.qemuImg;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;

import dev.tidemark.io.testing.ExternalTools;
import dev.tidemark.qmp.QmpJson;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Tidemark-specific node rules of the daemon (where it deliberately differs from QEMU), in process. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class DaemonNodesTest
{
    private static final long SIZE = 16L << 20;

    private Path dir;
    private Daemon daemon;

    @BeforeEach
    void setUp() throws Exception
    {
        DaemonEndToEndTest.require("qemu-img");
        DaemonEndToEndTest.require("qemu-io");
        dir = Files.createTempDirectory("tidemark-nodes");
        for (final String name : new String[] {"a.raw", "b.raw"})
        {
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(name).toFile(), "rw"))
            {
                f.setLength(SIZE);
            }
        }
        daemon = Daemon.create(null, false, false);
        exec(daemon, "blockdev-add", "{'driver':'file','node-name':'fa','filename':'" + dir.resolve("a.raw") + "'}");
        exec(daemon, "blockdev-add", "{'driver':'raw','node-name':'a','file':'fa'}");
        exec(daemon, "blockdev-add", "{'driver':'file','node-name':'fb','filename':'" + dir.resolve("b.raw") + "'}");
    }

    @AfterEach
    void tearDown() throws IOException
    {
        DaemonTesting.closeAndDelete(daemon, dir);
    }

    @Test
    void qcow2NodesAreEmptyTargetsOrReadOnlyImages() throws Exception
    {
        final Path used = dir.resolve("used.qcow2");
        qemuImg("create", "-f", "qcow2", used.toString(), Long.toString(SIZE));
        ExternalTools.run(60, "qemu-io", "-f", "qcow2", "-c", "write -P 9 0 64k", used.toString());
        assertThat(error(daemon, "blockdev-add",
            "{'driver':'qcow2','node-name':'q','file':{'driver':'file','filename':'"
            + used + "'}}")).contains("image already holds data");
        exec(daemon, "blockdev-add", "{'driver':'qcow2','node-name':'q','read-only':true,'file':{'driver':'file',"
            + "'filename':'" + used + "'}}");
        assertThat(error(daemon, "blockdev-backup", "{'device':'a','target':'q','sync':'full'}"))
            .isEqualTo("Block node is read-only");
        assertThat(error(daemon, "block-dirty-bitmap-add", "{'node':'q','name':'b'}"))
            .contains("Tidemark tracks writes of raw disks");
        final String implicit = daemon.execute("query-named-block-nodes", QmpJson.object())
            .findValuesAsText("node-name").stream().filter(n -> n.startsWith("#block")).findFirst().orElseThrow();
        assertThat(error(daemon, "blockdev-del", "{'node-name':'" + implicit + "'}"))
            .isEqualTo("Node " + implicit + " is not owned by the monitor");
        exec(daemon, "blockdev-del", "{'node-name':'q'}");
        assertThat(daemon.execute("query-named-block-nodes", QmpJson.object()).findValuesAsText("node-name"))
            .containsExactly("fa", "a", "fb");

        final Path fresh = dir.resolve("fresh.qcow2");
        qemuImg("create", "-f", "qcow2", "-o", "cluster_size=65536", fresh.toString(), Long.toString(SIZE));
        exec(daemon, "blockdev-add",
            "{'driver':'qcow2','node-name':'t','file':{'driver':'file','filename':'" + fresh + "'}}");
        exec(daemon, "blockdev-backup", "{'device':'a','target':'t','sync':'full','job-id':'j'}");
        DaemonTesting.awaitNoJobs(daemon);
        exec(daemon, "blockdev-del", "{'node-name':'t'}");
        qemuImg("check", fresh.toString());
        qemuImg("compare", "-f", "raw", "-F", "qcow2", dir.resolve("a.raw").toString(), fresh.toString());
    }

    @Test
    void rulesWhereTidemarkDiffersFromQemu() throws Exception
    {
        assertThat(error(daemon, "blockdev-add", "{'driver':'raw','node-name':'r','file':'fa','offset':512}"))
            .contains("not supported by Tidemark");
        exec(daemon, "block-dirty-bitmap-add", "{'node':'a','name':'x'}");
        exec(daemon, "block-dirty-bitmap-add", "{'node':'fb','name':'y'}");
        // A transaction over two disks (QEMU spans nodes too; DaemonMultiDiskTest has the libvirt flow).
        exec(daemon, "transaction", "{'actions':[{'type':'block-dirty-bitmap-clear','data':{'node':'a','name':'x'}},"
            + "{'type':'block-dirty-bitmap-clear','data':{'node':'fb','name':'y'}}]}");
        assertThat(error(daemon, "block-dirty-bitmap-merge",
            "{'node':'a','target':'x','bitmaps':[{'node':'fb','name':'y'}]}"))
            .contains("of another disk is not supported");
        assertThat(error(daemon, "nbd-server-start", "{'addr':{'type':'unix','data':{'path':'" + dir.resolve("s")
            + "'}},'tls-creds':'t'}")).isEqualTo("No TLS credentials with id 't'");
        // The bitmap is reported on the node it was added through (the raw node), not on its file node.
        final JsonNode nodes = daemon.execute("query-named-block-nodes", QmpJson.object());
        for (final JsonNode n : nodes)
        {
            final String name = n.path("node-name").asText();
            assertThat(n.path("dirty-bitmaps").findValuesAsText("name"))
                .isEqualTo("a".equals(name) ? java.util.List.of("x") : "fb".equals(name) ? java.util.List.of("y")
                    : java.util.List.of());
        }
        assertThat(daemon.execute("query-block", QmpJson.object()).findValuesAsText("qdev"))
            .containsExactly("a", "fb");
    }
}
