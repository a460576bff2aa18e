package dev.tidemark.engine.torture;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.job.BackupJob;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobStatus;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A kill can cut the journal after any byte: every prefix of the journal of a completed incremental backup must
 * explain its bitmap. Regression test for the torture's first finding: the successor's abdication was journaled
 * before the job's outcome, so a kill in between left a bitmap without the bits of a backup the journal did not call
 * completed (a management layer would discard that backup and the chain would miss its changes).
 */
class JournalPrefixTest
{
    @TempDir
    Path dir;

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void everyPrefixOfABackupsJournalExplainsTheBitmap() throws Exception
    {
        final Path image = dir.resolve("disk.raw");
        final long parentFile;
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image, 4 << 20),
            DiskOptions.bitmapDirectoryFor(image))))
        {
            disk.transaction(BitmapActions.add("tm", 65536, true, false));
            parentFile = Journal.inspect(disk.journal().file()).bitmaps().get("tm").fileId();
            disk.write(65536, ByteBuffer.wrap(new byte[4096]), false);
            try (RawFileStore target = RawFileStore.create(dir.resolve("inc.raw"), 4 << 20))
            {
                final BackupJob job = BackupStartAction.start(disk, new JobManager(), BackupOptions.of("d",
                    SyncMode.INCREMENTAL).withJobId("inc").withBitmap("tm", BitmapMode.ON_SUCCESS)
                    .withJob(new JobOptions(true, false, 0)), target);
                while (job.status() != JobStatus.CONCLUDED)
                {
                    Thread.sleep(1);
                }
                assertThat(job.error()).isNull();
            }
        }
        final byte[] mapped = Files.readAllBytes(DiskOptions.bitmapDirectoryFor(image).resolve(Journal.FILE_NAME));
        int used = mapped.length;
        while (used > 0 && mapped[used - 1] == 0)
        {
            used--;
        }
        // The mapping is zero past the last record; prefixes beyond it say nothing new.
        final byte[] journal = Arrays.copyOf(mapped, used);
        int abdicatedPrefixes = 0;
        for (int length = 0; length <= journal.length; length++)
        {
            final Journal.Replay replay = Journal.replayBytes(Path.of("prefix-" + length),
                Arrays.copyOf(journal, length));
            final Journal.BitmapState tm = replay.bitmaps().get("tm");
            if (tm != null && tm.fileId() != parentFile && tm.successorFileId() == 0)
            {
                abdicatedPrefixes++;
                assertThat(replay.jobs().get("inc")).as("journal cut after %d of %d bytes: 'tm' abdicated to its"
                    + " successor, so the backup must be journaled completed", length, journal.length)
                    .isEqualTo("completed");
            }
        }
        assertThat(abdicatedPrefixes).isGreaterThan(0);
    }
}
