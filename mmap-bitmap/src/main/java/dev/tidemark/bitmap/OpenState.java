package dev.tidemark.bitmap;

/**
 * What the trust rule found when a bitmap was opened; immutable.
 *
 * <p>Only {@link #INCONSISTENT} bits are unreliable: readable for inspection, never to be used for an
 * incremental backup.
 */
public enum OpenState
{
    /** A bitmap in memory only; it has no file and no history. */
    ANONYMOUS,
    /** The file was created by this open. */
    CREATED,
    /** The previous holder closed the file cleanly. */
    CLEAN,
    /** The previous holder died but the machine did not reboot: the page cache kept every bit. */
    TRUSTED_SAME_BOOT,
    /** The previous holder died in another boot, but it ran in durable mode: every bit reached storage. */
    TRUSTED_DURABLE,
    /** The previous holder died in another boot in lazy mode, or the file was already marked inconsistent. */
    INCONSISTENT;

    /** @return whether the bits can be trusted. */
    public boolean isTrusted()
    {
        return this != INCONSISTENT;
    }
}
