package dev.tidemark.engine.journal;

import dev.tidemark.engine.journal.JournalRecord.Type;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32C;
import net.openhft.chronicle.bytes.AppendableUtil;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.bytes.BytesUtil;
import net.openhft.chronicle.bytes.MappedBytes;
import net.openhft.chronicle.bytes.SyncMode;

/**
 * A disk's append-only metadata journal in one mapped file; safe for concurrent use by any number of threads
 * (appends are serialised by the journal's monitor).
 *
 * <p>Bitmap files hold bits; the journal holds meaning: which persistent bitmaps exist and in which file, their
 * flags, which successor file belongs to which busy bitmap, the cut of every committed transaction, job starts
 * and outcomes, and clean closes. The record format is documented in {@code docs/architecture.md} (journal).
 *
 * <p>Records appended by the thread that opened a transaction group ({@link #beginGroup()}) belong to that
 * group and count only once its {@link Type#TXN_COMMIT} record is written; records from any other thread stand
 * alone. Replay ({@link #replay()}) ignores an uncommitted group at the tail and truncates a torn or garbled
 * tail, saying so in {@link Replay#messages()}.
 *
 * <p>Chronicle's {@link MappedBytes} checks by default that one thread uses it; that check is disabled
 * deliberately because job threads append their records too, and every access happens under this journal's
 * monitor, which gives the same exclusion and the happens-before edges between threads.
 */
public final class Journal implements AutoCloseable
{
    /** The journal's file name inside the bitmap directory. */
    public static final String FILE_NAME = "journal.tmj";

    private static final int GROUPED = 0x80;
    private static final long CHUNK_SIZE = 64 << 10;
    private static final long COMPACT_THRESHOLD = 1 << 20;
    /** Committed joint transaction ids a compaction keeps. */
    private static final int KEPT_JOINTS = 256;

    /**
     * Sees the journal file after every force; the seam the power-loss simulation (tests) uses to learn what reached
     * storage. Production leaves it a no-op.
     */
    static volatile java.util.function.Consumer<Path> syncObserver = file -> { };

    private final Path file;
    private final MappedBytes bytes;
    private final Replay replay;
    private long end;
    private long lastCut;
    private Thread groupOwner;
    private boolean closed;
    private volatile boolean syncOnCommit;

    private Journal(final Path file, final MappedBytes bytes, final Replay replay, final long end)
    {
        this.file = file;
        this.bytes = bytes;
        this.replay = replay;
        this.end = end;
    }

