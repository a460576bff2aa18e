package dev.tidemark.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.qmp.QmpClient;
import dev.tidemark.qmp.QmpJson;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code tidemark serve} in a child JVM: SIGTERM closes every bitmap cleanly (the journal ends with a clean close)
 * and a restart finds the persistent bitmap with the same contents; bad options are refused with exit code 2.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class DaemonSignalTest
{
    private Path work;
    private Process process;

    @BeforeEach
    void setUp() throws IOException
    {
        work = DaemonTesting.folderWithDisk("tidemark-signal", 32 << 20);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        DaemonTesting.killAndDelete(process, work);
    }

    private Process serve(final String... extra) throws IOException
    {
        final List<String> args = new ArrayList<>(List.of(
            "--blockdev", "driver=file,node-name=f0,filename=" + work.resolve("disk.raw"),
            "--blockdev", "driver=raw,node-name=d0,file=f0",
            "--nbd-server", "addr.type=unix,addr.path=" + work.resolve("nbd.sock"),
            "--export", "type=nbd,id=e0,node-name=d0,writable=on",
            "--qmp-socket", work.resolve("qmp.sock").toString()));
        args.addAll(List.of(extra));
        return DaemonTesting.serve(work, args);
    }

    private QmpClient connect() throws Exception
    {
        return DaemonTesting.connect(work, process, Duration.ofSeconds(30));
    }

    private static ObjectNode args(final String singleQuoted) throws IOException
    {
        return DaemonTesting.args(singleQuoted);
    }

    @Test
    void sigtermClosesBitmapsCleanlyAndARestartFindsThem() throws Exception
    {
        process = serve();
        final String sha;
        try (QmpClient qmp = connect())
        {
            qmp.execute("block-dirty-bitmap-add", args("{'node':'d0','name':'keep','persistent':true}"));
            final Process io = new ProcessBuilder("qemu-io", "-f", "raw", "-c", "write -P 7 1M 192k",
                "nbd+unix:///d0?socket=" + work.resolve("nbd.sock")).redirectErrorStream(true).start();
            final String ioOut = new String(io.getInputStream().readAllBytes());
            assertThat(io.waitFor()).as(ioOut).isZero();
            sha = qmp.execute("x-debug-block-dirty-bitmap-sha256", args("{'node':'d0','name':'keep'}"))
                .path("sha256").asText();
        }
        process.destroy();
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).as(Files.readString(work.resolve("serve.log"))).isIn(0, 143);
        final Journal.Replay replay = Journal.inspect(work.resolve("disk.raw.bitmaps").resolve(Journal.FILE_NAME));
        assertThat(replay.cleanClose()).as("journal ends with a clean close").isTrue();
        assertThat(replay.bitmaps()).containsKey("keep");

        // The stopped daemon may leave its socket file behind (its QMP server removes it on a thread that races
        // the JVM's exit once the disks are closed); connect() must wait for the new daemon's socket, not that one.
        Files.deleteIfExists(work.resolve("qmp.sock"));
        process = serve("--verbose");
        try (QmpClient qmp = connect())
        {
            final JsonNode nodes = qmp.execute("query-named-block-nodes", QmpJson.object());
            JsonNode bitmap = null;
            for (final JsonNode n : nodes)
            {
                if ("d0".equals(n.path("node-name").asText()))
                {
                    bitmap = n.path("dirty-bitmaps").get(0);
                }
            }
            assertThat(bitmap).as(nodes.toString()).isNotNull();
            assertThat(bitmap.path("name").asText()).isEqualTo("keep");
            assertThat(bitmap.path("persistent").asBoolean()).isTrue();
            assertThat(bitmap.path("count").asLong()).isEqualTo(192L << 10);
            assertThat(qmp.execute("x-debug-block-dirty-bitmap-sha256", args("{'node':'d0','name':'keep'}"))
                .path("sha256").asText()).isEqualTo(sha);
            qmp.execute("quit", QmpJson.object());
        }
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isZero();
        assertThat(Files.readString(work.resolve("serve.log"))).contains("level=info");
    }

    @Test
    void theWarmUpRunsBesideServingAndShowsNoDiskOrJobOfItsOwn() throws Exception
    {
        process = serve("--verbose", "--warmup-rounds", "3");
        try (QmpClient qmp = connect())
        {
            final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while (!Files.readString(work.resolve("serve.log")).contains("event=warmup rounds=3 "))
            {
                assertThat(Files.readString(work.resolve("serve.log"))).doesNotContain("event=warmup-failed");
                assertThat(System.nanoTime()).as("the warm-up to end").isLessThan(deadline);
                // Its scratch disks and jobs are its own: a client sees only the daemon's.
                assertThat(qmp.execute("query-jobs", QmpJson.object())).isEmpty();
                final List<String> names = new ArrayList<>();
                qmp.execute("query-named-block-nodes", QmpJson.object())
                    .forEach(n -> names.add(n.path("node-name").asText()));
                assertThat(names).containsExactlyInAnyOrder("f0", "d0");
                Thread.sleep(20);
            }
            qmp.execute("quit", QmpJson.object());
        }
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isZero();
    }

    @Test
    void badOptionsAreUsageErrors() throws Exception
    {
        for (final String[] bad : new String[][] {
            {"serve"},
            {"serve", "--qmp-socket", work.resolve("q.sock").toString(), "--blockdev", "driver=file,node-name=x"},
            {"serve", "--qmp-socket", work.resolve("q.sock").toString(), "--blockdev",
                "driver=file,node-name=x,filename=/nonexistent.raw"},
            {"serve", "--monitor", "chardev=nope"},
            {"serve", "--config", work.resolve("missing.conf").toString()},
            {"serve", "--qmp-socket", work.resolve("q.sock").toString(), "--warmup-rounds", "-1"},
        })
        {
            final Process p = new ProcessBuilder(DaemonEndToEndTest.javaCommand(bad)).redirectErrorStream(true).start();
            final String out = new String(p.getInputStream().readAllBytes());
            assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(p.exitValue()).as(String.join(" ", bad) + ": " + out).isEqualTo(2);
            assertThat(out).startsWith("tidemark serve: ");
        }
    }
}
