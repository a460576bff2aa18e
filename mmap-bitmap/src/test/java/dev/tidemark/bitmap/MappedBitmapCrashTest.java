package dev.tidemark.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crash trust (invariant I5, process death): a child JVM marks and acknowledges each mark; the parent
 * kills it with SIGKILL mid-storm; every acknowledged mark must be in the reopened, trusted file.
 * Runs on the test thread only.
 */
class MappedBitmapCrashTest
{
    @TempDir
    Path dir;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void everyAcknowledgedMarkSurvivesSigkill() throws Exception
    {
        final long seed = System.nanoTime();
        final Path file = dir.resolve("crash.tmbm");
        final long granularity = 4096;
        final long diskSize = (1L << 30) + 1234;
        MappedBitmap.create(file, "crash", diskSize, granularity).close();

        final Process child = ChildJvm.start("mark", file.toString(), Long.toString(seed));
        final List<long[]> acknowledged = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.US_ASCII)))
        {
            assertThat(in.readLine()).as("child greeting (seed %d)", seed).isEqualTo("ready");
            final long killAfter = 20_000 + (seed & 0x3FFF);
            String line;
            while ((line = in.readLine()) != null && acknowledged.size() < killAfter)
            {
                final int space = line.indexOf(' ');
                acknowledged.add(new long[] {Long.parseLong(line.substring(0, space)), Long.parseLong(line.substring(space + 1))});
            }
            child.destroyForcibly();
            assertThat(child.waitFor(30, TimeUnit.SECONDS)).isTrue();
            // Marks acknowledged between our last read and the kill are not checked: they were never read.
        }
        finally
        {
            child.destroyForcibly();
        }
        assertThat(child.exitValue()).as("killed by SIGKILL").isEqualTo(137);

        try (MappedBitmap bitmap = MappedBitmap.open(file))
        {
            assertThat(bitmap.openState()).as("seed %d", seed).isEqualTo(OpenState.TRUSTED_SAME_BOOT);
            assertThat(bitmap.isInconsistent()).isFalse();
            assertThat(bitmap.generation()).isEqualTo(3);
            for (final long[] mark : acknowledged)
            {
                final long firstChunk = mark[0] / granularity;
                final long lastChunk = (mark[0] + mark[1] - 1) / granularity;
                for (long chunk = firstChunk; chunk <= lastChunk; chunk++)
                {
                    assertThat(bitmap.isDirty(Math.max(chunk * granularity, mark[0])))
                        .as("acknowledged mark %d+%d lost (seed %d)", mark[0], mark[1], seed).isTrue();
                }
            }
            assertThat(bitmap.checkConsistency()).isEmpty();
        }
    }
}