    /**
     * Opens or creates the journal in {@code directory}, replays it from the mapping, truncates a bad tail,
     * compacts it when it grew large, and appends an {@link Type#OPENED} record.
     *
     * @param directory the disk's bitmap directory.
     * @return the open journal; its replay is {@link #replay()}.
     * @throws IOException if the file cannot be read or mapped.
     */
    public static Journal open(final Path directory) throws IOException
    {
        final Path file = directory.resolve(FILE_NAME);
        MappedBytes mapped = map(file);
        long fileLength = Files.size(file);
        Replay replay = replayMapped(file, mapped, fileLength, true);
        long end = replay.validLength;
        if (end > COMPACT_THRESHOLD)
        {
            final Path temporary = directory.resolve(FILE_NAME + ".new");
            Files.deleteIfExists(temporary);
            final long compactedLength;
            final MappedBytes snapshot = map(temporary);
            try
            {
                compactedLength = encodeSnapshot(replay, snapshot);
                // Durable before the rename makes it the journal.
                snapshot.sync();
            }
            finally
            {
                snapshot.close();
            }
            mapped.close();
            Files.move(temporary, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            final List<String> messages = new ArrayList<>(replay.messages);
            messages.add("journal " + file + ": compacted " + end + " bytes to " + compactedLength);
            final Replay compacted = new Replay(replay.bitmaps, replay.jobs, messages, replay.cleanClose, replay.opens,
                compactedLength, replay.inconsistentByTail);
            compacted.imageFingerprint = replay.imageFingerprint;
            compacted.outOfBandChanges.addAll(replay.outOfBandChanges);
            compacted.committedJoints.addAll(replay.committedJoints);
            compacted.checkpoints.putAll(replay.checkpoints);
            replay = compacted;
            end = compactedLength;
            mapped = map(file);
            fileLength = Files.size(file);
        }
        if (fileLength > end)
        {
            // Zero the torn or uncommitted tail so that the next append cannot be mistaken for its continuation.
            mapped.zeroOut(end, fileLength);
        }
        final Journal journal = new Journal(file, mapped, replay, end);
        if (replay.tailCommittedByPeer && replay.validLength == end)
        {
            // Seal the group another member committed, so that this journal answers for itself from now on.
            journal.write(JournalRecord.marker(Type.TXN_COMMIT, 0), true);
        }
        for (final JournalRecord kept : replay.standaloneInDroppedTail)
        {
            // Job records that landed inside the dropped tail stand alone; keep them.
            journal.write(kept, false);
        }
        journal.appendMarker(Type.OPENED, System.currentTimeMillis());
        // The open must be durable before the image changes: otherwise a power loss could leave a journal that
        // ends in a clean close whose fingerprint the changed image no longer matches (a false out-of-band alarm).
        mapped.sync();
        syncObserver.accept(file);
        return journal;
    }

    /** Maps {@code file} for reading and appending, creating it when absent. */
    private static MappedBytes map(final Path file) throws IOException
    {
        final MappedBytes mapped = MappedBytes.mappedBytes(file.toFile(), CHUNK_SIZE);
        mapped.singleThreadedCheckDisabled(true);
        // Chronicle's default sync mode is ASYNC: msync(MS_ASYNC), which Linux treats as a no-op, so a "forced"
        // commit would not be durable at all. SYNC waits for the pages to reach storage.
        mapped.mappedFile().syncMode(SyncMode.SYNC);
        return mapped;
    }

    /** Replays the first {@code length} bytes of a mapping; the file on disk may be longer than the mapping. */
    private static Replay replayMapped(final Path file, final MappedBytes mapped, final long length,
        final boolean consultPeers)
    {
        // Reads stop at readLimit instead of faulting past the end of the file.
        mapped.readLimit(length);
        return replay(file, mapped, length, consultPeers);
    }

    /** @return what replay on open found. */
    public Replay replay()
    {
        return replay;
    }

    /** @return the journal's file. */
    public Path file()
    {
        return file;
    }

    /** @param sync whether every commit is made durable (msync) before the transaction completes. */
    public void syncOnCommit(final boolean sync)
    {
        syncOnCommit = sync;
    }

    /** @return how {@link #commitGroup} and {@link #close} force the file (SYNC: they wait for storage). */
    public synchronized String syncMode()
    {
        return bytes.bytesStore() instanceof net.openhft.chronicle.bytes.MappedBytesStore store
            ? store.syncMode().name() : "unmapped";
    }

    /** @return bytes used. */
    public synchronized long length()
    {
        return end;
    }

    /**
     * Appends a record: part of the open transaction group when called by the thread that opened it, else a
     * record that stands alone (job records from job threads).
     *
     * @param journalRecord the record; marker types are refused.
     */
    public synchronized void append(final JournalRecord journalRecord)
    {
        switch (journalRecord.type())
        {
            case TXN_COMMIT, TXN_ABORT, OPENED, CLEAN_CLOSE ->
                throw new IllegalArgumentException("marker records are written by the engine: " + journalRecord.type());
            default -> write(journalRecord, groupOwner == Thread.currentThread());
        }
    }

    /** Opens a transaction group for the calling thread (the ring's mark thread). */
    public synchronized void beginGroup()
    {
        if (groupOwner != null)
        {
            throw new IllegalStateException("a transaction group is already open on " + groupOwner.getName());
        }
        groupOwner = Thread.currentThread();
    }

    /**
     * Commits the open group at {@code cut}; forced to storage when {@link #syncOnCommit(boolean)} is on.
     *
     * @param cut the transaction's ring sequence.
     */
    public synchronized void commitGroup(final long cut)
    {
        checkOwner();
        write(JournalRecord.marker(Type.TXN_COMMIT, cut), true);
        groupOwner = null;
        if (syncOnCommit)
        {
            bytes.sync();
            syncObserver.accept(file);
        }
    }

    /**
     * Forces the open group's records to storage in durable mode ({@link #syncOnCommit(boolean)}), before this disk
     * votes in a transaction over several disks: another member may commit as soon as every member voted.
     */
    public synchronized void forceGroupIfDurable()
    {
        checkOwner();
        if (syncOnCommit)
        {
            bytes.sync();
            syncObserver.accept(file);
        }
    }

    /** Marks the open group rolled back. */
    public synchronized void abortGroup()
    {
        checkOwner();
        write(JournalRecord.marker(Type.TXN_ABORT, 0), true);
        groupOwner = null;
    }

    /** Appends the clean-close record, forces the journal and unmaps it. */
    @Override
    public synchronized void close()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        appendMarker(Type.CLEAN_CLOSE, 0);
        bytes.sync();
        syncObserver.accept(file);
        bytes.close();
    }

