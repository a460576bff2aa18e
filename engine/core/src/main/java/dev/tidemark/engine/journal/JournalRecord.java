package dev.tidemark.engine.journal;

import java.util.Objects;

/**
 * One metadata fact in a disk's journal; immutable and safe to share between threads.
 *
 * <p>Which fields mean something depends on {@link #type()}; the factories name them. {@code subject} is a
 * bitmap name or a job id, {@code fileId} the number of a bitmap file in the disk's bitmap directory,
 * {@code flags} a combination of {@link #FLAG_RECORDING} and {@link #FLAG_INCONSISTENT}, {@code cut} a ring
 * sequence, {@code detail} free text (a job's type or outcome).
 *
 * @param type what happened.
 * @param subject the bitmap name or job id, empty when the type has none.
 * @param fileId the bitmap file number, 0 when the type has none.
 * @param granularity bytes per chunk for {@link Type#BITMAP_ADDED}, else 0.
 * @param flags bitmap flags for {@link Type#BITMAP_ADDED} and {@link Type#BITMAP_FLAGS}; 1 for an abdicated
 *              successor in {@link Type#SUCCESSOR_RESOLVED}.
 * @param cut the ring sequence of {@link Type#TXN_COMMIT}, a checkpoint's creation millis, else 0.
 * @param detail free text for job records, empty otherwise.
 */
