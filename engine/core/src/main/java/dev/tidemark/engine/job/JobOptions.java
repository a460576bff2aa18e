package dev.tidemark.engine.job;

/**
 * Options every job has; immutable and safe to share between threads.
 *
 * @param autoFinalize finalize without {@code job-finalize} (QEMU default {@code true}).
 * @param autoDismiss dismiss without {@code job-dismiss} (QEMU default {@code true}).
 * @param speed the speed limit in bytes per second, 0 = unlimited.
 */
public record JobOptions(boolean autoFinalize, boolean autoDismiss, long speed)
{
    /** QEMU's defaults: auto-finalize, auto-dismiss, unlimited speed. */
    public static final JobOptions DEFAULTS = new JobOptions(true, true, 0);

    /**
     * @throws IllegalArgumentException when the speed is negative.
     */
    public JobOptions
    {
        if (speed < 0)
        {
            throw new IllegalArgumentException("Parameter 'speed' expects a non-negative value");
        }
    }
}