    private void checkOwner()
    {
        if (groupOwner != Thread.currentThread())
        {
            throw new IllegalStateException("no transaction group open on " + Thread.currentThread().getName());
        }
    }

    private synchronized void appendMarker(final Type type, final long value)
    {
        write(new JournalRecord(type, "", 0, 0, 0, value, ""), false);
    }

    private void write(final JournalRecord journalRecord, final boolean grouped)
    {
        if (closed && journalRecord.type() != Type.CLEAN_CLOSE)
        {
            throw new IllegalStateException("journal " + file + " is closed");
        }
        final long recordEnd = encode(bytes, end, journalRecord, grouped, lastCut);
        if (journalRecord.type() == Type.TXN_COMMIT)
        {
            lastCut = journalRecord.cut();
        }
        else if (journalRecord.type() == Type.OPENED)
        {
            lastCut = 0;
        }
        end = recordEnd;
    }

    // Layout of one record: type (1 byte, 0x80 set when grouped), body length (stop bit), body, CRC32C (4 bytes
    // in Chronicle's little-endian order) over everything before it. A zero type byte ends the journal.
    // Encodes in place at offset at of out and returns the offset after the record. The body's length is computed
    // first because the length precedes the body and a mapping cannot move bytes across its chunks.
    private static long encode(final Bytes<?> out, final long at, final JournalRecord r, final boolean grouped,
        final long lastCut)
    {
        final long bodyLength = bodyLength(r, lastCut);
        out.writePosition(at);
        out.writeUnsignedByte(r.type().code() | (grouped ? GROUPED : 0));
        out.writeStopBit(bodyLength);
        final long bodyStart = out.writePosition();
        writeBody(out, r, lastCut);
        final long crcAt = out.writePosition();
        if (crcAt - bodyStart != bodyLength)
        {
            throw new IllegalStateException(r.type() + " body took " + (crcAt - bodyStart) + " bytes, not "
                + bodyLength);
        }
        out.writeInt(crc32c(out, at, crcAt));
        return crcAt + 4;
    }

    private static long bodyLength(final JournalRecord r, final long lastCut)
    {
        return switch (r.type())
        {
            case BITMAP_ADDED -> utf8Length(r.subject()) + BytesUtil.stopBitLength(r.fileId()) + 2;
            case BITMAP_REMOVED, BITS_CHANGING -> utf8Length(r.subject());
            case BITMAP_FLAGS, SUCCESSOR_RESOLVED -> utf8Length(r.subject()) + 1;
            case SUCCESSOR_CREATED -> utf8Length(r.subject()) + BytesUtil.stopBitLength(r.fileId());
            case TXN_COMMIT -> BytesUtil.stopBitLength(r.cut() - lastCut);
            case OPENED -> BytesUtil.stopBitLength(r.cut());
            case JOB_STARTED, JOB_OUTCOME, JOINT_CUT -> utf8Length(r.subject()) + utf8Length(r.detail());
            case IMAGE_FINGERPRINT, OUT_OF_BAND_CHANGE -> utf8Length(r.detail());
            case CHECKPOINT_ADDED -> utf8Length(r.subject()) + BytesUtil.stopBitLength(r.fileId())
                + BytesUtil.stopBitLength(r.cut()) + utf8Length(r.detail());
            case CHECKPOINT_REMOVED -> utf8Length(r.subject());
            case TXN_ABORT, CLEAN_CLOSE -> 0;
        };
    }

