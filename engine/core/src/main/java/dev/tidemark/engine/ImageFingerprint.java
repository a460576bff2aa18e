package dev.tidemark.engine;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The identity and change state of an image file, taken at a clean close and compared at the next open to detect a
 * change made while no Tidemark held the image (I5); stateless and safe for any number of threads.
 *
 * <p>Fields: size, modification time and status-change time in nanoseconds, inode and device. The modification time
 * changes with every write but can be set back by {@code touch -d} or {@code utimensat}; the status-change time cannot
 * be set by any user and moves with every write, truncation, {@code utimensat} or rename into place; inode and device
 * change when the file is replaced (copied over, moved in). A change made within the same kernel timestamp tick as
 * the close (a few milliseconds on coarse clocks) to a file of the same size is the one change that can go unseen.
 */
public final class ImageFingerprint
{
    private static final String[] FIELDS = {"size", "mtime", "ctime", "ino", "dev"};

    private ImageFingerprint()
    {
    }

    /**
     * @param image the image file.
     * @return its fingerprint, for example {@code size=1048576 mtime=1732770000123456789 ctime=... ino=12 dev=2049}.
     * @throws IOException if its attributes cannot be read.
     */
    public static String of(final Path image) throws IOException
    {
        final Map<String, Object> unix = Files.readAttributes(image, "unix:size,lastModifiedTime,ctime,ino,dev",
            LinkOption.NOFOLLOW_LINKS);
        return "size=" + unix.get("size") + " mtime=" + nanos(unix.get("lastModifiedTime")) + " ctime="
            + nanos(unix.get("ctime")) + " ino=" + unix.get("ino") + " dev=" + unix.get("dev");
    }

    private static long nanos(final Object time)
    {
        return ((FileTime) time).to(TimeUnit.NANOSECONDS);
    }

    /**
     * @param recorded a fingerprint recorded earlier.
     * @param now the fingerprint now.
     * @return {@code null} when they match, else which fields changed, e.g. {@code mtime 1 -> 2, ctime 3 -> 4}.
     */
    public static String difference(final String recorded, final String now)
    {
        final Map<String, String> before = parse(recorded);
        final Map<String, String> after = parse(now);
        final List<String> changed = new ArrayList<>();
        for (final String field : FIELDS)
        {
            final String a = before.get(field);
            final String b = after.get(field);
            if (a == null || !a.equals(b))
            {
                changed.add(field + " " + a + " -> " + b);
            }
        }
        return changed.isEmpty() ? null : String.join(", ", changed);
    }

    private static Map<String, String> parse(final String fingerprint)
    {
        final Map<String, String> fields = new LinkedHashMap<>();
        for (final String part : fingerprint.trim().split("\\s+"))
        {
            final int equals = part.indexOf('=');
            if (equals > 0)
            {
                fields.put(part.substring(0, equals), part.substring(equals + 1));
            }
        }
        return fields;
    }
}
