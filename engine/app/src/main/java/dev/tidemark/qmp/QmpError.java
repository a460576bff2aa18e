package dev.tidemark.qmp;

import java.util.Objects;

/**
 * A QMP error reply ({@code {"error":{"class":C,"desc":D}}}); immutable and safe to share between threads.
 *
 * <p>Command handlers throw it; the client throws it when the server answers with an error. The
 * {@code desc} follows QEMU's wording where QEMU has one, because some scripts match on it.
 */
public final class QmpError extends Exception
{
    private static final long serialVersionUID = 1L;

    private final QmpErrorClass errorClass;
    private final String desc;

    /**
     * @param errorClass the class sent on the wire.
     * @param desc       the human-readable description.
     */
    public QmpError(final QmpErrorClass errorClass, final String desc)
    {
        super(errorClass + ": " + desc, null, false, false);
        this.errorClass = Objects.requireNonNull(errorClass, "errorClass");
        this.desc = Objects.requireNonNull(desc, "desc");
    }

    /**
     * @param desc the description.
     * @return a {@link QmpErrorClass#GenericError}.
     */
    public static QmpError generic(final String desc)
    {
        return new QmpError(QmpErrorClass.GenericError, desc);
    }

    /** @return the error class. */
    public QmpErrorClass errorClass()
    {
        return errorClass;
    }

    /** @return the description. */
    public String desc()
    {
        return desc;
    }
}