    /** @return the bytes {@link Bytes#writeUtf8(CharSequence)} writes: a stop-bit length, then the UTF-8. */
    private static long utf8Length(final String text)
    {
        final long length = AppendableUtil.findUtf8Length(text);
        return BytesUtil.stopBitLength(length) + length;
    }

    private static void writeBody(final Bytes<?> body, final JournalRecord r, final long lastCut)
    {
        switch (r.type())
        {
            case BITMAP_ADDED ->
            {
                body.writeUtf8(r.subject());
                body.writeStopBit(r.fileId());
                body.writeUnsignedByte(Long.numberOfTrailingZeros(r.granularity()));
                body.writeUnsignedByte(r.flags());
            }
            case BITMAP_REMOVED, BITS_CHANGING -> body.writeUtf8(r.subject());
            case BITMAP_FLAGS, SUCCESSOR_RESOLVED ->
            {
                body.writeUtf8(r.subject());
                body.writeUnsignedByte(r.flags());
            }
            case SUCCESSOR_CREATED ->
            {
                body.writeUtf8(r.subject());
                body.writeStopBit(r.fileId());
            }
            case TXN_COMMIT -> body.writeStopBit(r.cut() - lastCut);
            case OPENED -> body.writeStopBit(r.cut());
            case JOB_STARTED, JOB_OUTCOME, JOINT_CUT ->
            {
                body.writeUtf8(r.subject());
                body.writeUtf8(r.detail());
            }
            case IMAGE_FINGERPRINT, OUT_OF_BAND_CHANGE -> body.writeUtf8(r.detail());
            case CHECKPOINT_ADDED ->
            {
                body.writeUtf8(r.subject());
                body.writeStopBit(r.fileId());
                body.writeStopBit(r.cut());
                body.writeUtf8(r.detail());
            }
            case CHECKPOINT_REMOVED -> body.writeUtf8(r.subject());
            case TXN_ABORT, CLEAN_CLOSE ->
            {
                // no body
            }
            default -> throw new IllegalStateException("unknown record type " + r.type());
        }
    }

    /** CRC32C of {@code [from, to)} read in place. */
    private static int crc32c(final Bytes<?> in, final long from, final long to)
    {
        final CRC32C crc = new CRC32C();
        for (long offset = from; offset < to; offset++)
        {
            crc.update(in.readUnsignedByte(offset));
        }
        return (int) crc.getValue();
    }

    /** Writes the records that rebuild {@code replay} at offset 0 of {@code out}; returns their length. */
    private static long encodeSnapshot(final Replay replay, final Bytes<?> out)
    {
        long at = 0;
        for (final BitmapState state : replay.bitmaps.values())
        {
            at = encode(out, at, JournalRecord.bitmapAdded(state.name(), state.fileId(), state.granularity(),
                state.flags()), true, 0);
            if (state.successorFileId() != 0)
            {
                at = encode(out, at, JournalRecord.successorCreated(state.name(), state.successorFileId()), true, 0);
            }
        }
        for (final CheckpointState checkpoint : replay.checkpoints.values())
        {
            at = encode(out, at, JournalRecord.checkpointAdded(checkpoint.name(), checkpoint.epoch(),
                checkpoint.createdMillis(), checkpoint.disks()), true, 0);
        }
        // The newest joint transactions stay answerable: a member that crashed before its commit asks for them.
        final List<String> joints = new ArrayList<>(replay.committedJoints);
        for (final String id : joints.subList(Math.max(0, joints.size() - KEPT_JOINTS), joints.size()))
        {
            at = encode(out, at, new JournalRecord(Type.JOINT_CUT, id, 0, 0, 0, 0, ""), true, 0);
        }
        at = encode(out, at, JournalRecord.marker(Type.TXN_COMMIT, 0), true, 0);
        for (final Map.Entry<String, String> job : replay.jobs.entrySet())
        {
            at = encode(out, at, JournalRecord.jobOutcome(job.getKey(), job.getValue()), false, 0);
        }
        for (final String change : replay.outOfBandChanges)
        {
            at = encode(out, at, JournalRecord.outOfBandChange(change), false, 0);
        }
        if (replay.cleanClose)
        {
            if (replay.imageFingerprint != null)
            {
                at = encode(out, at, JournalRecord.imageFingerprint(replay.imageFingerprint), false, 0);
            }
            at = encode(out, at, JournalRecord.marker(Type.CLEAN_CLOSE, 0), false, 0);
        }
        return at;
    }

