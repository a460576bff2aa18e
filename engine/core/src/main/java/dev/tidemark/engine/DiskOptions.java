package dev.tidemark.engine;

import com.lmax.disruptor.WaitStrategy;
import dev.tidemark.engine.registry.BitmapFiles;
import dev.tidemark.engine.registry.MappedBitmapFiles;
import dev.tidemark.engine.ring.BackoffBlockingWaitStrategy;
import dev.tidemark.io.BlockStore;
import java.nio.file.Path;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * How to open a {@link TrackedDisk}; immutable, every {@code with*} returns a copy, safe to share between threads.
 *
 * <p>Defaults: name {@code disk0}, lazy mode, 4096 ring slots, alignment 1 byte, the store closed with the disk,
 * a {@link BackoffBlockingWaitStrategy} (an idle disk costs no CPU, a handler waiting for a busy upstream handler
 * parks instead of spinning; measured in docs/benchmarks.md, see docs/architecture.md), the
 * {@link Pipeline#FUSED} pipeline (one ring thread; measured in docs/benchmarks.md).
 */
public final class DiskOptions
{
    private final BlockStore store;
    private final Path bitmapDirectory;
    private final String name;
    private final boolean durable;
    private final int ringSize;
    private final int alignment;
    private final boolean closeStore;
    private final BitmapFiles bitmapFiles;
    private final Supplier<WaitStrategy> waitStrategy;
    private final Pipeline pipeline;

    private DiskOptions(final BlockStore store, final Path bitmapDirectory, final String name, final boolean durable,
        final int ringSize, final int alignment, final boolean closeStore, final BitmapFiles bitmapFiles,
        final Supplier<WaitStrategy> waitStrategy, final Pipeline pipeline)
    {
        this.store = store;
        this.bitmapDirectory = bitmapDirectory;
        this.name = name;
        this.durable = durable;
        this.ringSize = ringSize;
        this.alignment = alignment;
        this.closeStore = closeStore;
        this.bitmapFiles = bitmapFiles;
        this.waitStrategy = waitStrategy;
        this.pipeline = pipeline;
    }

    /**
     * @param store the disk's data.
     * @param bitmapDirectory where persistent bitmaps and the journal live (created if missing).
     * @param bitmapFiles how bitmaps are made.
     * @return options with the defaults.
     */
    public static DiskOptions of(final BlockStore store, final Path bitmapDirectory, final BitmapFiles bitmapFiles)
    {
        return new DiskOptions(Objects.requireNonNull(store, "store"),
            Objects.requireNonNull(bitmapDirectory, "bitmapDirectory"), "disk0", false, 4096, 1, true,
            Objects.requireNonNull(bitmapFiles, "bitmapFiles"),
            BackoffBlockingWaitStrategy::new, Pipeline.FUSED);
    }

    /**
     * @param store the disk's data.
     * @param bitmapDirectory where persistent bitmaps and the journal live (created if missing).
     * @return options with the defaults and {@link MappedBitmapFiles}.
     */
    public static DiskOptions of(final BlockStore store, final Path bitmapDirectory)
    {
        return of(store, bitmapDirectory, MappedBitmapFiles.INSTANCE);
    }

    /**
     * @param image a raw image file.
     * @return the directory beside it that holds its bitmaps and journal: {@code <image>.bitmaps}.
     */
    public static Path bitmapDirectoryFor(final Path image)
    {
        return image.resolveSibling(image.getFileName() + ".bitmaps");
    }

    /**
     * @param value the disk's name (thread names, messages, the QMP node name).
     * @return a copy.
     */
    public DiskOptions withName(final String value)
    {
        return new DiskOptions(store, bitmapDirectory, Objects.requireNonNull(value, "name"), durable, ringSize,
            alignment, closeStore, bitmapFiles, waitStrategy, pipeline);
    }

    /**
     * @param value whether durable mode starts on (I5).
     * @return a copy.
     */
    public DiskOptions withDurable(final boolean value)
    {
        return new DiskOptions(store, bitmapDirectory, name, value, ringSize, alignment, closeStore, bitmapFiles,
            waitStrategy, pipeline);
    }

    /**
     * @param value ring slots, a power of two.
     * @return a copy.
     */
    public DiskOptions withRingSize(final int value)
    {
        if (value < 2 || Integer.bitCount(value) != 1)
        {
            throw new IllegalArgumentException("ring size must be a power of two of at least 2: " + value);
        }
        return new DiskOptions(store, bitmapDirectory, name, durable, value, alignment, closeStore, bitmapFiles,
            waitStrategy, pipeline);
    }

    /**
     * @param value the alignment every request's offset and length must have, a power of two (1 = any).
     * @return a copy.
     */
    public DiskOptions withAlignment(final int value)
    {
        if (value < 1 || Integer.bitCount(value) != 1)
        {
            throw new IllegalArgumentException("alignment must be a power of two: " + value);
        }
        return new DiskOptions(store, bitmapDirectory, name, durable, ringSize, value, closeStore, bitmapFiles,
            waitStrategy, pipeline);
    }

    /**
     * @param value whether closing the disk closes the store.
     * @return a copy.
     */
    public DiskOptions withCloseStore(final boolean value)
    {
        return new DiskOptions(store, bitmapDirectory, name, durable, ringSize, alignment, value, bitmapFiles,
            waitStrategy, pipeline);
    }

    /**
     * @param value makes the ring's wait strategy (one per disk).
     * @return a copy.
     */
    public DiskOptions withWaitStrategy(final Supplier<WaitStrategy> value)
    {
        return new DiskOptions(store, bitmapDirectory, name, durable, ringSize, alignment, closeStore, bitmapFiles,
            Objects.requireNonNull(value, "waitStrategy"), pipeline);
    }

    /**
     * @param value how the ring spreads mark, persist, copy-before-write and write over threads.
     * @return a copy.
     */
    public DiskOptions withPipeline(final Pipeline value)
    {
        return new DiskOptions(store, bitmapDirectory, name, durable, ringSize, alignment, closeStore, bitmapFiles,
            waitStrategy, Objects.requireNonNull(value, "pipeline"));
    }

    BlockStore store()
    {
        return store;
    }

    Path bitmapDirectory()
    {
        return bitmapDirectory;
    }

    String name()
    {
        return name;
    }

    boolean durable()
    {
        return durable;
    }

    int ringSize()
    {
        return ringSize;
    }

    int alignment()
    {
        return alignment;
    }

    boolean closeStore()
    {
        return closeStore;
    }

    BitmapFiles bitmapFiles()
    {
        return bitmapFiles;
    }

    WaitStrategy waitStrategy()
    {
        return waitStrategy.get();
    }

    Pipeline pipeline()
    {
        return pipeline;
    }
}
