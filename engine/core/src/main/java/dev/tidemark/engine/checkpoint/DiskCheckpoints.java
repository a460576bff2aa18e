package dev.tidemark.engine.checkpoint;

import dev.tidemark.bitmap.BitmapFileException;
import dev.tidemark.bitmap.EpochMap;
import dev.tidemark.bitmap.ExtentConsumer;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.MarkHook;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.io.BackgroundPriority;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The checkpoints of one disk and its epoch map: queries ({@link #list}, {@link #changedSince}, {@link #get}) are
 * safe from any thread; the catalogue and the current epoch change only on the disk's mark thread, inside the
 * transactions of {@link CheckpointActions}; {@link #mark} and {@link #force} are the mark step's hook.
 *
 * <p>Disks without checkpoints pay nothing: the epoch map ({@value #MAP_FILE} in the bitmap directory) is created
 * by the first checkpoint-add, and only then is this object installed as the ring's mark hook. From then on the
 * map stays (removing every checkpoint leaves it, so that the next add needs no file work at its cut); a disk whose
 * directory has a map opens it and installs the hook before its first write.
 *
 * <p>The catalogue is replayed from the journal ({@code CHECKPOINT_ADDED}/{@code CHECKPOINT_REMOVED} records in the
 * transaction's group). If the map is missing or unreadable while the journal names checkpoints, a new map is made
 * and every existing checkpoint is answered "everything changed" (conservative, never silently wrong); so is every
 * checkpoint of a map the trust rule (I5) refused. A compaction of the map (raising its floor, see
 * {@link EpochMap}) runs on a background thread when the current epoch passes the middle of its span.
 */
public final class DiskCheckpoints implements MarkHook, AutoCloseable
{
    /** The epoch map's file name in the bitmap directory. */
    public static final String MAP_FILE = "epochs.tmem";
    /** Longest checkpoint name in UTF-8 bytes (as for bitmaps). */
    static final int MAX_NAME_BYTES = 1023;

    private final String diskName;
    private final Path directory;
    private final long diskSize;
    private final Map<String, Checkpoint> catalogue = new LinkedHashMap<>();
    private final List<String> openMessages = new ArrayList<>();
    private volatile EpochMap map;
    /** The epoch writes are stamped with now; mark thread. */
    private long epoch;
    private long granularity = EpochMap.DEFAULT_GRANULARITY;
    private long period = EpochMap.MAX_PERIOD;
    private Thread compactor;
    private volatile Throwable compactionFailure;

    private DiskCheckpoints(final String diskName, final Path directory, final long diskSize)
    {
        this.diskName = diskName;
        this.directory = directory;
        this.diskSize = diskSize;
    }

    /**
     * Replays the catalogue and opens the epoch map if the disk has one; called by {@code TrackedDisk.open} before its
     * ring takes writes.
     *
     * @param diskName the disk's name, for messages.
     * @param directory the disk's bitmap directory.
     * @param diskSize bytes.
     * @param replay the journal's replay.
     * @param durable whether the disk starts in durable mode.
     * @return the disk's checkpoints.
     * @throws IOException if an existing map cannot be replaced.
     */
    public static DiskCheckpoints open(final String diskName, final Path directory, final long diskSize,
        final Journal.Replay replay, final boolean durable) throws IOException
    {
        final DiskCheckpoints checkpoints = new DiskCheckpoints(diskName, directory, diskSize);
        long newest = 0;
        for (final Journal.CheckpointState state : replay.checkpoints().values())
        {
            checkpoints.catalogue.put(state.name(), new Checkpoint(state.name(), state.epoch(), state.createdMillis(),
                state.disks().isEmpty() ? List.of() : Arrays.asList(state.disks().split("\n"))));
            newest = Math.max(newest, state.epoch());
        }
        final Path file = directory.resolve(MAP_FILE);
        EpochMap opened = null;
        if (Files.exists(file))
        {
            try
            {
                opened = EpochMap.open(file);
                if (opened.diskSize() != diskSize)
                {
                    checkpoints.openMessages.add("epoch map " + file + " tracks " + opened.diskSize()
                        + " bytes, the disk has " + diskSize + "; replaced, existing checkpoints report everything");
                    opened.close();
                    opened = null;
                    Files.delete(file);
                }
                else if (!opened.openState().isTrusted())
                {
                    checkpoints.openMessages.add("epoch map " + file + " was left in use by an earlier boot in lazy"
                        + " mode; checkpoints up to epoch " + opened.untrustedThrough() + " report everything");
                }
            }
            catch (final BitmapFileException ex)
            {
                checkpoints.openMessages.add("epoch map " + file + " is unusable (" + ex.getMessage()
                    + "); replaced, existing checkpoints report everything");
                Files.delete(file);
            }
        }
        if (opened == null && !checkpoints.catalogue.isEmpty())
        {
            if (!Files.exists(file))
            {
                checkpoints.openMessages.add("epoch map " + file + " is missing; created, checkpoints up to epoch "
                    + newest + " report everything");
            }
            opened = EpochMap.create(file, diskSize, checkpoints.granularity, checkpoints.period);
            opened.distrust(newest);
        }
        if (opened != null)
        {
            if (!opened.openState().isTrusted() || opened.currentEpoch() < newest)
            {
                // An untrusted map's header may be older than the journal (both lazy): every checkpoint the journal
                // names must report everything. A trusted header behind the journal cannot happen (durable mode
                // forces the header before the commit); if it did, the same answer is the safe one.
                opened.distrust(newest);
            }
            // The header must say what this session does: a durable flag left from an earlier durable session would
            // make a lazy session's map look trusted after a power loss.
            opened.setDurable(durable);
            checkpoints.epoch = opened.currentEpoch();
            checkpoints.granularity = opened.granularity();
            checkpoints.period = opened.period();
            checkpoints.map = opened;
            if (opened.compactionDue())
            {
                // A compaction the last session did not get to: without it the next adds could run out of epochs.
                checkpoints.startCompaction();
            }
        }
        return checkpoints;
    }

    /**
     * Answers every existing checkpoint "everything changed" from now on: the image changed while nobody tracked it.
     * Called before the ring starts.
     */
    public void distrustAll()
    {
        final EpochMap current = map;
        if (current != null && !catalogue.isEmpty())
        {
            current.distrust(current.currentEpoch());
            openMessages.add("the image changed while Tidemark was not running; checkpoints up to epoch "
                + current.currentEpoch() + " report everything");
        }
    }

    /** @return whether the disk has an epoch map (and the ring must mark it). */
    public boolean hasMap()
    {
        return map != null;
    }

    /**
     * Chooses the epoch map's granularity and period before the first checkpoint creates it.
     *
     * @param granularity bytes per chunk, a power of two in 512 B..2 GiB.
     * @param period stamps per cycle (tests use tiny ones to exercise the wrap), 3..2^32-1.
     * @throws EngineException if the map exists already with other values.
     */
    public synchronized void configure(final long granularity, final long period)
    {
        final EpochMap current = map;
        if (current != null && (current.granularity() != granularity || current.period() != period))
        {
            throw EngineException.generic("The epoch map of disk '" + diskName + "' already has granularity "
                + current.granularity() + "; remove its file to change it");
        }
        if (Long.bitCount(granularity) != 1 || granularity < 512 || granularity > (1L << 31))
        {
            throw EngineException.generic("Granularity must be power of 2 and at least 512");
        }
        this.granularity = granularity;
        this.period = period;
    }

    /** @return bytes per chunk of the map (or of the map the first checkpoint will create). */
    public synchronized long granularity()
    {
        return granularity;
    }

    /** @return stamps per cycle of the map (or of the map the first checkpoint will create). */
    public synchronized long epochPeriod()
    {
        return period;
    }

    /** @return what opening found and repaired, one sentence each. */
    public List<String> openMessages()
    {
        return List.copyOf(openMessages);
    }

    // ------------------------------------------------------------------------------------------ mark hook

    @Override
    public boolean mark(final long offset, final long length)
    {
        return map.mark(offset, length, epoch);
    }

    @Override
    public int force()
    {
        return map.force();
    }

    /**
     * Writes the epoch map's dirty pages back from the calling thread ahead of turning durable mode on
     * ({@link EpochMap#forceAhead}); nothing without a map. Any thread; the map is closed only with the disk, after
     * its ring stopped, and the disk's close waits for this (the caller holds the disk's monitor).
     */
    public void forceAhead()
    {
        final EpochMap current = map;
        if (current != null)
        {
            current.forceAhead();
        }
    }

    /** @param on durable mode of the disk, switched at a cut. */
    @Override
    public void durable(final boolean on)
    {
        final EpochMap current = map;
        if (current != null)
        {
            current.setDurable(on);
        }
    }

    // ------------------------------------------------------------------------------------------ queries

    /** @return the checkpoints, oldest first. */
    public synchronized List<Checkpoint> checkpoints()
    {
        return List.copyOf(catalogue.values());
    }

    /**
     * @param name a checkpoint's name.
     * @return the checkpoint.
     * @throws EngineException {@code Checkpoint 'NAME' not found}.
     */
    public synchronized Checkpoint get(final String name)
    {
        final Checkpoint checkpoint = catalogue.get(name);
        if (checkpoint == null)
        {
            throw notFound(name);
        }
        return checkpoint;
    }

    /** @return every checkpoint with the bytes changed since it, oldest (smallest epoch) first; one map walk. */
    public List<CheckpointInfo> list()
    {
        final List<Checkpoint> all = new ArrayList<>(checkpoints());
        all.sort(java.util.Comparator.comparingLong(Checkpoint::epoch));
        final EpochMap current = map;
        final long[] epochs = new long[all.size()];
        for (int i = 0; i < epochs.length; i++)
        {
            epochs[i] = all.get(i).epoch();
        }
        final long[] changed = current == null ? new long[epochs.length] : current.countChangedSince(epochs);
        final List<CheckpointInfo> out = new ArrayList<>();
        for (int i = 0; i < epochs.length; i++)
        {
            final Checkpoint c = all.get(i);
            out.add(new CheckpointInfo(c.name(), c.epoch(), c.createdMillis(), c.disks(),
                current == null ? diskSize : changed[i], current != null && current.isTrustedFor(c.epoch())));
        }
        return out;
    }

    /**
     * Reports the extents of {@code [offset, offset + length)} changed since checkpoint {@code name}, in ascending
     * order, in whole chunks of the map (clipped to the range).
     *
     * @param name a checkpoint's name.
     * @param offset first byte.
     * @param length bytes.
     * @param sink receives the extents; returning false stops the walk.
     * @throws EngineException if there is no such checkpoint or the range is outside the disk.
     */
    public void changedSince(final String name, final long offset, final long length, final ExtentConsumer sink)
    {
        final Checkpoint checkpoint = get(name);
        if (offset < 0 || length < 0 || offset > diskSize || length > diskSize - offset)
        {
            throw new EngineException(EngineException.Reason.INVALID_REQUEST, "Disk '" + diskName + "': range offset "
                + offset + " length " + length + " is outside the disk (" + diskSize + " bytes)");
        }
        map.changedSince(checkpoint.epoch(), offset, length, sink);
    }

    /**
     * @param name a checkpoint's name.
     * @return bytes changed since it.
     */
    public long changedBytes(final String name)
    {
        return map.countChangedSince(get(name).epoch());
    }

    /** @return the epoch map, or {@code null} before the first checkpoint (tests, tools). */
    public EpochMap epochMap()
    {
        return map;
    }

    /** @return the epoch writes are stamped with now. */
    public long currentEpoch()
    {
        final EpochMap current = map;
        return current == null ? 0 : current.currentEpoch();
    }

    /** @return why the last background compaction failed, or {@code null}. */
    public Throwable compactionFailure()
    {
        return compactionFailure;
    }

    /**
     * Waits for a running background compaction (tests).
     *
     * @throws InterruptedException if interrupted.
     */
    public void awaitCompaction() throws InterruptedException
    {
        final Thread running;
        synchronized (this)
        {
            running = compactor;
        }
        if (running != null)
        {
            running.join();
        }
    }

    // ------------------------------------------------------------------------------------------ for the actions

    /** Creates the map at the first checkpoint; mark thread. @return whether it was created now. */
    boolean ensureMap(final boolean durable) throws IOException
    {
        if (map != null)
        {
            return false;
        }
        final EpochMap created;
        synchronized (this)
        {
            created = EpochMap.create(directory.resolve(MAP_FILE), diskSize, granularity, period);
        }
        if (durable)
        {
            created.setDurable(true);
        }
        epoch = created.currentEpoch();
        map = created;
        return true;
    }

    /** Advances to the next epoch for a new checkpoint; mark thread. @return the new epoch, or -1 if exhausted. */
    long advance()
    {
        final long next = epoch + 1;
        if (!map.tryAdvance(next))
        {
            return -1;
        }
        epoch = next;
        return next;
    }

    /** Undoes {@link #advance()}; mark thread. */
    void restore(final long previous)
    {
        map.restore(previous);
        epoch = previous;
    }

    long epoch()
    {
        return epoch;
    }

    synchronized void put(final Checkpoint checkpoint)
    {
        catalogue.put(checkpoint.name(), checkpoint);
    }

    /** @return the position it had, for {@link #reinsert}. */
    synchronized int remove(final String name)
    {
        int position = 0;
        for (final String key : catalogue.keySet())
        {
            if (key.equals(name))
            {
                break;
            }
            position++;
        }
        catalogue.remove(name);
        return position;
    }

    synchronized void reinsert(final Checkpoint checkpoint, final int position)
    {
        final List<Checkpoint> order = new ArrayList<>(catalogue.values());
        order.add(Math.min(position, order.size()), checkpoint);
        catalogue.clear();
        for (final Checkpoint c : order)
        {
            catalogue.put(c.name(), c);
        }
    }

    synchronized boolean contains(final String name)
    {
        return catalogue.containsKey(name);
    }

    /** @return the oldest live checkpoint, or {@code null}. */
    synchronized Checkpoint oldest()
    {
        return catalogue.isEmpty() ? null : catalogue.values().iterator().next();
    }

    String diskName()
    {
        return diskName;
    }

    static EngineException notFound(final String name)
    {
        return EngineException.generic("Checkpoint '" + name + "' not found");
    }

    /** Starts a background compaction unless one runs; any thread. */
    synchronized void startCompaction()
    {
        if (compactor != null && compactor.isAlive())
        {
            return;
        }
        final EpochMap current = map;
        final Thread thread = new Thread(() ->
        {
            BackgroundPriority.applyToCurrentThread();
            try
            {
                final Checkpoint oldest = oldest();
                current.compact(oldest == null ? current.currentEpoch() + 1 : oldest.epoch());
            }
            catch (final RuntimeException | Error ex)
            {
                compactionFailure = ex;
            }
        }, "tidemark-" + diskName + "-epochs");
        thread.setDaemon(true);
        compactor = thread;
        thread.start();
    }

    /**
     * Closes the map cleanly after a running compaction ended; the ring must be stopped.
     */
    @Override
    public void close()
    {
        boolean interrupted = false;
        while (true)
        {
            try
            {
                awaitCompaction();
                break;
            }
            catch (final InterruptedException ex)
            {
                interrupted = true;
            }
        }
        if (interrupted)
        {
            Thread.currentThread().interrupt();
        }
        final EpochMap current = map;
        if (current != null)
        {
            current.close();
        }
    }
}