    /**
     * @return the journal of another member of {@code joint}'s transaction that committed it, or {@code null}. Each
     *         member commits only after every member prepared (its records are appended, and forced in durable
     *         mode), so one commit anywhere means the transaction committed.
     */
    private static Path peerThatCommitted(final Path file, final JournalRecord joint)
    {
        for (final String member : joint.detail().split("\n"))
        {
            final Path peer = Path.of(member);
            if (member.isEmpty() || peer.equals(file.toAbsolutePath()) || !Files.exists(peer))
            {
                continue;
            }
            try
            {
                if (inspect(peer, false).committedJoints.contains(joint.subject()))
                {
                    return peer;
                }
            }
            catch (final RuntimeException ex)
            {
                // An unreadable peer says nothing; another member may still answer.
            }
        }
        return null;
    }

    /**
     * Replays journal bytes without opening the journal; for inspection tools and tests.
     *
     * @param file the file name used in messages.
     * @param content the file's bytes.
     * @return what the bytes say.
     */
    public static Replay replayBytes(final Path file, final byte[] content)
    {
        return replay(file, Bytes.wrapForRead(content), content.length, true);
    }

    /** Replays records in place from offset 0 of {@code in} up to {@code limit}, without copying them. */
    private static Replay replay(final Path file, final Bytes<?> in, final long limit, final boolean consultPeers)
    {
        final Set<String> committedJoints = new LinkedHashSet<>();
        final Map<String, BitmapState> bitmaps = new LinkedHashMap<>();
        final Map<String, CheckpointState> checkpoints = new LinkedHashMap<>();
        final Map<String, String> jobs = new LinkedHashMap<>();
        final List<String> messages = new ArrayList<>();
        final List<JournalRecord> pending = new ArrayList<>();
        final Set<String> inconsistentByTail = new LinkedHashSet<>();
        final List<JournalRecord> standaloneSinceGroup = new ArrayList<>();
        boolean cleanClose = false;
        String fingerprint = null;
        final List<String> outOfBand = new ArrayList<>();
        int opens = 0;
        long lastCut = 0;
        long position = 0;
        long groupStart = -1;
        while (position < limit)
        {
            final int typeByte = in.readUnsignedByte(position);
            if (typeByte == 0)
            {
                break;
            }
            final JournalRecord decoded;
            final long next;
            try
            {
                in.readPosition(position + 1);
                final long bodyLength = in.readStopBit();
                final long bodyStart = in.readPosition();
                if (bodyLength < 0 || bodyStart + bodyLength + 4 > limit)
                {
                    throw new IllegalStateException("record length " + bodyLength + " runs past the end");
                }
                final int computed = crc32c(in, position, bodyStart + bodyLength);
                in.readPosition(bodyStart + bodyLength);
                final int stored = in.readInt();
                if (stored != computed)
                {
                    throw new IllegalStateException("CRC32C mismatch");
                }
                final Type type = Type.ofCode(typeByte & ~GROUPED);
                if (type == null)
                {
                    throw new IllegalStateException("unknown record type " + (typeByte & ~GROUPED));
                }
                in.readPosition(bodyStart);
                decoded = decode(type, in, lastCut);
                if (in.readPosition() != bodyStart + bodyLength)
                {
                    throw new IllegalStateException("body length does not match its fields");
                }
                next = bodyStart + bodyLength + 4;
            }
            catch (final RuntimeException ex)
            {
                messages.add("journal " + file + ": record at offset " + position + " is torn or garbled ("
                    + ex.getMessage() + "); truncating the journal there, " + (limit - position)
                    + " bytes dropped");
                break;
            }
            final boolean grouped = (typeByte & GROUPED) != 0;
            switch (decoded.type())
            {
                case TXN_COMMIT ->
                {
                    for (final JournalRecord r : pending)
                    {
                        if (r.type() == Type.JOINT_CUT)
                        {
                            committedJoints.add(r.subject());
                        }
                        apply(bitmaps, checkpoints, r);
                    }
                    pending.clear();
                    standaloneSinceGroup.clear();
                    groupStart = -1;
                    lastCut = decoded.cut();
                }
                case TXN_ABORT ->
                {
                    pending.clear();
                    standaloneSinceGroup.clear();
                    groupStart = -1;
                }
                case OPENED ->
                {
                    opens++;
                    cleanClose = false;
                    fingerprint = null;
                    lastCut = 0;
                }
                case IMAGE_FINGERPRINT -> fingerprint = decoded.detail();
                case OUT_OF_BAND_CHANGE -> outOfBand.add(decoded.detail());
                case CLEAN_CLOSE -> cleanClose = true;
                case JOB_STARTED, JOB_OUTCOME ->
                {
                    jobs.put(decoded.subject(),
                        decoded.type() == Type.JOB_STARTED ? "started: " + decoded.detail() : decoded.detail());
                    if (groupStart >= 0)
                    {
                        standaloneSinceGroup.add(decoded);
                    }
                }
                default ->
                {
                    if (grouped)
                    {
                        if (groupStart < 0)
                        {
                            groupStart = position;
                        }
                        pending.add(decoded);
                    }
                    else
                    {
                        apply(bitmaps, checkpoints, decoded);
                    }
                }
            }
            position = next;
        }
        long validLength = position;
        boolean tailCommittedByPeer = false;
        final JournalRecord joint = pending.stream().filter(r -> r.type() == Type.JOINT_CUT).findFirst().orElse(null);
        final Path peer = joint != null && consultPeers ? peerThatCommitted(file, joint) : null;
        if (peer != null)
        {
            // Another disk of the same transaction committed it, so every member had prepared: this one commits too.
            for (final JournalRecord r : pending)
            {
                apply(bitmaps, checkpoints, r);
            }
            committedJoints.add(joint.subject());
            messages.add("journal " + file + ": a transaction over several disks (" + joint.subject()
                + ") had no commit record here but " + peer + " committed it; committed here too");
            pending.clear();
            standaloneSinceGroup.clear();
            tailCommittedByPeer = true;
        }
        if (!pending.isEmpty())
        {
            for (final JournalRecord r : pending)
            {
                if (r.type() == Type.BITS_CHANGING && bitmaps.containsKey(r.subject()))
                {
                    inconsistentByTail.add(r.subject());
                }
            }
            messages.add("journal " + file + ": a transaction of " + pending.size()
                + " record(s) at offset " + groupStart + " never committed; ignored"
                + (inconsistentByTail.isEmpty() ? "" : ", its bitmaps " + inconsistentByTail
                + " may have changed bits and are now inconsistent"));
            validLength = groupStart;
        }
        else
        {
            standaloneSinceGroup.clear();
        }
        for (final String name : inconsistentByTail)
        {
            final BitmapState s = bitmaps.get(name);
            bitmaps.put(name, new BitmapState(s.name(), s.fileId(), s.granularity(),
                s.flags() | JournalRecord.FLAG_INCONSISTENT, s.successorFileId()));
        }
        final Replay result = new Replay(bitmaps, jobs, messages, cleanClose, opens, validLength, inconsistentByTail);
        result.standaloneInDroppedTail.addAll(standaloneSinceGroup);
        result.committedJoints.addAll(committedJoints);
        result.tailCommittedByPeer = tailCommittedByPeer;
        result.imageFingerprint = cleanClose ? fingerprint : null;
        result.outOfBandChanges.addAll(outOfBand);
        result.checkpoints.putAll(checkpoints);
        return result;
    }

