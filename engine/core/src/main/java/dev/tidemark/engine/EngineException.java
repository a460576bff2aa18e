package dev.tidemark.engine;

import dev.tidemark.io.IoReason;
import java.util.Objects;

/**
 * An engine error with a reason and QEMU's message text; immutable and safe to share between threads.
 *
 * <p>Unchecked so that control actions and callbacks stay lambda-friendly; every method that throws it says so
 * in its signature. The message is the exact {@code desc} a QMP client would see; what callers decide, they
 * decide from the {@link Reason}: the QMP error class ({@link #errorClass()}) and the NBD error value (through
 * {@link #ioReason()}) follow from it.
 */
public final class EngineException extends RuntimeException implements IoReason.Carrier
{
    private static final long serialVersionUID = 1L;

    /** QMP error classes, spelled as QMP spells them. */
    public enum ErrorClass
    {
        /** Almost every error. */
        GenericError,
        /** An unknown command. */
        CommandNotFound,
        /** A missing job. */
        DeviceNotActive,
        /** A missing device. */
        DeviceNotFound
    }

    /** Why the engine refused or failed, immutable and shareable: it fixes the QMP class and the I/O reason. */
    public enum Reason
    {
        /** Any refusal without a reason of its own below (QMP GenericError; NBD EIO). */
        GENERIC(ErrorClass.GenericError, IoReason.IO_ERROR),
        /** A request outside the disk or not aligned to it (QMP GenericError; NBD EINVAL). */
        INVALID_REQUEST(ErrorClass.GenericError, IoReason.INVALID_ARGUMENT),
        /** A write to a read-only disk or node (QMP GenericError; NBD EPERM). */
        READ_ONLY(ErrorClass.GenericError, IoReason.READ_ONLY),
        /** A job id that names no job (QMP DeviceNotActive, as QEMU answers). */
        JOB_NOT_FOUND(ErrorClass.DeviceNotActive, IoReason.IO_ERROR);

        private final ErrorClass errorClass;
        private final IoReason ioReason;

        Reason(final ErrorClass errorClass, final IoReason ioReason)
        {
            this.errorClass = errorClass;
            this.ioReason = ioReason;
        }

        /** @return the QMP error class a client sees. */
        public ErrorClass errorClass()
        {
            return errorClass;
        }

        /** @return the I/O reason, from which the NBD error value follows. */
        public IoReason ioReason()
        {
            return ioReason;
        }
    }

    private final Reason reason;

    /**
     * @param reason why.
     * @param message the QMP {@code desc}.
     */
    public EngineException(final Reason reason, final String message)
    {
        super(message);
        this.reason = Objects.requireNonNull(reason, "reason");
    }

    /**
     * @param reason why.
     * @param message the QMP {@code desc}.
     * @param cause the underlying failure.
     */
    public EngineException(final Reason reason, final String message, final Throwable cause)
    {
        super(message, cause);
        this.reason = Objects.requireNonNull(reason, "reason");
    }

    /**
     * @param message the QMP {@code desc}.
     * @return a {@link Reason#GENERIC} error.
     */
    public static EngineException generic(final String message)
    {
        return new EngineException(Reason.GENERIC, message);
    }

    /** @return why. */
    public Reason reason()
    {
        return reason;
    }

    /** @return the QMP error class. */
    public ErrorClass errorClass()
    {
        return reason.errorClass();
    }

    @Override
    public IoReason ioReason()
    {
        return reason.ioReason();
    }
}
