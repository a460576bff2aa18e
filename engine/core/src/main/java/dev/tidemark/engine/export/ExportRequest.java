package dev.tidemark.engine.export;

import java.util.List;
import java.util.Objects;

/**
 * The arguments of {@code block-export-add} for an NBD export; immutable and safe to share between threads.
 *
 * @param id the export id (QEMU's id rules: a letter, then letters, digits, '-', '.', '_').
 * @param node the node to serve.
 * @param name the name clients ask for, or {@code null} for the node name.
 * @param description free text (at most 4096 bytes), or {@code null} for none.
 * @param writable whether clients may write (default false in QMP).
 * @param bitmaps bitmaps offered as {@code qemu:dirty-bitmap:NAME}, in order.
 * @param checkpoints whether to offer {@code tidemark:changed-since:NAME} for every checkpoint of the node's disk at
 *                    the time of the add ({@code x-tidemark-checkpoints}).
 */
public record ExportRequest(String id, ExportNode node, String name, String description, boolean writable,
    List<BitmapRef> bitmaps, boolean checkpoints)
{
    /**
     * Without checkpoint contexts.
     *
     * @param id the export id.
     * @param node the node.
     * @param name the export name or {@code null}.
     * @param description the description or {@code null}.
     * @param writable whether clients may write.
     * @param bitmaps the bitmaps.
     */
    public ExportRequest(final String id, final ExportNode node, final String name, final String description,
        final boolean writable, final List<BitmapRef> bitmaps)
    {
        this(id, node, name, description, writable, bitmaps, false);
    }

    /** Checks for nulls and copies the list. */
    public ExportRequest
    {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(node, "node");
        bitmaps = List.copyOf(bitmaps);
    }

    /**
     * @param id the export id.
     * @param node the node.
     * @return a read-only export named after the node, no description, no bitmaps.
     */
    public static ExportRequest of(final String id, final ExportNode node)
    {
        return new ExportRequest(id, node, null, null, false, List.of());
    }

    /** @return the export name clients use: {@link #name()} or else the node name. */
    public String exportName()
    {
        return name != null ? name : node.nodeName();
    }

    /** @param value whether writable. @return a copy with it. */
    public ExportRequest withWritable(final boolean value)
    {
        return new ExportRequest(id, node, name, description, value, bitmaps, checkpoints);
    }

    /** @param value the export name. @return a copy with it. */
    public ExportRequest withName(final String value)
    {
        return new ExportRequest(id, node, value, description, writable, bitmaps, checkpoints);
    }

    /** @param value the description. @return a copy with it. */
    public ExportRequest withDescription(final String value)
    {
        return new ExportRequest(id, node, name, value, writable, bitmaps, checkpoints);
    }

    /** @param value bitmaps of the node's disk, by name. @return a copy with them. */
    public ExportRequest withBitmaps(final String... value)
    {
        return new ExportRequest(id, node, name, description, writable,
            java.util.Arrays.stream(value).map(BitmapRef::of).toList(), checkpoints);
    }

    /** @param value the bitmaps. @return a copy with them. */
    public ExportRequest withBitmapRefs(final List<BitmapRef> value)
    {
        return new ExportRequest(id, node, name, description, writable, value, checkpoints);
    }

    /** @param value whether to offer the checkpoint contexts. @return a copy with it. */
    public ExportRequest withCheckpoints(final boolean value)
    {
        return new ExportRequest(id, node, name, description, writable, bitmaps, value);
    }
}
