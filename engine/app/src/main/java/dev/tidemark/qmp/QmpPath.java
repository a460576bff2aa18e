package dev.tidemark.qmp;

/**
 * Where a value sits inside a command's arguments, for error texts; immutable.
 *
 * <p>QEMU names values two ways and Tidemark copies both: most errors use the full path
 * ({@code addr.data.port}, {@code bitmaps[0].name}), while enum, alternate and integer-range errors
 * use only the member's own name, or {@code null} for a list element.
 *
 * @param full  the full path, empty for the arguments object itself.
 * @param local the member's own name, or {@code "null"} for a list element.
 */
record QmpPath(String full, String local)
{
    static final QmpPath ROOT = new QmpPath("", "null");

    QmpPath member(final String name)
    {
        return new QmpPath(full.isEmpty() ? name : full + "." + name, name);
    }

    QmpPath element(final int index)
    {
        return new QmpPath(full + "[" + index + "]", "null");
    }
}
