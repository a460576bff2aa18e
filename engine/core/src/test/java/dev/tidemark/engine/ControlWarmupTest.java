package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.warmup.ControlWarmup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The warm-up runs every command it names to the end (a failing one throws), on scratch disks it deletes again;
 * one JUnit thread.
 */
@Timeout(120)
class ControlWarmupTest
{
    @TempDir
    Path dir;

    @Test
    void runsEveryRoundAndLeavesNothingBehind() throws Exception
    {
        assertThat(ControlWarmup.run(dir, 3)).isEqualTo(3);
        try (Stream<Path> left = Files.list(dir))
        {
            assertThat(left).as("scratch files left in " + dir).isEmpty();
        }
    }

    @Test
    void everyEventTheScratchJobsEmitReachesTheSink() throws Exception
    {
        final Set<String> seen = ConcurrentHashMap.newKeySet();
        assertThat(ControlWarmup.run(dir, 2, (name, data) -> seen.add(name))).isEqualTo(2);
        // What a daemon's conversion to QMP JSON must have met before a real job's first event.
        assertThat(seen).contains("JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED");
    }

    @Test
    void zeroRoundsMakeNothing() throws Exception
    {
        assertThat(ControlWarmup.run(dir, 0)).isZero();
        try (Stream<Path> left = Files.list(dir))
        {
            assertThat(left).isEmpty();
        }
    }
}
