package dev.tidemark.engine.torture;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * SIGKILL torture (issue 6): at least 20 cycles of a child engine killed under a write storm with rotations,
 * incremental backups and fleecing views in flight; every reopen is checked by {@link TortureHarness}, and the
 * final chain of qcow2 backups is compared with the disk by {@code qemu-img compare}.
 */
class ProcessKillTortureTest
{
    @TempDir
    Path dir;

    @Test
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void everyKillReopensTrustedAndTheChainRestoresTheDisk() throws Exception
    {
        final long seed = System.nanoTime();
        final TortureHarness harness = new TortureHarness(new TortureHarness.Settings(dir, 22, seed, 3, 32 << 20,
            150, 700, true, System.out));
        final TortureHarness.Report report = harness.run();
        System.out.println("torture seed " + seed + ": " + report);
        assertThat(report.failures).as("seed %d", seed).isEmpty();
        assertThat(report.cycles).isEqualTo(22);
        assertThat(report.kills).isEqualTo(22);
        assertThat(report.bitsVerified).isGreaterThan(1000);
        assertThat(report.childBackupsCompleted + report.childBackupsAbandoned).isGreaterThan(0);
        assertThat(report.rotations).isGreaterThan(0);
        final String compared = qemuImgCompare(harness.chainTop(), harness.image());
        assertThat(compared).as("qemu-img compare of the chain top with the disk").contains("Images are identical");
    }

    private static String qemuImgCompare(final Path top, final Path image) throws IOException, InterruptedException
    {
        final String format = top.toString().endsWith(".qcow2") ? "qcow2" : "raw";
        final Process process;
        try
        {
            process = new ProcessBuilder("qemu-img", "compare", "-f", format, "-F", "raw", top.toString(),
                image.toString()).redirectErrorStream(true).start();
        }
        catch (final IOException ex)
        {
            throw new AssertionError("qemu-img is required for this test and was not found: " + ex.getMessage(), ex);
        }
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(60, TimeUnit.SECONDS)).isTrue();
        return output + " (exit " + process.exitValue() + ")";
    }
}
