package dev.tidemark.engine.journal;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A transaction over two disks whose commit a crash cut off on one of them: the disk without its commit record
 * commits too when the other disk's journal holds the commit, and drops the group when no member committed. So a
 * crash leaves every disk before the cut or every disk after it.
 */
class JointCutJournalTest
{
    private static final String ID = "2f9c6e0a-joint";

    @TempDir
    Path dir;

    /** Writes one member's part; returns the journal length before its commit record. */
    private static long part(final Path directory, final List<Path> members) throws IOException
    {
        final Journal journal = Journal.open(directory);
        try
        {
            journal.beginGroup();
            journal.append(JournalRecord.bitmapAdded("chk", 1, 65536, JournalRecord.FLAG_RECORDING));
            journal.append(JournalRecord.jointCut(ID, members));
            final long beforeCommit = journal.length();
            journal.commitGroup(42);
            return beforeCommit;
        }
        finally
        {
            journal.close();
        }
    }

    /** The crash: the file ends right before the commit record (what follows was never written). */
    private static void cutAt(final Path journal, final long length) throws IOException
    {
        try (RandomAccessFile file = new RandomAccessFile(journal.toFile(), "rw"))
        {
            file.setLength(length);
        }
    }

    @Test
    void aMemberWithoutItsCommitCommitsWhenAnotherMemberDid() throws IOException
    {
        final Path a = Files.createDirectories(dir.resolve("a"));
        final Path b = Files.createDirectories(dir.resolve("b"));
        final List<Path> members = List.of(a.resolve(Journal.FILE_NAME), b.resolve(Journal.FILE_NAME));
        part(a, members);
        cutAt(members.get(1), part(b, members));

        final Journal.Replay seen = Journal.inspect(members.get(1));
        assertThat(seen.bitmaps()).containsKey("chk");
        assertThat(seen.messages()).anyMatch(m -> m.contains("committed it; committed here too"));
        final Journal reopened = Journal.open(b);
        assertThat(reopened.replay().bitmaps()).containsKey("chk");
        reopened.close();
        // Sealed: the disk answers for itself now, even without the other member's journal.
        Files.delete(members.get(0));
        assertThat(Journal.inspect(members.get(1)).bitmaps()).containsKey("chk");
        assertThat(Journal.inspect(members.get(1)).committedJoints()).contains(ID);
    }

    @Test
    void noMemberCommittedMeansNoMemberHasIt() throws IOException
    {
        final Path a = Files.createDirectories(dir.resolve("a"));
        final Path b = Files.createDirectories(dir.resolve("b"));
        final List<Path> members = List.of(a.resolve(Journal.FILE_NAME), b.resolve(Journal.FILE_NAME));
        cutAt(members.get(0), part(a, members));
        cutAt(members.get(1), part(b, members));
        assertThat(Journal.inspect(members.get(0)).bitmaps()).doesNotContainKey("chk");
        assertThat(Journal.inspect(members.get(1)).bitmaps()).doesNotContainKey("chk");
        final Journal reopened = Journal.open(b);
        assertThat(reopened.replay().bitmaps()).doesNotContainKey("chk");
        reopened.close();
    }
}
