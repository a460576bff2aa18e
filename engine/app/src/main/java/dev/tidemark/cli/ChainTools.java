package dev.tidemark.cli;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Reader;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Restores and compares backup chains; stateless, every method confines its stores to the calling thread.
 *
 * <p>A chain is given either as its top image alone (backing files are followed through the qcow2 headers) or as
 * the whole list, base first; a list is checked link by link so that a restore never silently uses another
 * backing file than the one named.
 */
final class ChainTools
{
    /** Size of one copy or compare piece. */
    static final int PIECE = 1 << 20;

    private ChainTools()
    {
    }

    /** The first difference of a byte compare. */
    record Mismatch(long offset, int expected, int actual)
    {
    }

    /**
     * Opens a chain for reading.
     *
     * @param images the top image alone, or every image base first.
     * @return a reader of the top image that reads through its backing files.
     * @throws IOException when a file is missing or not qcow2, or the list's links do not match the headers.
     */
    static Qcow2Reader openChain(final List<Path> images) throws IOException
    {
        if (images.isEmpty())
        {
            throw new IllegalArgumentException("no image given");
        }
        for (final Path image : images)
        {
            if (!Files.isRegularFile(image))
            {
                throw new NoSuchFileException(image.toString(), null, "backup image not found");
            }
        }
        for (int i = 1; i < images.size(); i++)
        {
            try (Qcow2Reader layer = Qcow2Reader.open(images.get(i)))
            {
                final String backing = layer.backingFile();
                if (backing == null)
                {
                    throw new IOException(images.get(i) + " has no backing file, but the chain lists "
                        + images.get(i - 1) + " below it");
                }
                final Path resolved = resolveBacking(images.get(i), backing);
                if (!Files.isSameFile(resolved, images.get(i - 1)))
                {
                    throw new IOException(images.get(i) + " is backed by " + resolved + ", but the chain lists "
                        + images.get(i - 1) + " below it");
                }
            }
        }
        final Qcow2Reader top = Qcow2Reader.open(images.get(images.size() - 1));
        final Path base = images.get(0);
        if (images.size() > 1 && top.chainLength() < images.size())
        {
            top.close();
            throw new IOException("chain of " + images.get(images.size() - 1) + " is shorter than the "
                + images.size() + " images listed (base " + base + ")");
        }
        return top;
    }

    static Path resolveBacking(final Path image, final String backing)
    {
        final Path named = Path.of(backing);
        if (named.isAbsolute())
        {
            return named;
        }
        final Path parent = image.toAbsolutePath().getParent();
        return parent == null ? named : parent.resolve(named);
    }

    /**
     * Copies {@code source} into a new sparse raw file, skipping what reads as zeros.
     *
     * @return bytes of data written (holes excluded).
     */
    static long restore(final BlockStore source, final Path to, final Progress progress) throws IOException
    {
        final long size = source.size();
        long written = 0;
        try (RawFileStore out = RawFileStore.create(to, size))
        {
            final ByteBuffer buffer = ByteBuffer.allocateDirect(PIECE);
            for (long at = 0; at < size; at += PIECE)
            {
                final int length = (int)Math.min(PIECE, size - at);
                buffer.clear().limit(length);
                source.read(at, buffer);
                buffer.flip();
                if (!isZero(buffer))
                {
                    out.write(at, buffer);
                    written += length;
                }
                progress.update(at + length);
            }
            out.flush();
        }
        progress.done();
        return written;
    }

    /**
     * Compares two stores byte for byte.
     *
     * @return the first difference, or {@code null} when they are equal; a size difference is reported at the
     *         smaller size with {@code -1} for the missing side.
     */
    static Mismatch compare(final BlockStore expected, final BlockStore actual, final Progress progress)
        throws IOException
    {
        final long size = Math.min(expected.size(), actual.size());
        final ByteBuffer a = ByteBuffer.allocateDirect(PIECE);
        final ByteBuffer b = ByteBuffer.allocateDirect(PIECE);
        for (long at = 0; at < size; at += PIECE)
        {
            final int length = (int)Math.min(PIECE, size - at);
            a.clear().limit(length);
            b.clear().limit(length);
            expected.read(at, a);
            actual.read(at, b);
            a.flip();
            b.flip();
            final int diff = a.mismatch(b);
            if (diff >= 0)
            {
                progress.done();
                return new Mismatch(at + diff, a.get(diff) & 0xff, b.get(diff) & 0xff);
            }
            progress.update(at + length);
        }
        progress.done();
        if (expected.size() != actual.size())
        {
            return new Mismatch(size, expected.size() > size ? 0 : -1, actual.size() > size ? 0 : -1);
        }
        return null;
    }

    static boolean isZero(final ByteBuffer buffer)
    {
        final int end = buffer.limit();
        int i = buffer.position();
        for (; i + 8 <= end; i += 8)
        {
            if (buffer.getLong(i) != 0)
            {
                return false;
            }
        }
        for (; i < end; i++)
        {
            if (buffer.get(i) != 0)
            {
                return false;
            }
        }
        return true;
    }

    /** @return every path of a chain for messages, base first. */
    static List<String> describe(final Qcow2Reader top)
    {
        final List<String> out = new ArrayList<>();
        BlockStore layer = top;
        while (layer != null)
        {
            if (layer instanceof Qcow2Reader reader)
            {
                out.add(0, reader.path().toString());
                layer = reader.backing();
            }
            else
            {
                out.add(0, layer.toString());
                layer = null;
            }
        }
        return out;
    }

    /**
     * A one-line progress bar on a terminal; not thread-safe: confine to the thread doing the work.
     *
     * <p>Draws only when the stream is a terminal (the JVM has a console), at most ten times a second, so
     * redirected output and scripts see nothing.
     */
    static final class Progress
    {
        private static final Progress NONE = new Progress(null, "", 0);

        private final PrintStream out;
        private final String label;
        private final long total;
        private final long started = System.nanoTime();
        private long lastDraw;
        private boolean drawn;

        private Progress(final PrintStream out, final String label, final long total)
        {
            this.out = out;
            this.label = label;
            this.total = total;
        }

        /** @return a bar on standard error when it is a terminal, otherwise one that draws nothing. */
        static Progress onTerminal(final String label, final long total, final boolean enabled)
        {
            return enabled && System.console() != null ? new Progress(System.err, label, total) : NONE;
        }

        /** @return a bar that draws nothing. */
        static Progress none()
        {
            return NONE;
        }

        void update(final long done)
        {
            if (out == null)
            {
                return;
            }
            final long now = System.nanoTime();
            if (now - lastDraw < 100_000_000L && done < total)
            {
                return;
            }
            lastDraw = now;
            final int width = 30;
            final int filled = total == 0 ? width : (int)(width * Math.min(done, total) / total);
            final double seconds = (now - started) / 1e9;
            final double rate = seconds > 0 ? done / seconds / 1e6 : 0;
            out.printf("\r%-10s [%s%s] %3d%% %8.1f MB/s", label, "#".repeat(filled), " ".repeat(width - filled),
                total == 0 ? 100 : 100 * Math.min(done, total) / total, rate);
            out.flush();
            drawn = true;
        }

        void done()
        {
            if (out != null && drawn)
            {
                out.print("\r" + " ".repeat(70) + "\r");
                out.flush();
                drawn = false;
            }
        }
    }
}
