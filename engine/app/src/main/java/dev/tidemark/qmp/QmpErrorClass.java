package dev.tidemark.qmp;

/**
 * QEMU's QMP error classes; immutable. The wire name is the constant's name.
 */
public enum QmpErrorClass
{
    /** Almost every error. */
    GenericError,
    /** Unknown command, or a command not allowed in the current mode. */
    CommandNotFound,
    /** The job or device named is not active (for example a missing job). */
    DeviceNotActive,
    /** The device named does not exist. */
    DeviceNotFound,
    /** Kept for completeness of QEMU's list; Tidemark never raises it. */
    KVMMissingCap
}
