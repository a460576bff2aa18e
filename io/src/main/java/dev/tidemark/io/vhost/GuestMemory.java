package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A vhost-user memory table mapped into this process; immutable after construction, so safe for any number of
 * threads until {@link #unmap()}, which the owner calls only once no thread uses it any more.
 *
 * <p>Each region is the front end's file descriptor mapped shared and off-heap; guest buffers are handed out as
 * direct {@link ByteBuffer} slices of it, so request data is never copied onto the heap. A region is viewed
 * through windows of at most 2 GiB (a {@code ByteBuffer}'s limit) that start every 1 GiB, so every buffer of less
 * than 1 GiB lies inside one window.
 */
final class GuestMemory
{
    private static final long WINDOW_STRIDE = 1L << 30;
    private static final long WINDOW_MAX = Integer.MAX_VALUE;

    private final Region[] regions;

    private GuestMemory(final Region[] regions)
    {
        this.regions = regions;
    }

    /** An empty table (before the first SET_MEM_TABLE). */
    static GuestMemory empty()
    {
        return new GuestMemory(new Region[0]);
    }

    /**
     * Maps a SET_MEM_TABLE payload's regions.
     *
     * @param payload the message payload, little-endian: u32 count, u32 padding, then per region u64 guest
     *                physical address, u64 size, u64 front-end virtual address, u64 offset into the descriptor.
     * @param fds one descriptor per region, in order; this method closes them (a mapping outlives its fd).
     */
    static GuestMemory map(final ByteBuffer payload, final int[] fds, final int fdCount) throws IOException
    {
        final List<Region> mapped = new ArrayList<>();
        try
        {
            final int count = payload.getInt(0);
            if (count < 1 || count > Libc.MAX_FDS || count != fdCount || payload.limit() < 8 + 32 * count)
            {
                throw new IOException("SET_MEM_TABLE with " + count + " regions, " + fdCount + " descriptors and "
                    + payload.limit() + " bytes");
            }
            for (int i = 0; i < count; i++)
            {
                final int at = 8 + 32 * i;
                final long gpa = payload.getLong(at);
                final long size = payload.getLong(at + 8);
                final long uva = payload.getLong(at + 16);
                final long mmapOffset = payload.getLong(at + 24);
                if (size <= 0 || mmapOffset < 0)
                {
                    throw new IOException("memory region " + i + " has size " + size + " offset " + mmapOffset);
                }
                // mmap offsets must be page aligned and mmap_offset need not be: map from 0, as libvhost-user does.
                final long length = size + mmapOffset;
                final Pointer base;
                try
                {
                    base = Libc.mmap(null, length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fds[i], 0);
                }
                catch (final LastErrorException ex)
                {
                    throw new IOException("mmap of memory region " + i + " (" + length + " bytes) failed: errno "
                        + ex.getErrorCode(), ex);
                }
                mapped.add(new Region(gpa, size, uva, base, length, mmapOffset));
            }
            return new GuestMemory(mapped.toArray(new Region[0]));
        }
        catch (final IOException | RuntimeException ex)
        {
            for (final Region region : mapped)
            {
                region.unmap();
            }
            throw ex;
        }
        finally
        {
            for (int i = 0; i < fdCount; i++)
            {
                Libc.closeQuietly(fds[i]);
            }
        }
    }

    /** @return the number of regions. */
    int regionCount()
    {
        return regions.length;
    }

    /**
     * @param gpa a guest physical address.
     * @param length bytes from there.
     * @return a little-endian buffer over them, position 0, or {@code null} if they are not inside one region.
     */
    ByteBuffer guest(final long gpa, final int length)
    {
        final Region region = regionOf(gpa, length);
        return region == null ? null : region.slice(gpa - region.gpa, length);
    }

    /** @return whether {@code length} bytes from guest physical {@code gpa} lie inside one region. */
    boolean contains(final long gpa, final int length)
    {
        return regionOf(gpa, length) != null;
    }

    /**
     * Copies guest bytes without making a buffer (the request path allocates nothing for headers and tables).
     *
     * @return whether {@code length} bytes from {@code gpa} lie inside one region (nothing is copied if not).
     */
    boolean get(final long gpa, final byte[] dst, final int offset, final int length)
    {
        final Region region = regionOf(gpa, length);
        if (region == null)
        {
            return false;
        }
        region.get(gpa - region.gpa, dst, offset, length);
        return true;
    }

    /**
     * Copies bytes into guest memory without making a buffer.
     *
     * @return whether {@code length} bytes from {@code gpa} lie inside one region (nothing is copied if not).
     */
    boolean put(final long gpa, final byte[] src, final int offset, final int length)
    {
        final Region region = regionOf(gpa, length);
        if (region == null)
        {
            return false;
        }
        region.put(gpa - region.gpa, src, offset, length);
        return true;
    }

    /** As {@link #put(long, byte[], int, int)} for one byte (a request's status). */
    boolean put(final long gpa, final byte value)
    {
        final Region region = regionOf(gpa, 1);
        if (region == null)
        {
            return false;
        }
        region.put(gpa - region.gpa, value);
        return true;
    }

    private Region regionOf(final long gpa, final int length)
    {
        if (length < 0)
        {
            return null;
        }
        for (final Region region : regions)
        {
            if (gpa >= region.gpa && gpa - region.gpa <= region.size - length)
            {
                return region;
            }
        }
        return null;
    }

    /**
     * @param uva an address in the front end's address space (SET_VRING_ADDR gives these).
     * @param length bytes from there.
     * @return a little-endian buffer over them, or {@code null} if they are not inside one region.
     */
    ByteBuffer frontEnd(final long uva, final int length)
    {
        for (final Region region : regions)
        {
            if (uva >= region.uva && uva - region.uva <= region.size - length)
            {
                return region.slice(uva - region.uva, length);
            }
        }
        return null;
    }

    /** Unmaps every region; no buffer handed out may be used afterwards. */
    void unmap()
    {
        for (final Region region : regions)
        {
            region.unmap();
        }
    }

    /** One mapped region; immutable, so safe for any thread while mapped. */
    private static final class Region
    {
        final long gpa;
        final long size;
        final long uva;
        final Pointer mapping;
        final long mappedLength;
        final ByteBuffer[] windows;

        Region(final long gpa, final long size, final long uva, final Pointer mapping, final long mappedLength,
            final long mmapOffset)
        {
            this.gpa = gpa;
            this.size = size;
            this.uva = uva;
            this.mapping = mapping;
            this.mappedLength = mappedLength;
            final int count = (int)((size + WINDOW_STRIDE - 1) / WINDOW_STRIDE);
            this.windows = new ByteBuffer[count];
            for (int i = 0; i < count; i++)
            {
                final long start = i * WINDOW_STRIDE;
                windows[i] = mapping.getByteBuffer(mmapOffset + start, Math.min(size - start, WINDOW_MAX))
                    .order(ByteOrder.LITTLE_ENDIAN);
            }
        }

        ByteBuffer slice(final long offset, final int length)
        {
            final int window = (int)(offset / WINDOW_STRIDE);
            final long inWindow = offset - window * WINDOW_STRIDE;
            final ByteBuffer view = windows[window];
            if (inWindow + length > view.capacity())
            {
                // Only a buffer of 1 GiB or more can cross a window's end.
                return mapping.getByteBuffer(offset + (mappedLength - size), length).order(ByteOrder.LITTLE_ENDIAN);
            }
            return view.slice((int)inWindow, length).order(ByteOrder.LITTLE_ENDIAN);
        }

        void get(final long offset, final byte[] dst, final int at, final int length)
        {
            final int window = (int)(offset / WINDOW_STRIDE);
            final long inWindow = offset - window * WINDOW_STRIDE;
            if (inWindow + length > windows[window].capacity())
            {
                slice(offset, length).get(0, dst, at, length);
                return;
            }
            windows[window].get((int)inWindow, dst, at, length);
        }

        void put(final long offset, final byte[] src, final int at, final int length)
        {
            final int window = (int)(offset / WINDOW_STRIDE);
            final long inWindow = offset - window * WINDOW_STRIDE;
            if (inWindow + length > windows[window].capacity())
            {
                slice(offset, length).put(0, src, at, length);
                return;
            }
            windows[window].put((int)inWindow, src, at, length);
        }

        void put(final long offset, final byte value)
        {
            final int window = (int)(offset / WINDOW_STRIDE);
            windows[window].put((int)(offset - window * WINDOW_STRIDE), value);
        }

        void unmap()
        {
            try
            {
                Libc.munmap(mapping, mappedLength);
            }
            catch (final LastErrorException ex)
            {
                // munmap fails only for bad arguments; the mapping is ours, so leave it.
            }
        }
    }
}
