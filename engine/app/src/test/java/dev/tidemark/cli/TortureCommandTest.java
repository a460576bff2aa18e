package dev.tidemark.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code tidemark torture}: bad arguments exit 2; a short run exits 0. */
class TortureCommandTest
{
    @TempDir
    Path dir;

    @Test
    void badArgumentsAreUsageErrors()
    {
        assertThat(TidemarkMain.run("torture", "--cycles", "0", "--dir", dir.toString()))
            .isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(TidemarkMain.run("torture", "--size", "1000", "--dir", dir.toString()))
            .isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(TidemarkMain.run("torture", "--min-run-ms", "500", "--max-run-ms", "100"))
            .isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(TidemarkMain.run("torture", "--cycles", "many")).isEqualTo(TidemarkMain.EXIT_USAGE);
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void shortRunPasses()
    {
        assertThat(TidemarkMain.run("torture", "--cycles", "2", "--seed", "7", "--dir", dir.resolve("w").toString(),
            "--size", "8M", "--min-run-ms", "50", "--max-run-ms", "150", "--quiet")).isEqualTo(TidemarkMain.EXIT_OK);
    }
}
