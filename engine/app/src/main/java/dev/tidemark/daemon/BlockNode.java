package dev.tidemark.daemon;

/**
 * One named block node of the daemon's graph; not thread-safe: confine to the QMP dispatcher thread, which runs
 * every command (the daemon's big lock).
 *
 * <p>What a node is depends on its driver ({@link BlockDriver}, e.g. {@link FileDriver}): the driver's
 * {@link BlockDriver.State} holds what the node opened. A {@code sync: none} backup binds a point-in-time view to
 * its target by wrapping the target's state in a {@link FleecingNode}.
 */
final class BlockNode
{
    final String name;
    /** The {@code driver} it was added with. */
    final String driver;
    final boolean readOnly;
    /** Whether the daemon created this node as an inline child (not owned by the monitor). */
    final boolean implicit;

    /** The driver's side of the node; set once opened, replaced while a fleecing view is bound. */
    BlockDriver.State state;
    /** Number of nodes that use this one as a child. */
    int parents;
    /** Id of the job using this node as source or target, or {@code null}. */
    String jobId;
    private boolean closed;

    BlockNode(final String name, final String driver, final boolean readOnly, final boolean implicit)
    {
        this.name = name;
        this.driver = driver;
        this.readOnly = readOnly;
        this.implicit = implicit;
    }

    /** Closes the driver's side once; later calls do nothing. */
    void close()
    {
        if (!closed && state != null)
        {
            closed = true;
            state.close();
        }
    }
}