public record JournalRecord(Type type, String subject, long fileId, long granularity, int flags, long cut,
    String detail)
{
    /** The bitmap records writes (not disabled). */
    public static final int FLAG_RECORDING = 1;
    /** The bitmap's bits must not be trusted; only remove is allowed. */
    public static final int FLAG_INCONSISTENT = 2;

    /** Record types; the code is the byte written to the file and never changes. */
    public enum Type
    {
        /** A persistent bitmap exists in file {@code fileId}. */
        BITMAP_ADDED(1),
        /** A persistent bitmap is gone. */
        BITMAP_REMOVED(2),
        /** A persistent bitmap's flags changed. */
        BITMAP_FLAGS(3),
        /** A persistent bitmap's bits are about to change inside a transaction (clear, merge, restore). */
        BITS_CHANGING(4),
        /** A persistent bitmap got a successor in file {@code fileId}; the bitmap is busy. */
        SUCCESSOR_CREATED(5),
        /** A bitmap's successor was resolved: abdicated ({@code flags == 1}) or reclaimed. */
        SUCCESSOR_RESOLVED(6),
        /** The transaction whose records precede this one committed at ring sequence {@code cut}. */
        TXN_COMMIT(7),
        /** The transaction whose records precede this one was rolled back. */
        TXN_ABORT(8),
        /** A job started. */
        JOB_STARTED(9),
        /** A job ended; {@code detail} says how. */
        JOB_OUTCOME(10),
        /** The disk was closed cleanly. */
        CLEAN_CLOSE(11),
        /** The disk was opened. */
        OPENED(12),
        /** The image's fingerprint at a clean close ({@code detail}); checked at the next open. */
        IMAGE_FINGERPRINT(13),
        /** The image changed while no Tidemark held it; {@code detail} says how; its bitmaps became inconsistent. */
        OUT_OF_BAND_CHANGE(14),
        /**
         * This group is one disk's part of a transaction over several disks: {@code subject} is the transaction's id,
         * {@code detail} the journal files of every member, one per line. A crash can leave this group without its
         * commit record while another member committed; replay then consults the other members (see Journal).
         */
        JOINT_CUT(15),
        /**
         * A checkpoint exists: {@code subject} is its name, {@code fileId} its epoch, {@code cut} its creation time in
         * epoch millis, {@code detail} the disks (node names) of the transaction that made it, one per line.
         */
        CHECKPOINT_ADDED(16),
        /** A checkpoint is gone: {@code subject} is its name. */
        CHECKPOINT_REMOVED(17);

        private final int code;

        Type(final int code)
        {
            this.code = code;
        }

        /** @return the byte written to the file. */
        public int code()
        {
            return code;
        }

        /**
         * @param code a byte from the file.
         * @return the type, or {@code null} for an unknown code.
         */
        public static Type ofCode(final int code)
        {
            for (final Type type : values())
            {
                if (type.code == code)
                {
                    return type;
                }
            }
            return null;
        }
    }

    /** Checks the fields. */
    public JournalRecord
    {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(subject, "subject");
        Objects.requireNonNull(detail, "detail");
    }

    /**
     * @param name bitmap name.
     * @param fileId its file.
     * @param granularity bytes per chunk.
     * @param flags its flags.
     * @return a {@link Type#BITMAP_ADDED} record.
     */
    public static JournalRecord bitmapAdded(final String name, final long fileId, final long granularity,
        final int flags)
    {
        return new JournalRecord(Type.BITMAP_ADDED, name, fileId, granularity, flags, 0, "");
    }

    /**
     * @param name bitmap name.
     * @return a {@link Type#BITMAP_REMOVED} record.
     */
    public static JournalRecord bitmapRemoved(final String name)
    {
        return new JournalRecord(Type.BITMAP_REMOVED, name, 0, 0, 0, 0, "");
    }

    /**
     * @param name bitmap name.
     * @param flags the new flags.
     * @return a {@link Type#BITMAP_FLAGS} record.
     */
    public static JournalRecord bitmapFlags(final String name, final int flags)
    {
        return new JournalRecord(Type.BITMAP_FLAGS, name, 0, 0, flags, 0, "");
    }

    /**
     * @param name bitmap name.
     * @return a {@link Type#BITS_CHANGING} record.
     */
    public static JournalRecord bitsChanging(final String name)
    {
        return new JournalRecord(Type.BITS_CHANGING, name, 0, 0, 0, 0, "");
    }

    /**
     * @param name bitmap name.
     * @param fileId the successor's file.
     * @return a {@link Type#SUCCESSOR_CREATED} record.
     */
    public static JournalRecord successorCreated(final String name, final long fileId)
    {
        return new JournalRecord(Type.SUCCESSOR_CREATED, name, fileId, 0, 0, 0, "");
    }

    /**
     * @param name bitmap name.
     * @param abdicated whether the successor replaced the bitmap (else it was merged back).
     * @return a {@link Type#SUCCESSOR_RESOLVED} record.
     */
    public static JournalRecord successorResolved(final String name, final boolean abdicated)
    {
        return new JournalRecord(Type.SUCCESSOR_RESOLVED, name, 0, 0, abdicated ? 1 : 0, 0, "");
    }

    /**
     * @param jobId the job.
     * @param detail what kind of job, for example {@code backup sync=incremental bitmap=b0}.
     * @return a {@link Type#JOB_STARTED} record.
     */
    public static JournalRecord jobStarted(final String jobId, final String detail)
    {
        return new JournalRecord(Type.JOB_STARTED, jobId, 0, 0, 0, 0, detail);
    }

    /**
     * @param jobId the job.
     * @param detail how it ended, for example {@code completed} or {@code failed: Input/output error}.
     * @return a {@link Type#JOB_OUTCOME} record.
     */
    public static JournalRecord jobOutcome(final String jobId, final String detail)
    {
        return new JournalRecord(Type.JOB_OUTCOME, jobId, 0, 0, 0, 0, detail);
    }

    /**
     * @param fingerprint the image's fingerprint ({@code dev.tidemark.engine.ImageFingerprint}).
     * @return an {@link Type#IMAGE_FINGERPRINT} record.
     */
    public static JournalRecord imageFingerprint(final String fingerprint)
    {
        return new JournalRecord(Type.IMAGE_FINGERPRINT, "", 0, 0, 0, 0, fingerprint);
    }

    /**
     * @param reason what changed.
     * @return an {@link Type#OUT_OF_BAND_CHANGE} record.
     */
    public static JournalRecord outOfBandChange(final String reason)
    {
        return new JournalRecord(Type.OUT_OF_BAND_CHANGE, "", 0, 0, 0, 0, reason);
    }

    /**
     * @param id the transaction's id, the same in every member's journal.
     * @param memberJournals the journal file of every member disk.
     * @return a {@link Type#JOINT_CUT} record.
     */
    public static JournalRecord jointCut(final String id, final java.util.List<java.nio.file.Path> memberJournals)
    {
        final StringBuilder detail = new StringBuilder();
        for (final java.nio.file.Path journal : memberJournals)
        {
            detail.append(detail.length() == 0 ? "" : "\n").append(journal.toAbsolutePath());
        }
        return new JournalRecord(Type.JOINT_CUT, id, 0, 0, 0, 0, detail.toString());
    }

    /**
     * @param name the checkpoint's name.
     * @param epoch its epoch.
     * @param createdMillis its creation time.
     * @param disks the disks of the transaction that made it, one per line.
     * @return a {@link Type#CHECKPOINT_ADDED} record.
     */
    public static JournalRecord checkpointAdded(final String name, final long epoch, final long createdMillis,
        final String disks)
    {
        return new JournalRecord(Type.CHECKPOINT_ADDED, name, epoch, 0, 0, createdMillis, disks);
    }

    /**
     * @param name the checkpoint's name.
     * @return a {@link Type#CHECKPOINT_REMOVED} record.
     */
    public static JournalRecord checkpointRemoved(final String name)
    {
        return new JournalRecord(Type.CHECKPOINT_REMOVED, name, 0, 0, 0, 0, "");
    }

    static JournalRecord marker(final Type type, final long cut)
    {
        return new JournalRecord(type, "", 0, 0, 0, cut, "");
    }
}