    private static JournalRecord decode(final Type type, final Bytes<?> in, final long lastCut)
    {
        return switch (type)
        {
            case BITMAP_ADDED ->
            {
                final String name = readName(in);
                final long fileId = in.readStopBit();
                final int shift = in.readUnsignedByte();
                if (shift > 31)
                {
                    throw new IllegalStateException("granularity 2^" + shift + " out of range");
                }
                yield JournalRecord.bitmapAdded(name, fileId, 1L << shift, in.readUnsignedByte());
            }
            case BITMAP_REMOVED -> JournalRecord.bitmapRemoved(readName(in));
            case BITS_CHANGING -> JournalRecord.bitsChanging(readName(in));
            case BITMAP_FLAGS -> JournalRecord.bitmapFlags(readName(in), in.readUnsignedByte());
            case SUCCESSOR_RESOLVED -> JournalRecord.successorResolved(readName(in), in.readUnsignedByte() == 1);
            case SUCCESSOR_CREATED -> JournalRecord.successorCreated(readName(in), in.readStopBit());
            case TXN_COMMIT -> JournalRecord.marker(Type.TXN_COMMIT, lastCut + in.readStopBit());
            case OPENED -> JournalRecord.marker(Type.OPENED, in.readStopBit());
            case JOB_STARTED -> JournalRecord.jobStarted(readName(in), readName(in));
            case JOB_OUTCOME -> JournalRecord.jobOutcome(readName(in), readName(in));
            case IMAGE_FINGERPRINT -> JournalRecord.imageFingerprint(readName(in));
            case OUT_OF_BAND_CHANGE -> JournalRecord.outOfBandChange(readName(in));
            case JOINT_CUT -> new JournalRecord(Type.JOINT_CUT, readName(in), 0, 0, 0, 0, readName(in));
            case CHECKPOINT_ADDED -> JournalRecord.checkpointAdded(readName(in), in.readStopBit(), in.readStopBit(),
                readName(in));
            case CHECKPOINT_REMOVED -> JournalRecord.checkpointRemoved(readName(in));
            case TXN_ABORT, CLEAN_CLOSE -> JournalRecord.marker(type, 0);
        };
    }

