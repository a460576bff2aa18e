package dev.tidemark.daemon;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Writes an initramfs in the kernel's {@code newc} cpio format; confined to one thread. */
final class Cpio
{
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final java.util.Set<String> dirs = new java.util.HashSet<>();
    private int inode = 1;

    /** Adds a directory and its missing parents. */
    void dir(final String name)
    {
        final int slash = name.lastIndexOf('/');
        if (slash > 0)
        {
            dir(name.substring(0, slash));
        }
        if (dirs.add(name))
        {
            entry(name, 0040755, new byte[0], 0, 0);
        }
    }

    private void parents(final String name)
    {
        final int slash = name.lastIndexOf('/');
        if (slash > 0)
        {
            dir(name.substring(0, slash));
        }
    }

    void file(final String name, final byte[] data, final boolean executable)
    {
        parents(name);
        entry(name, executable ? 0100755 : 0100644, data, 0, 0);
    }

    void file(final String name, final Path from, final boolean executable) throws IOException
    {
        file(name, Files.readAllBytes(from), executable);
    }

    void symlink(final String name, final String target)
    {
        entry(name, 0120777, target.getBytes(StandardCharsets.UTF_8), 0, 0);
    }

    void charDevice(final String name, final int major, final int minor)
    {
        parents(name);
        entry(name, 0020600, new byte[0], major, minor);
    }

    byte[] finish()
    {
        entry("TRAILER!!!", 0, new byte[0], 0, 0);
        return out.toByteArray();
    }

    private void entry(final String name, final int mode, final byte[] data, final int rdevMajor, final int rdevMinor)
    {
        final byte[] rawName = name.getBytes(StandardCharsets.UTF_8);
        final StringBuilder h = new StringBuilder("070701");
        for (final long field : new long[] {inode++, mode, 0, 0, 1, 0, data.length, 0, 0, rdevMajor, rdevMinor,
            rawName.length + 1, 0})
        {
            h.append(String.format("%08x", field));
        }
        out.writeBytes(h.toString().getBytes(StandardCharsets.US_ASCII));
        out.writeBytes(rawName);
        out.write(0);
        pad();
        out.writeBytes(data);
        pad();
    }

    private void pad()
    {
        while (out.size() % 4 != 0)
        {
            out.write(0);
        }
    }
}
