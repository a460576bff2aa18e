package dev.tidemark.engine.job;

/**
 * Immutable, safe from any thread: how a backup job moves bytes from its source to its target (see
 * {@link BackupJob}); chosen by measurement, figures in docs/benchmarks.md ("Backup pump").
 */
public enum CopyMethod
{
    /**
     * The kernel's {@code copy_file_range} from a raw source to a raw target or into a qcow2 image's whole clusters;
     * the pooled buffer for every other pair.
     */
    KERNEL,
    /** Always positional reads into a pooled, aligned direct buffer and writes from it. */
    BUFFER;

    /**
     * The default of every job, from the system property {@code tidemark.backup.copy} ({@code kernel} or
     * {@code buffer}); {@link #BUFFER} when unset: in the least loaded comparison (docs/benchmarks.md, "Backups")
     * the buffer pump was 1.22x the kernel copy to raw targets and level with it to qcow2.
     */
    public static final CopyMethod DEFAULT =
        "kernel".equals(System.getProperty("tidemark.backup.copy")) ? KERNEL : BUFFER;
}
