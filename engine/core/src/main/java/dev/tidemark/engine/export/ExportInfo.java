package dev.tidemark.engine.export;

import java.util.List;

/**
 * One export as {@code query-block-exports} reports it, plus what Tidemark adds; immutable.
 *
 * @param id the export id.
 * @param type always {@code nbd}.
 * @param nodeName the node served.
 * @param shuttingDown whether removal has begun (the id stays in use until {@code BLOCK_EXPORT_DELETED}).
 * @param name the NBD export name.
 * @param writable whether clients may write.
 * @param bitmaps the exported bitmaps' names.
 */
public record ExportInfo(String id, String type, String nodeName, boolean shuttingDown, String name,
    boolean writable, List<String> bitmaps)
{
    /** Copies the list. */
    public ExportInfo
    {
        bitmaps = List.copyOf(bitmaps);
    }
}
