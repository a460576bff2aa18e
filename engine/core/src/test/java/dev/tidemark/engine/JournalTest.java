package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.journal.JournalRecord;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Replay on open: round trip, torn tails, uncommitted transactions, job records, compactness. */
@Timeout(60)
class JournalTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    private final HeapStore store = new HeapStore(8 << 20);

    private TrackedDisk open() throws IOException
    {
        return TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm")).withCloseStore(false));
    }

    private Path journalFile()
    {
        return dir.resolve("bm").resolve(Journal.FILE_NAME);
    }

    @Test
    void persistentBitmapsComeBackWithTheirFlagsAndBitsAndTheOthersDoNot() throws IOException
    {
        final String sha;
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.add("p", G, true, false), BitmapActions.add("d", 4096, true, true),
                BitmapActions.add("mem"));
            disk.write(G * 7 + 5, ByteBuffer.allocate((int) G), false);
            sha = disk.bitmaps().sha256("p");
            final Thread jobThread = new Thread(() -> disk.journal().append(JournalRecord.jobOutcome("job0", "completed")));
            jobThread.start();
            joinQuietly(jobThread);
        }
        final Journal.Replay replay = Journal.inspect(journalFile());
        assertThat(replay.cleanClose()).isTrue();
        assertThat(replay.jobs()).containsEntry("job0", "completed");
        try (TrackedDisk disk = open())
        {
            assertThat(disk.openMessages()).isEmpty();
            assertThat(disk.bitmaps().query()).containsExactly(
                new BitmapInfo("p", true, false, true, false, G, 2 * G),
                new BitmapInfo("d", false, false, true, false, 4096, 0));
            assertThat(disk.bitmaps().sha256("p")).isEqualTo(sha);
        }
    }

    @Test
    void tornTailIsTruncatedWithAMessageAndTheStateBeforeItKept() throws IOException
    {
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.add("p", G, true, false));
        }
        final long valid = Journal.inspect(journalFile()).validLength();
        try (RandomAccessFile file = new RandomAccessFile(journalFile().toFile(), "rw"))
        {
            file.seek(valid);
            file.write(new byte[] {(byte) 0x81, 5, 'a', 'b', 'c', 'd', 'e', 1, 2, 3, 4});
        }
        try (TrackedDisk disk = open())
        {
            assertThat(disk.openMessages()).singleElement().asString()
                .contains("record at offset " + valid + " is torn or garbled (CRC32C mismatch)")
                .contains("truncating");
            assertThat(disk.bitmaps().query()).extracting(BitmapInfo::name).containsExactly("p");
            disk.transaction(BitmapActions.add("q", G, true, false));
        }
        try (TrackedDisk disk = open())
        {
            assertThat(disk.openMessages()).isEmpty();
            assertThat(disk.bitmaps().query()).extracting(BitmapInfo::name).containsExactly("p", "q");
        }
    }

    @Test
    void uncommittedBitChangesMakeTheBitmapInconsistentAndOnlyRemoveIsAllowed() throws IOException
    {
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.add("a", G, true, false), BitmapActions.add("b", G, true, false));
        }
        try (Journal journal = Journal.open(dir.resolve("bm")))
        {
            // What a crash in the middle of "clear a" leaves: the intent, no commit.
            journal.beginGroup();
            journal.append(JournalRecord.bitsChanging("a"));
        }
        for (int round = 0; round < 2; round++)
        {
            try (TrackedDisk disk = open())
            {
                if (round == 0)
                {
                    assertThat(disk.openMessages()).singleElement().asString().contains("never committed")
                        .contains("[a]");
                }
                assertThat(disk.bitmaps().query("a").inconsistent()).isTrue();
                assertThat(disk.bitmaps().query("a").recording()).as("QEMU disables inconsistent bitmaps").isFalse();
                assertThat(disk.bitmaps().query("b").inconsistent()).isFalse();
                final String inconsistent = "Bitmap 'a' is inconsistent and cannot be used";
                for (final var action : List.of(BitmapActions.clear("a"), BitmapActions.enable("a"),
                    BitmapActions.disable("a"), BitmapActions.merge("a", List.of("b")),
                    BitmapActions.merge("b", List.of("a"))))
                {
                    assertThatThrownBy(() -> disk.transaction(action)).as(action.type()).hasMessage(inconsistent);
                }
                // An inconsistent bitmap does not record: its bits mean nothing.
                disk.write(0, ByteBuffer.allocate(1), false);
                assertThat(disk.bitmaps().query("a").count()).isZero();
            }
        }
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.remove("a"));
            assertThat(disk.bitmaps().query()).extracting(BitmapInfo::name).containsExactly("b");
        }
    }

    @Test
    void aGarbledBitmapFileIsSetAsideAndItsBitmapBecomesInconsistent() throws IOException
    {
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.add("a", G, true, false), BitmapActions.add("b", G, true, false));
            disk.write(0, ByteBuffer.allocate(1), false);
        }
        final Path file = dir.resolve("bm").resolve("bitmap-1.tmbm");
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw"))
        {
            raf.write(new byte[] {'g', 'a', 'r', 'b', 'l', 'e', 'd', '!'});
        }
        try (TrackedDisk disk = open())
        {
            assertThat(disk.openMessages()).singleElement().asString().startsWith("bitmap 'a': its file cannot be used")
                .contains("moved to bitmap-1.tmbm.bad");
            assertThat(disk.bitmaps().query("a").inconsistent()).isTrue();
            assertThat(disk.bitmaps().query("b")).isEqualTo(new BitmapInfo("b", true, false, true, false, G, G));
            assertThat(dir.resolve("bm").resolve("bitmap-1.tmbm.bad")).exists();
            disk.transaction(BitmapActions.remove("a"));
        }
    }

    @Test
    void recordsStayCompact() throws IOException
    {
        final long before;
        final long after;
        final int transactions = 2000;
        try (TrackedDisk disk = open())
        {
            disk.transaction(BitmapActions.add("bitmap-0", G, true, false));
            before = disk.journal().length();
            for (int i = 0; i < transactions / 2; i++)
            {
                disk.transaction(BitmapActions.disable("bitmap-0"));
                disk.transaction(BitmapActions.enable("bitmap-0"));
            }
            after = disk.journal().length();
        }
        final double perTransaction = (after - before) / (double) transactions;
        System.out.printf("journal bytes per one-flag transaction: %.1f%n", perTransaction);
        // type + length + name (1 + 8) + flags + CRC, then the commit marker with a delta cut.
        assertThat(perTransaction).isLessThan(24);
        try (TrackedDisk disk = open())
        {
            assertThat(disk.bitmaps().query("bitmap-0").recording()).isTrue();
        }
    }

    @Test
    void longRecordsAcrossMappingChunksReplayFromTheMappingAndByInspection() throws IOException
    {
        // Bodies of 128 bytes and more take a two-byte length; 2500 records of changing sizes, some with
        // characters of two and three UTF-8 bytes, cross several 64 KiB mapping chunks at many offsets.
        final int records = 2500;
        java.nio.file.Files.createDirectories(dir.resolve("bm"));
        try (Journal journal = Journal.open(dir.resolve("bm")))
        {
            for (int i = 0; i < records; i++)
            {
                journal.append(JournalRecord.jobOutcome("job" + i, detail(i)));
            }
        }
        final Journal.Replay inspected = Journal.inspect(journalFile());
        assertThat(inspected.messages()).isEmpty();
        assertThat(inspected.jobs()).hasSize(records);
        for (int i = 0; i < records; i += 97)
        {
            assertThat(inspected.jobs().get("job" + i)).isEqualTo(detail(i));
        }
        try (Journal journal = Journal.open(dir.resolve("bm")))
        {
            assertThat(journal.replay().messages()).isEmpty();
            assertThat(journal.replay().jobs()).isEqualTo(inspected.jobs());
            assertThat(journal.replay().validLength()).isEqualTo(inspected.validLength());
        }
    }

    private static String detail(final int i)
    {
        return "x".repeat(100 + i % 300) + (i % 3 == 0 ? "é€" : "");
    }

    private static void joinQuietly(final Thread thread)
    {
        try
        {
            thread.join();
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new AssertionError(ex);
        }
    }
}
