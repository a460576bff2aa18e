package dev.tidemark.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.JvmFlags;
import dev.tidemark.io.testing.ExternalTools;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import dev.tidemark.cli.TidemarkMain;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Runs engine/app/src/test/python/qsd_flow.py (standard library Python, written as for qemu-storage-daemon) against
 * {@code tidemark serve} in a child JVM, and its bitmap phase against real qemu-storage-daemon too.
 */
class DaemonEndToEndTest
{
    private static final Path SCRIPT = Path.of("src", "test", "python", "qsd_flow.py");

    private Path work;

    @BeforeEach
    void setUp() throws IOException
    {
        for (final String tool : List.of("python3", "qemu-img", "qemu-io", "qemu-storage-daemon"))
        {
            require(tool);
        }
        work = Files.createTempDirectory("tidemark-e2e");
    }

    @AfterEach
    void tearDown() throws IOException
    {
        try (Stream<Path> walk = Files.walk(work))
        {
            for (final Path p : walk.sorted(Comparator.reverseOrder()).toList())
            {
                Files.deleteIfExists(p);
            }
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void wholeFlowThroughTheDaemonAlone() throws Exception
    {
        final List<String> args = new ArrayList<>(List.of("--workdir", work.resolve("t").toString(),
            "--restore-cmd", String.join(" ", javaCommand("backup", "restore")), "--daemon"));
        args.addAll(javaCommand("serve"));
        final JsonNode result = runScript(args);
        final JsonNode checks = result.path("checks");
        assertThat(result.path("errors")).as(result.toPrettyString()).isEmpty();
        for (final String check : List.of("full_backup_completed", "incremental_completed", "incremental_copied_dirty",
            "chain_equals_disk_at_cut", "live_disk_moved_on_after_cut", "restored_equals_disk_at_cut",
            "fleece_export_listed", "nodes_after", "malformed_json_error", "oversized_message_error",
            "flood_all_answered_in_order", "alive_after_abuse", "daemon_exit_code_0"))
        {
            assertThat(checks.path(check).asBoolean()).as(check + " in " + result.toPrettyString()).isTrue();
        }
        assertThat(result.path("compare_chain_vs_fleece").asText()).isEqualTo("Images are identical.");
        assertThat(result.path("shutdown_event").path("reason").asText()).isEqualTo("host-qmp-quit");
        assertThat(result.path("ok").asBoolean()).isTrue();
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void bitmapOperationsGiveTheSameHashesAndCountsAsQemuStorageDaemon() throws Exception
    {
        final List<String> tidemark = new ArrayList<>(List.of("--workdir", work.resolve("t").toString(),
            "--bitmaps-only", "--daemon"));
        tidemark.addAll(javaCommand("serve"));
        final JsonNode ours = runScript(tidemark);
        final JsonNode qemu = runScript(List.of("--workdir", work.resolve("q").toString(), "--bitmaps-only",
            "--daemon", "qemu-storage-daemon"));
        assertThat(ours.path("errors")).as(ours.toPrettyString()).isEmpty();
        assertThat(qemu.path("errors")).as(qemu.toPrettyString()).isEmpty();
        assertThat(ours.path("bitmaps").size()).isEqualTo(9);
        assertThat(ours.path("bitmaps")).isEqualTo(qemu.path("bitmaps"));
        assertThat(ours.path("bitmap_errors")).isEqualTo(qemu.path("bitmap_errors"));
        assertThat(ours.path("abort_error")).isEqualTo(qemu.path("abort_error"));
        // The workload really dirtied something: not every bitmap is empty.
        assertThat(ours.path("bitmaps").findValuesAsText("count")).contains("0").anyMatch(c -> !c.equals("0"));
    }

    private static JsonNode runScript(final List<String> args) throws IOException, InterruptedException
    {
        final List<String> command = new ArrayList<>(List.of("python3", SCRIPT.toString()));
        command.addAll(args);
        final Process process = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        final String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!process.waitFor(170, TimeUnit.SECONDS))
        {
            process.destroyForcibly();
            throw new AssertionError("qsd_flow.py did not finish");
        }
        try
        {
            return new ObjectMapper().readTree(out);
        }
        catch (final IOException ex)
        {
            throw new AssertionError("qsd_flow.py printed no JSON (exit " + process.exitValue() + "):\n" + out, ex);
        }
    }

    /** {@code java <this JVM's flags> -cp <test classpath> TidemarkMain ARGS}. */
    static List<String> javaCommand(final String... args)
    {
        // With the launcher's collector: the daemons under test run as users run them.
        return JvmFlags.javaCommand(TidemarkMain.class.getName(), JvmFlags.collector(List.of()), args);
    }

    static Path require(final String name)
    {
        return Path.of(ExternalTools.require(name));
    }
}
