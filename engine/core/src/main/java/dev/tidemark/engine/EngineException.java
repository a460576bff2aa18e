package dev.tidemark.engine;

/**
 * An engine error with a QMP error class and QEMU's message text; immutable and safe to share between threads.
 *
 * <p>Unchecked so that control actions and callbacks stay lambda-friendly; every method that throws it says so
 * in its signature. The message is the exact {@code desc} a QMP client would see.
 */
public final class EngineException extends RuntimeException
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

    private final ErrorClass errorClass;

    /**
     * @param errorClass the QMP class.
     * @param message the QMP {@code desc}.
     */
    public EngineException(final ErrorClass errorClass, final String message)
    {
        super(message);
        this.errorClass = errorClass;
    }

    /**
     * @param errorClass the QMP class.
     * @param message the QMP {@code desc}.
     * @param cause the underlying failure.
     */
    public EngineException(final ErrorClass errorClass, final String message, final Throwable cause)
    {
        super(message, cause);
        this.errorClass = errorClass;
    }

    /**
     * @param message the QMP {@code desc}.
     * @return a {@link ErrorClass#GenericError}.
     */
    public static EngineException generic(final String message)
    {
        return new EngineException(ErrorClass.GenericError, message);
    }

    /** @return the QMP error class. */
    public ErrorClass errorClass()
    {
        return errorClass;
    }
}
