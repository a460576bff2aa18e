package dev.tidemark.engine.torture;

import dev.tidemark.bitmap.DirtyBitmap;
import dev.tidemark.bitmap.MappedBitmap;
import dev.tidemark.bitmap.SimulatedBitmapAccess;
import dev.tidemark.engine.registry.BitmapFiles;
import dev.tidemark.engine.registry.MappedBitmapFiles;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.ForwardingBlockStore;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.stream.Stream;

/**
 * Models an OS crash by keeping only what was forced to storage; safe for the engine's threads (every record and
 * snapshot is taken under the simulator's monitor).
 *
 * <p>It keeps, for the image and for every file in the bitmap directory (bitmap files and the journal), a "durable"
 * copy that changes only when that range is forced: {@link BlockStore#flush} for the image, the bitmap's page sink
 * for bitmap files ({@link SimulatedBitmapAccess}), the journal's sync observer for the journal, and the creation of
 * a bitmap file (which forces it). A crash point ({@link #snapshot}) records the durable and the current bytes of
 * every page that differs; a crash state keeps each such 4 KiB page's current or durable version at random.
 */
final class PowerLossSimulator
{
    static final int PAGE = 4096;

    private final Path image;
    private final Path bitmapDirectory;
    private final long diskSize;
    private final byte[] baseline;
    private final byte[] durableImage;
    private final BitSet writtenPages = new BitSet();
    private final BitSet unflushedPages = new BitSet();
    /** Keyed by file name: the engine and the directory listing spell the same file's path differently. */
    private final Map<Path, byte[]> durableFiles = new HashMap<>();
    private final UUID bootId = UUID.randomUUID();
    private final int maxSnapshots;
    private final SplittableRandom random;
    private final List<Snapshot> snapshots = new ArrayList<>();
    private volatile double snapshotChance;
    long forces;
    long recordedWrites;

    /** The files at one crash point: durable and current bytes of the image pages that differ, whole other files. */
    record Snapshot(Map<Integer, byte[]> durablePages, Map<Integer, byte[]> currentPages, Map<Path, byte[]> durable,
        Map<Path, byte[]> current, String where)
    {
    }

    PowerLossSimulator(final Path image, final Path bitmapDirectory, final long seed, final int maxSnapshots)
        throws IOException
    {
        this.image = image;
        this.bitmapDirectory = bitmapDirectory;
        this.baseline = Files.readAllBytes(image);
        this.durableImage = baseline.clone();
        this.diskSize = baseline.length;
        this.maxSnapshots = maxSnapshots;
        this.random = new SplittableRandom(seed);
        try (Stream<Path> files = Files.list(bitmapDirectory))
        {
            for (final Path file : files.toList())
            {
                durableFiles.put(file.getFileName(), Files.readAllBytes(file));
            }
        }
    }

    /** @param chance probability that a data write becomes a crash point (before it, and again after it). */
    void snapshotChance(final double chance)
    {
        snapshotChance = chance;
    }

    UUID bootId()
    {
        return bootId;
    }

    byte[] baseline()
    {
        return baseline;
    }

    synchronized List<Snapshot> snapshots()
    {
        return List.copyOf(snapshots);
    }

