package dev.tidemark.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.JvmFlags;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Runs {@code tidemark demo} as a user would (a child JVM) and checks its exit code and report. */
class DemoCommandTest
{
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void demoVerifiesTheRestoredChainIncludingQemuImgCompare() throws Exception
    {
        requireTool("qemu-img");
        final Result result = runDemo(System.getenv("PATH"), "--json");
        assertThat(result.exit).as(result.output).isZero();
        final JsonNode report = new ObjectMapper().readTree(result.output);
        assertThat(report.path("verified").asBoolean()).isTrue();
        assertThat(report.path("failures")).isEmpty();
        assertThat(report.path("full_backup").path("matches_cut").asBoolean()).isTrue();
        assertThat(report.path("full_backup").path("copied_bytes").asLong()).isEqualTo(256L << 20);
        assertThat(report.path("verification").path("restored_vs_nbd_fleecing_export").asBoolean()).isTrue();
        assertThat(report.path("verification").path("qemu_img_compare").asText()).isEqualTo("Images are identical.");
        // The incremental copied exactly what daily-1 had recorded, less than the whole disk.
        final long dirty = report.path("dirty_before_incremental").path("bytes").asLong();
        assertThat(dirty).isPositive().isLessThan(256L << 20);
        assertThat(report.path("incremental_backup").path("copied_bytes").asLong()).isEqualTo(dirty);
        assertThat(report.path("bitmaps_at_end").toString()).isEqualTo("[\"checkpoint-1\"]");

        // The two-disk checkpoint: one transaction, each disk's backup restored equals that disk at the cut, and
        // the writer's last records at the cut are neighbours (a cut taken disk by disk leaves a gap between them).
        final JsonNode checkpoint = report.path("checkpoint");
        assertThat(checkpoint.path("disks").toString()).isEqualTo("[\"disk0\",\"disk1\"]");
        assertThat(checkpoint.path("backups")).hasSize(2);
        assertThat(checkpoint.path("backups").get(0).path("file").asText()).isEqualTo("inc-2.qcow2");
        assertThat(checkpoint.path("backups").get(0).path("chain").toString()).contains("inc-1.qcow2", "full.qcow2");
        assertThat(checkpoint.path("backups").get(0).path("copied_bytes").asLong()).isPositive()
            .isLessThan(256L << 20);
        assertThat(checkpoint.path("backups").get(1).path("file").asText()).isEqualTo("disk1-full.qcow2");
        assertThat(checkpoint.path("backups").get(1).path("copied_bytes").asLong()).isEqualTo(64L << 20);
        for (final JsonNode backup : checkpoint.path("backups"))
        {
            assertThat(backup.path("restored_matches_cut").asBoolean()).as(backup.toString()).isTrue();
        }
        final long last0 = checkpoint.path("last_write_at_cut").path("disk0").asLong();
        final long last1 = checkpoint.path("last_write_at_cut").path("disk1").asLong();
        assertThat(last0 % 2).as("disk0 holds the odd records").isOne();
        assertThat(Math.abs(last0 - last1)).as("records %d and %d at the cut", last0, last1).isOne();
        assertThat(checkpoint.path("one_instant").asBoolean()).isTrue();
        assertThat(checkpoint.path("guest_writes_during").asLong()).isGreaterThan(Math.max(last0, last1));
        assertThat(checkpoint.path("bitmaps_at_end").path("disk0").toString()).isEqualTo("[\"checkpoint-1\"]");
        assertThat(checkpoint.path("bitmaps_at_end").path("disk1").toString()).isEqualTo("[\"checkpoint-1\"]");
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void demoWorksWithoutQemuImgAndPrintsTheReport() throws Exception
    {
        final Result result = runDemo("/nonexistent-bin", "--size", "64M");
        assertThat(result.exit).as(result.output).isZero();
        assertThat(result.output)
            .contains("full backup", "incremental", "restore", "dirty", "MB/s")
            .contains("qemu-img compare: skipped (qemu-img not installed)")
            .contains("checkpoint      disk0 + disk1 in one transaction, one cut: bitmap checkpoint-1 added on each")
            .containsPattern("verify 2 disks  disk0 chain vs its cut: identical; disk1 vs its cut: identical; last"
                + " records at the cut #\\d+ \\(disk0\\) and #\\d+ \\(disk1\\): one instant")
            .contains("VERIFIED: the restored chain equals the disk at the cut, byte for byte.");
    }

    @Test
    void badSizeIsAUsageError()
    {
        assertThat(TidemarkMain.run("demo", "--size", "3M")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(TidemarkMain.run("demo", "--size", "lots")).isEqualTo(TidemarkMain.EXIT_USAGE);
    }

    private record Result(int exit, String output)
    {
    }

    private static Result runDemo(final String path, final String... args) throws IOException, InterruptedException
    {
        final List<String> command = JvmFlags.javaCommand(TidemarkMain.class.getName(), List.of(), "demo");
        command.addAll(List.of(args));
        final ProcessBuilder pb = new ProcessBuilder(command);
        pb.environment().put("PATH", path);
        final Path err = Files.createTempFile("tidemark-demo", ".err");
        pb.redirectError(err.toFile());
        final Process process = pb.start();
        final String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!process.waitFor(100, TimeUnit.SECONDS))
        {
            process.destroyForcibly();
            throw new AssertionError("demo did not finish in 100 s");
        }
        final String stderr = Files.readString(err);
        Files.delete(err);
        return new Result(process.exitValue(), out + (stderr.isEmpty() ? "" : "\n[stderr]\n" + stderr));
    }

    static Path requireTool(final String name)
    {
        for (final String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator))
        {
            final Path candidate = Path.of(dir, name);
            if (Files.isExecutable(candidate))
            {
                return candidate;
            }
        }
        throw new AssertionError("required tool '" + name + "' is not installed (install it: see .ci/test)");
    }
}