    private static String readName(final Bytes<?> in)
    {
        final String value = in.readUtf8();
        if (value == null)
        {
            throw new IllegalStateException("missing string");
        }
        return value;
    }

    private static void apply(final Map<String, BitmapState> bitmaps, final Map<String, CheckpointState> checkpoints,
        final JournalRecord r)
    {
        if (r.type() == Type.CHECKPOINT_ADDED)
        {
            checkpoints.put(r.subject(), new CheckpointState(r.subject(), r.fileId(), r.cut(), r.detail()));
            return;
        }
        if (r.type() == Type.CHECKPOINT_REMOVED)
        {
            checkpoints.remove(r.subject());
            return;
        }
        final BitmapState s = bitmaps.get(r.subject());
        switch (r.type())
        {
            case BITMAP_ADDED -> bitmaps.put(r.subject(),
                new BitmapState(r.subject(), r.fileId(), r.granularity(), r.flags(), 0));
            case BITMAP_REMOVED -> bitmaps.remove(r.subject());
            case BITMAP_FLAGS ->
            {
                if (s != null)
                {
                    bitmaps.put(s.name(), new BitmapState(s.name(), s.fileId(), s.granularity(), r.flags(),
                        s.successorFileId()));
                }
            }
            case SUCCESSOR_CREATED ->
            {
                if (s != null)
                {
                    bitmaps.put(s.name(), new BitmapState(s.name(), s.fileId(), s.granularity(), s.flags(),
                        r.fileId()));
                }
            }
            case SUCCESSOR_RESOLVED ->
            {
                if (s != null)
                {
                    final long fileId = r.flags() == 1 && s.successorFileId() != 0 ? s.successorFileId() : s.fileId();
                    bitmaps.put(s.name(), new BitmapState(s.name(), fileId, s.granularity(), s.flags(), 0));
                }
            }
            default ->
            {
                // BITS_CHANGING only matters in an uncommitted tail.
            }
        }
    }

    /**
     * What the journal says about one persistent bitmap; immutable.
     *
     * @param name the bitmap's name.
     * @param fileId the file holding its bits.
     * @param granularity bytes per chunk.
     * @param flags {@link JournalRecord#FLAG_RECORDING}, {@link JournalRecord#FLAG_INCONSISTENT}.
     * @param successorFileId the file of its in-flight successor, 0 when it has none.
     */
    public record BitmapState(String name, long fileId, long granularity, int flags, long successorFileId)
    {
    }

