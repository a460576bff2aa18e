package dev.tidemark.qmp;

import java.util.Objects;
import java.util.regex.Pattern;

/**
 * One registered QMP command: name, argument schema and handler; immutable.
 *
 * <p>Names follow QAPI: lower case words joined by {@code -} (a few historical ones use {@code _}),
 * optionally {@code x-} for unstable ones, and QMP's downstream rule {@code __RFQDN_name} for
 * vendor extensions, which Tidemark uses as {@code __dev.tidemark_NAME}.
 *
 * @param name      the command name.
 * @param arguments the argument schema (use {@link QmpType#struct} with no fields for none).
 * @param handler   the body, run on the dispatcher thread after validation.
 * @param summary   one line for {@code --help} and docs.
 */
public record QmpCommand(String name, QmpStruct arguments, QmpHandler handler, String summary)
{
    private static final Pattern NAME = Pattern.compile("(__[a-z0-9][a-z0-9.-]*_)?[a-z][a-z0-9_-]*");

    /** Validates the name and that nothing is null. */
    public QmpCommand
    {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(arguments, "arguments");
        Objects.requireNonNull(handler, "handler");
        Objects.requireNonNull(summary, "summary");
        if (!NAME.matcher(name).matches())
        {
            throw new IllegalArgumentException("not a valid QMP command name: '" + name + "'");
        }
    }
}
