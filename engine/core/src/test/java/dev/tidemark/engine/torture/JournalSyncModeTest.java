package dev.tidemark.engine.torture;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.journal.JournalRecord;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A forced journal commit must wait for storage. Regression test: Chronicle's default sync mode is ASYNC, i.e.
 * {@code msync(MS_ASYNC)}, which Linux treats as a no-op, so durable mode's commits were never durable (seen with
 * {@code strace -e msync}: every commit issued {@code MS_ASYNC}; now {@code MS_SYNC}).
 */
class JournalSyncModeTest
{
    @TempDir
    Path dir;

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void commitsSyncInEveryMappedChunk()
    {
        try (Journal journal = Journal.open(dir))
        {
            journal.syncOnCommit(true);
            assertThat(journal.syncMode()).isEqualTo("SYNC");
            long cut = 1;
            while (journal.length() < 200 << 10)
            {
                journal.beginGroup();
                journal.append(JournalRecord.jobOutcome("job-" + cut, "x".repeat(200)));
                journal.commitGroup(cut++);
            }
            // Past the third 64 KiB mapping chunk: the chunk in use now was mapped after open.
            assertThat(journal.syncMode()).isEqualTo("SYNC");
        }
        catch (final java.io.IOException ex)
        {
            throw new AssertionError(ex);
        }
    }
}
