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
     * {@code buffer}); {@link #KERNEL} when unset: in the quiet run of record (docs/benchmarks.md, "Backups") the
     * kernel copy was 1.07x the buffer pump to raw targets, 1.13x to qcow2 and 0.95-1.27x on incrementals.
     */
    public static final CopyMethod DEFAULT =
        "buffer".equals(System.getProperty("tidemark.backup.copy")) ? BUFFER : KERNEL;
}