    synchronized void forcedFile(final Path file, final long offset, final long length)
    {
        forces++;
        try
        {
            final byte[] current = Files.readAllBytes(file);
            // A new array every time: snapshots taken earlier hold the old one.
            final byte[] old = durableFiles.getOrDefault(file.getFileName(), new byte[0]);
            final byte[] durable = java.util.Arrays.copyOf(old, Math.max(old.length, current.length));
            final int end = (int) Math.min(current.length, offset + length);
            System.arraycopy(current, (int) offset, durable, (int) offset, Math.max(0, end - (int) offset));
            durableFiles.put(file.getFileName(), durable);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    synchronized void forcedWholeFile(final Path file)
    {
        forcedFile(file, 0, Long.MAX_VALUE / 2);
    }

    /** Takes a crash point now, unless enough were taken. */
    synchronized void snapshot(final String where)
    {
        if (snapshots.size() >= maxSnapshots)
        {
            return;
        }
        try
        {
            final Map<Integer, byte[]> durablePages = new HashMap<>();
            final Map<Integer, byte[]> currentPages = new HashMap<>();
            try (RawFileStore store = RawFileStore.open(image))
            {
                for (int page = writtenPages.nextSetBit(0); page >= 0; page = writtenPages.nextSetBit(page + 1))
                {
                    final ByteBuffer buffer = ByteBuffer.allocate(PAGE);
                    store.read((long) page * PAGE, buffer);
                    currentPages.put(page, buffer.array());
                    durablePages.put(page, java.util.Arrays.copyOfRange(durableImage, page * PAGE, page * PAGE + PAGE));
                }
            }
            final Map<Path, byte[]> current = new HashMap<>();
            try (Stream<Path> files = Files.list(bitmapDirectory))
            {
                for (final Path file : files.toList())
                {
                    current.put(file.getFileName(), Files.readAllBytes(file));
                }
            }
            snapshots.add(new Snapshot(durablePages, currentPages, Map.copyOf(durableFiles), current, where));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    private void maybeSnapshot(final String where)
    {
        if (snapshotChance > 0 && random.nextDouble() < snapshotChance)
        {
            snapshot(where);
        }
    }

    /** The image as the engine sees it: every write recorded, flush forces the pages written since the last one. */
    BlockStore store(final RawFileStore delegate)
    {
        return new ForwardingBlockStore(delegate)
        {
            @Override
            public void write(final long offset, final ByteBuffer src) throws IOException
            {
                final long length = src.remaining();
                maybeSnapshot("before a write at " + offset);
                synchronized (PowerLossSimulator.this)
                {
                    delegate.write(offset, src);
                    touched(offset, length);
                    recordedWrites++;
                }
                maybeSnapshot("after a write at " + offset);
            }

            @Override
            public void flush() throws IOException
            {
                synchronized (PowerLossSimulator.this)
                {
                    delegate.flush();
                    try (RawFileStore store = RawFileStore.open(image))
                    {
                        for (int page = unflushedPages.nextSetBit(0); page >= 0;
                            page = unflushedPages.nextSetBit(page + 1))
                        {
                            final ByteBuffer buffer = ByteBuffer.wrap(durableImage, page * PAGE, PAGE);
                            store.read((long) page * PAGE, buffer);
                        }
                    }
                    unflushedPages.clear();
                    forces++;
                }
            }

            @Override
            public void discard(final long offset, final long length) throws IOException
            {
                synchronized (PowerLossSimulator.this)
                {
                    delegate.discard(offset, length);
                    touched(offset, length);
                }
            }

            @Override
            public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
            {
                synchronized (PowerLossSimulator.this)
                {
                    delegate.writeZeroes(offset, length, mayUnmap);
                    touched(offset, length);
                }
            }
        };
    }

    private void touched(final long offset, final long length)
    {
        final int first = (int) (offset / PAGE);
        final int last = (int) ((offset + length - 1) / PAGE);
        writtenPages.set(first, last + 1);
        unflushedPages.set(first, last + 1);
    }

    /** Bitmap files whose forces are recorded; they record this run's boot id. */
    BitmapFiles bitmapFiles()
    {
        return bitmapFiles(bootId, this::forcedFile);
    }

    /**
     * @param boot the boot id the trust rule sees.
     * @param listener hears forces.
     * @return bitmap files with those seams.
     */
    static BitmapFiles bitmapFiles(final UUID boot, final SimulatedBitmapAccess.ForceListener listener)
    {
        return new BitmapFiles()
        {
            @Override
            public DirtyBitmap create(final Path file, final String name, final long diskSize, final long granularity)
                throws IOException
            {
                final MappedBitmap bitmap = SimulatedBitmapAccess.create(file, name, diskSize, granularity, boot,
                    listener);
                // Creation forces the whole new file (header and zeroed data).
                listener.forced(file, 0, Long.MAX_VALUE / 2);
                return bitmap;
            }

            @Override
            public DirtyBitmap open(final Path file) throws IOException
            {
                return SimulatedBitmapAccess.open(file, boot, listener);
            }

            @Override
            public void durable(final DirtyBitmap bitmap, final boolean on)
            {
                // The simulated bitmaps are MappedBitmaps with seams: the production rule applies as is.
                MappedBitmapFiles.INSTANCE.durable(bitmap, on);
            }
        };
    }

    /**
     * Writes one crash state of {@code snapshot}: the bitmap directory's files into {@code directory}, each page not
     * forced kept or dropped at random; returns the image pages as they are in this state.
     *
     * @return page number to bytes, for every page written since the baseline.
     */
    static Map<Integer, byte[]> materialize(final Snapshot snapshot, final Path directory, final SplittableRandom rnd,
        final boolean keepEverything) throws IOException
    {
        Files.createDirectories(directory);
        for (final Map.Entry<Path, byte[]> entry : snapshot.current().entrySet())
        {
            final byte[] current = entry.getValue();
            final byte[] durable = snapshot.durable().getOrDefault(entry.getKey(), new byte[0]);
            final byte[] state = new byte[current.length];
            for (int at = 0; at < current.length; at += PAGE)
            {
                final int end = Math.min(current.length, at + PAGE);
                final boolean keep = keepEverything || rnd.nextBoolean();
                for (int i = at; i < end; i++)
                {
                    state[i] = keep ? current[i] : i < durable.length ? durable[i] : 0;
                }
            }
            Files.write(directory.resolve(entry.getKey()), state);
        }
        final Map<Integer, byte[]> pages = new HashMap<>();
        for (final Map.Entry<Integer, byte[]> entry : snapshot.currentPages().entrySet())
        {
            final boolean keep = keepEverything || rnd.nextBoolean();
            pages.put(entry.getKey(), keep ? entry.getValue() : snapshot.durablePages().get(entry.getKey()));
        }
        return pages;
    }

    long diskSize()
    {
        return diskSize;
    }
}
