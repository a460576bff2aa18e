package dev.tidemark.engine.job;

import dev.tidemark.bitmap.BitmapView;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Per-chunk copy state of one point-in-time copy (a backup job or a fleecing view); safe for concurrent use by the
 * copying pump, the ring thread that runs copy-before-write and readers.
 *
 * <p>Each chunk is in one of four states: not needed (nothing to preserve), needed (old data must still be
 * preserved), claimed (one thread is copying it now) and done (preserved). {@link #tryClaim} moves a needed chunk
 * to claimed with one CAS, so exactly one thread copies each chunk; {@link #markDone} publishes the copy and wakes
 * threads in {@link #awaitPreserved}; {@link #release} hands a claim back after a failed copy. {@link #abandon} ends
 * the copy for good (the job failed or the view broke): every waiter returns and nothing more is claimed.
 *
 * <p>A claimed chunk may also be marked stashed ({@link #markStashed}): its old data is held in memory on its way to
 * the target, so a guest write need not wait for it ({@link #isPreserved}, {@link #awaitPreserved}), while the copy
 * still counts it as pending until {@link #markDone}.
 *
 * <p>The needed set is fixed before the copy starts: every chunk ({@link #needAll}), the dirty chunks of a bitmap
 * that stays frozen while the copy runs ({@link #needDirty}, consulted in place: nothing is walked or copied at the
 * cut), or chunks named one by one before the copy starts ({@link #need}). So readers need no lock to consult it.
 *
 * <p>The per-chunk bits live in pages of {@value #PAGE_WORDS} words allocated on first use: a copy costs memory in
 * proportion to the chunks it claims, not to the disk (a 64 TiB disk has 2^30 chunks of 64 KiB; three dense bit
 * arrays of them took 384 MiB, allocated and zeroed at the cut). Pages are small (1,024 chunks) because an
 * incremental backup's chunks are often scattered one per page: with 8 KiB pages, ~80,000 scattered chunks of a
 * 64 TiB disk kept 300 MiB of pages live and young collections copying them paused writes for 0.1 s; with 128-byte
 * pages it is ~25 MiB. The page table is two-level (groups of {@value #GROUP_PAGES} pages, each group's table
 * allocated on first use too): one flat table of 2^20 page references per set, three sets, took 13-29 ms of the
 * ring thread's CPU to allocate and zero at the cut; the group table has 1,024 entries.
 */
public final class ChunkClaims
{
    private static final int STRIPES = 64;
    private static final int PAGE_SHIFT = 4;
    private static final int PAGE_WORDS = 1 << PAGE_SHIFT;
    private static final int GROUP_SHIFT = 10;
    private static final int GROUP_PAGES = 1 << GROUP_SHIFT;

    private final long chunkSize;
    private final int chunkShift;
    private final long diskSize;
    private final long chunkCount;
    private final SparseBits needed;
    private final SparseBits claimed;
    private final SparseBits done;
    private final SparseBits stashed;
    private final Object[] stripes = new Object[STRIPES];
    private volatile boolean abandoned;
    private volatile boolean all;
    private volatile BitmapView frozen;

    /**
     * @param diskSize bytes of the disk.
     * @param chunkSize bytes per chunk, a power of two.
     */
    public ChunkClaims(final long diskSize, final long chunkSize)
    {
        if (Long.bitCount(chunkSize) != 1 || chunkSize < 512)
        {
            throw new IllegalArgumentException("chunk size must be a power of two >= 512: " + chunkSize);
        }
        if (diskSize <= 0)
        {
            throw new IllegalArgumentException("disk size must be positive: " + diskSize);
        }
        this.chunkSize = chunkSize;
        this.chunkShift = Long.numberOfTrailingZeros(chunkSize);
        this.diskSize = diskSize;
        this.chunkCount = (diskSize + chunkSize - 1) >>> chunkShift;
        final long words = (chunkCount + 63) >>> 6;
        this.needed = new SparseBits(words);
        this.claimed = new SparseBits(words);
        this.done = new SparseBits(words);
        this.stashed = new SparseBits(words);
        for (int i = 0; i < STRIPES; i++)
        {
            stripes[i] = new Object();
        }
    }

    /** @return bytes per chunk. */
    public long chunkSize()
    {
        return chunkSize;
    }

    /** @return number of chunks. */
    public long chunkCount()
    {
        return chunkCount;
    }

    /** @return bytes of the disk. */
    public long diskSize()
    {
        return diskSize;
    }

    /** @param offset a byte. @return the chunk that holds it. */
    public long chunkOf(final long offset)
    {
        return offset >>> chunkShift;
    }

    /** @param chunk a chunk. @return its first byte. */
    public long offsetOf(final long chunk)
    {
        return chunk << chunkShift;
    }

    /** @param chunk a chunk. @return its length (the last chunk may be short). */
    public long lengthOf(final long chunk)
    {
        return Math.min(chunkSize, diskSize - (chunk << chunkShift));
    }

    /**
     * Marks every chunk touching {@code [offset, offset + length)} as needed; before the copy starts.
     *
     * @param offset first byte.
     * @param length bytes, {@code > 0}.
     */
    public void need(final long offset, final long length)
    {
        if (offset < 0 || length <= 0 || offset + length > diskSize)
        {
            throw new IllegalArgumentException("range [" + offset + ", +" + length + ") outside disk of " + diskSize);
        }
        final long first = chunkOf(offset);
        final long last = chunkOf(offset + length - 1);
        for (long c = first; c <= last; c++)
        {
            needed.set(c);
        }
    }

    /** Marks every chunk as needed, in O(1). */
    public void needAll()
    {
        all = true;
    }

    /**
     * Makes the needed chunks those that hold a dirty chunk of {@code bitmap}, consulted in place, in O(1).
     *
     * @param bitmap a bitmap of this disk's size that nobody changes until the copy ended (a job's frozen parent).
     */
    public void needDirty(final BitmapView bitmap)
    {
        if (bitmap.diskSize() != diskSize)
        {
            throw new IllegalArgumentException("bitmap of " + bitmap.diskSize() + " bytes for a disk of " + diskSize);
        }
        frozen = bitmap;
    }

    /** @return how many chunks are needed in total (claimed and done ones included). */
    public long neededCount()
    {
        if (all)
        {
            return chunkCount;
        }
        long n = 0;
        for (long c = nextNeeded(0); c >= 0; c = nextNeeded(c + 1))
        {
            n++;
        }
        return n;
    }

    /**
     * @return bytes of the needed chunks; for a frozen bitmap whose granularity is the chunk size, from its count
     *         of dirty chunks without walking them.
     */
    public long neededBytes()
    {
        if (all)
        {
            return diskSize;
        }
        final BitmapView bitmap = frozen;
        if (bitmap != null && bitmap.granularity() == chunkSize)
        {
            final long bytes = bitmap.dirtyChunkCount() * chunkSize;
            // The last chunk may be short.
            return bitmap.isDirty(diskSize - 1) ? bytes - (chunkCount * chunkSize - diskSize) : bytes;
        }
        long bytes = 0;
        for (long c = nextNeeded(0); c >= 0; c = nextNeeded(c + 1))
        {
            bytes += lengthOf(c);
        }
        return bytes;
    }

    /**
     * @param from first chunk to look at.
     * @return the first needed chunk at or after {@code from} (claimed or not), or -1.
     */
    public long nextNeeded(final long from)
    {
        if (from >= chunkCount)
        {
            return -1;
        }
        if (all)
        {
            return from;
        }
        final BitmapView bitmap = frozen;
        if (bitmap != null)
        {
            final long dirty = bitmap.nextDirty(offsetOf(from));
            return dirty < 0 ? -1 : chunkOf(dirty);
        }
        final long c = needed.nextSet(from);
        return c < chunkCount ? c : -1;
    }

    /**
     * @param from first chunk to look at.
     * @return the first chunk at or after {@code from} that is needed but not yet done, or -1.
     */
    public long nextPending(final long from)
    {
        long c = nextNeeded(from);
        while (c >= 0)
        {
            if (!done.get(c))
            {
                return c;
            }
            c = nextNeeded(all ? done.nextClear(c) : c + 1);
        }
        return -1;
    }

    /** @param chunk a chunk. @return whether it must be preserved (in any of the states needed/claimed/done). */
    public boolean isNeeded(final long chunk)
    {
        if (chunk < 0 || chunk >= chunkCount)
        {
            return false;
        }
        if (all)
        {
            return true;
        }
        final BitmapView bitmap = frozen;
        if (bitmap != null)
        {
            final long start = offsetOf(chunk);
            final long dirty = bitmap.nextDirty(start);
            return dirty >= 0 && dirty < start + lengthOf(chunk);
        }
        return needed.get(chunk);
    }

    /** @param chunk a chunk. @return whether it was preserved. */
    public boolean isDone(final long chunk)
    {
        return done.get(chunk);
    }

    /** @param chunk a chunk. @return whether its old data is safe: written to the target, or stashed on its way. */
    public boolean isPreserved(final long chunk)
    {
        return done.get(chunk) || stashed.get(chunk);
    }

    /** @param chunk a chunk the caller claimed and whose old data it holds in memory for the target. */
    public void markStashed(final long chunk)
    {
        stashed.set(chunk);
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            stripe.notifyAll();
        }
    }

    /**
     * Waits until a claimed chunk is preserved (done or stashed), released, or the copy was abandoned.
     *
     * @param chunk a chunk.
     * @return {@code true} when it is preserved.
     * @throws InterruptedException when interrupted.
     */
    public boolean awaitPreserved(final long chunk) throws InterruptedException
    {
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            while (!isPreserved(chunk) && claimed.get(chunk) && !abandoned)
            {
                stripe.wait();
            }
        }
        return isPreserved(chunk);
    }

    /** @param chunk a chunk. @return whether someone claimed it (it may be done since). */
    public boolean isClaimed(final long chunk)
    {
        return claimed.get(chunk);
    }

    /**
     * Claims a needed, unclaimed chunk.
     *
     * @param chunk a chunk.
     * @return {@code true} if the caller now owns it and must copy it, then {@link #markDone} or {@link #release}.
     */
    public boolean tryClaim(final long chunk)
    {
        if (abandoned || !isNeeded(chunk))
        {
            return false;
        }
        return claimed.trySet(chunk);
    }

    /** @param chunk a chunk the caller claimed and copied. */
    public void markDone(final long chunk)
    {
        done.set(chunk);
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            stripe.notifyAll();
        }
    }

    /** @param chunk a chunk the caller claimed but could not copy; it becomes claimable again. */
    public void release(final long chunk)
    {
        claimed.clear(chunk);
        final Object stripe = stripe(chunk);
        synchronized (stripe)
        {
            stripe.notifyAll();
        }
    }

    /** Ends the copy: nothing more is claimed and every waiter returns. */
    public void abandon()
    {
        abandoned = true;
        for (final Object stripe : stripes)
        {
            synchronized (stripe)
            {
                stripe.notifyAll();
            }
        }
    }

    /** @return whether {@link #abandon()} was called. */
    public boolean isAbandoned()
    {
        return abandoned;
    }

    /** @return how many chunks are done. */
    public long doneCount()
    {
        return done.count();
    }

    /**
     * Walks the done chunks as coalesced byte extents, in time proportional to the pages that hold any.
     *
     * @param consumer receives {@code (offset, length)}; {@code false} stops.
     */
    public void forEachDoneExtent(final dev.tidemark.bitmap.ExtentConsumer consumer)
    {
        long c = done.nextSet(0);
        while (c >= 0 && c < chunkCount)
        {
            final long start = c;
            c = Math.min(chunkCount, done.nextClear(c));
            final long offset = offsetOf(start);
            final long end = Math.min(diskSize, offsetOf(c));
            if (!consumer.accept(offset, end - offset))
            {
                return;
            }
            c = c < chunkCount ? done.nextSet(c) : -1;
        }
    }

    private Object stripe(final long chunk)
    {
        return stripes[(int)(chunk & (STRIPES - 1))];
    }

    /**
     * Bits in pages of {@value #PAGE_WORDS} words, each allocated (and installed with one CAS) on its first set;
     * safe for concurrent use; a missing page reads as zeroes.
     */
    static final class SparseBits
    {
        private final long words;
        private final AtomicReferenceArray<AtomicReferenceArray<AtomicLongArray>> groups;

        SparseBits(final long words)
        {
            this.words = words;
            final long pages = (words + PAGE_WORDS - 1) >>> PAGE_SHIFT;
            this.groups = new AtomicReferenceArray<>(Math.toIntExact((pages + GROUP_PAGES - 1) >>> GROUP_SHIFT));
        }

        /** @return page {@code page}, or {@code null} when it (or its group) was never allocated. */
        private AtomicLongArray page(final long page)
        {
            final AtomicReferenceArray<AtomicLongArray> group = groups.get((int)(page >>> GROUP_SHIFT));
            return group == null ? null : group.get((int)(page & (GROUP_PAGES - 1)));
        }

        private long word(final long index)
        {
            final AtomicLongArray page = page(index >>> PAGE_SHIFT);
            return page == null ? 0 : page.get((int)(index & (PAGE_WORDS - 1)));
        }

        private AtomicLongArray pageFor(final long index)
        {
            final long p = index >>> PAGE_SHIFT;
            final int g = (int)(p >>> GROUP_SHIFT);
            AtomicReferenceArray<AtomicLongArray> group = groups.get(g);
            if (group == null)
            {
                final AtomicReferenceArray<AtomicLongArray> fresh = new AtomicReferenceArray<>(GROUP_PAGES);
                group = groups.compareAndSet(g, null, fresh) ? fresh : groups.get(g);
            }
            final int slot = (int)(p & (GROUP_PAGES - 1));
            final AtomicLongArray page = group.get(slot);
            if (page != null)
            {
                return page;
            }
            final AtomicLongArray fresh = new AtomicLongArray(PAGE_WORDS);
            return group.compareAndSet(slot, null, fresh) ? fresh : group.get(slot);
        }

        boolean get(final long bit)
        {
            return (word(bit >>> 6) & (1L << (bit & 63))) != 0;
        }

        void set(final long bit)
        {
            trySet(bit);
        }

        /** @return whether this call changed the bit from 0 to 1. */
        boolean trySet(final long bit)
        {
            final AtomicLongArray page = pageFor(bit >>> 6);
            final int slot = (int)((bit >>> 6) & (PAGE_WORDS - 1));
            final long mask = 1L << (bit & 63);
            long current = page.get(slot);
            while ((current & mask) == 0)
            {
                if (page.compareAndSet(slot, current, current | mask))
                {
                    return true;
                }
                current = page.get(slot);
            }
            return false;
        }

        void clear(final long bit)
        {
            final AtomicLongArray page = page(bit >>> 6 >>> PAGE_SHIFT);
            if (page == null)
            {
                return;
            }
            final int slot = (int)((bit >>> 6) & (PAGE_WORDS - 1));
            final long mask = 1L << (bit & 63);
            long current = page.get(slot);
            while ((current & mask) != 0 && !page.compareAndSet(slot, current, current & ~mask))
            {
                current = page.get(slot);
            }
        }

        /** @return the first set bit at or after {@code from}, or -1; skips missing groups and pages whole. */
        long nextSet(final long from)
        {
            long index = from >>> 6;
            if (index >= words)
            {
                return -1;
            }
            long bits = word(index) & (-1L << (from & 63));
            while (bits == 0)
            {
                index++;
                if ((index & (PAGE_WORDS - 1)) == 0)
                {
                    while (index < words)
                    {
                        final long p = index >>> PAGE_SHIFT;
                        if ((p & (GROUP_PAGES - 1)) == 0 && groups.get((int)(p >>> GROUP_SHIFT)) == null)
                        {
                            index += (long)GROUP_PAGES * PAGE_WORDS;
                        }
                        else if (page(p) == null)
                        {
                            index += PAGE_WORDS;
                        }
                        else
                        {
                            break;
                        }
                    }
                }
                if (index >= words)
                {
                    return -1;
                }
                bits = word(index);
            }
            return (index << 6) + Long.numberOfTrailingZeros(bits);
        }

        /** @return the first clear bit at or after {@code from} (may be past the last bit). */
        long nextClear(final long from)
        {
            long index = from >>> 6;
            if (index >= words)
            {
                return from;
            }
            long bits = ~word(index) & (-1L << (from & 63));
            while (bits == 0)
            {
                index++;
                if (index >= words)
                {
                    return index << 6;
                }
                bits = ~word(index);
            }
            return (index << 6) + Long.numberOfTrailingZeros(bits);
        }

        long count()
        {
            long n = 0;
            for (int g = 0; g < groups.length(); g++)
            {
                final AtomicReferenceArray<AtomicLongArray> group = groups.get(g);
                for (int p = 0; group != null && p < GROUP_PAGES; p++)
                {
                    final AtomicLongArray page = group.get(p);
                    for (int i = 0; page != null && i < PAGE_WORDS; i++)
                    {
                        n += Long.bitCount(page.get(i));
                    }
                }
            }
            return n;
        }
    }
}