    /**
     * What the journal says about one checkpoint; immutable.
     *
     * @param name the checkpoint's name.
     * @param epoch its epoch.
     * @param createdMillis its creation time.
     * @param disks the disks of the transaction that made it, one per line.
     */
    public record CheckpointState(String name, long epoch, long createdMillis, String disks)
    {
    }

    /** The result of replaying a journal; immutable. */
    public static final class Replay
    {
        private final Map<String, BitmapState> bitmaps;
        private final Map<String, String> jobs;
        private final List<String> messages;
        private final boolean cleanClose;
        private final int opens;
        private final long validLength;
        private final Set<String> inconsistentByTail;
        private final List<JournalRecord> standaloneInDroppedTail = new ArrayList<>();
        private final List<String> outOfBandChanges = new ArrayList<>();
        // Ids of the joint transactions this journal committed, oldest first; other members' replays ask for them.
        private final Set<String> committedJoints = new LinkedHashSet<>();
        private final Map<String, CheckpointState> checkpoints = new LinkedHashMap<>();
        private boolean tailCommittedByPeer;
        private String imageFingerprint;

        Replay(final Map<String, BitmapState> bitmaps, final Map<String, String> jobs, final List<String> messages,
            final boolean cleanClose, final int opens, final long validLength, final Set<String> inconsistentByTail)
        {
            this.bitmaps = Collections.unmodifiableMap(new LinkedHashMap<>(bitmaps));
            this.jobs = Collections.unmodifiableMap(new LinkedHashMap<>(jobs));
            this.messages = List.copyOf(messages);
            this.cleanClose = cleanClose;
            this.opens = opens;
            this.validLength = validLength;
            this.inconsistentByTail = Set.copyOf(inconsistentByTail);
        }

        /** @return the persistent bitmaps the committed records describe, in the order they were added. */
        public Map<String, BitmapState> bitmaps()
        {
            return bitmaps;
        }

        /** @return the checkpoints the committed records describe, in the order they were added. */
        public Map<String, CheckpointState> checkpoints()
        {
            return Collections.unmodifiableMap(checkpoints);
        }

        /** @return each job id's last known state ({@code started: ...} or its outcome). */
        public Map<String, String> jobs()
        {
            return jobs;
        }

        /** @return what replay repaired or ignored, one sentence each. */
        public List<String> messages()
        {
            return messages;
        }

        /** @return whether the last session ended with a clean close (false for a new journal). */
        public boolean cleanClose()
        {
            return cleanClose;
        }

        /** @return the image's fingerprint recorded at the last clean close, {@code null} if the last session did not
         *          end cleanly or recorded none. */
        public String imageFingerprint()
        {
            return imageFingerprint;
        }

        /** @return every out-of-band change found at an open, oldest first, one sentence each. */
        public List<String> outOfBandChanges()
        {
            return Collections.unmodifiableList(outOfBandChanges);
        }

        /** @return how many times the disk was opened before. */
        public int opens()
        {
            return opens;
        }

        /** @return bytes of committed, intact records. */
        public long validLength()
        {
            return validLength;
        }

        /** @return ids of the transactions over several disks this journal committed (the newest, after compaction). */
        public Set<String> committedJoints()
        {
            return Collections.unmodifiableSet(committedJoints);
        }

        /** @return bitmaps whose bits an uncommitted transaction may have changed. */
        public Set<String> inconsistentByTail()
        {
            return inconsistentByTail;
        }
    }

    /**
     * Reads a journal file without opening it for append, in place from a read-only mapping; for tools.
     *
     * @param file the journal file.
     * @return its replay.
     */
    public static Replay inspect(final Path file)
    {
        return inspect(file, true);
    }

    /** @param consultPeers whether an uncommitted joint transaction at the tail asks the other members' journals. */
    private static Replay inspect(final Path file, final boolean consultPeers)
    {
        try
        {
            // The length first: the owner may append meanwhile, and a read past the mapped file's end faults.
            final long length = Files.size(file);
            if (length == 0)
            {
                return replayBytes(file, new byte[0]);
            }
            final MappedBytes mapped = MappedBytes.readOnly(file.toFile());
            try
            {
                return replayMapped(file, mapped, length, consultPeers);
            }
            finally
            {
                mapped.close();
            }
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }
}
