package dev.tidemark.bitmap;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * A child JVM for crash and lock tests; single-threaded.
 *
 * <p>{@code mark FILE SEED}: opens the bitmap and marks random ranges forever, printing
 * {@code offset length} after each mark returns (the acknowledgement), until it is killed.
 * {@code hold FILE}: opens the bitmap, prints {@code ready} and sleeps until killed.
 */
public final class BitmapChildMain
{
    private BitmapChildMain()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final Path file = Path.of(args[1]);
        final PrintStream out = new PrintStream(System.out, false, "US-ASCII");
        final MappedBitmap bitmap = MappedBitmap.open(file);
        if ("hold".equals(args[0]))
        {
            out.println("ready");
            out.flush();
            Thread.sleep(120_000);
            return;
        }
        final SplittableRandom random = new SplittableRandom(Long.parseLong(args[2]));
        final long diskSize = bitmap.diskSize();
        final StringBuilder line = new StringBuilder(64);
        out.println("ready");
        out.flush();
        while (true)
        {
            final long offset = random.nextLong(diskSize);
            final long length = 1 + random.nextLong(Math.min(diskSize - offset, 4 * bitmap.granularity()));
            bitmap.mark(offset, length);
            line.setLength(0);
            line.append(offset).append(' ').append(length);
            out.println(line);
            out.flush();
        }
    }
}
