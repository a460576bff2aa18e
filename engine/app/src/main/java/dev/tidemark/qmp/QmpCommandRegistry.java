package dev.tidemark.qmp;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The set of commands a server offers; safe for concurrent use by any number of threads (registration
 * normally happens once at start-up, lookups on the dispatcher thread).
 *
 * <p>Engine commands are added by a wiring class calling {@link #register}; the server adds its
 * built-in commands ({@code qmp_capabilities}, {@code query-version}, {@code query-commands},
 * {@code quit}) itself.
 */
public final class QmpCommandRegistry
{
    private final Map<String, QmpCommand> commands = new LinkedHashMap<>();

    /**
     * Adds a command.
     *
     * @param command the command.
     * @return this registry.
     * @throws IllegalArgumentException if a command of that name exists.
     */
    public synchronized QmpCommandRegistry register(final QmpCommand command)
    {
        if (commands.putIfAbsent(command.name(), command) != null)
        {
            throw new IllegalArgumentException("QMP command '" + command.name() + "' is already registered");
        }
        return this;
    }

    /**
     * Shorthand for {@code register(new QmpCommand(name, arguments, handler, summary))}.
     *
     * @param name      command name.
     * @param arguments argument schema.
     * @param summary   one line of help.
     * @param handler   body.
     * @return this registry.
     */
    public QmpCommandRegistry register(final String name, final QmpStruct arguments, final String summary,
        final QmpHandler handler)
    {
        return register(new QmpCommand(name, arguments, handler, summary));
    }

    /**
     * @param name command name.
     * @return the command, or null.
     */
    public synchronized QmpCommand lookup(final String name)
    {
        return commands.get(name);
    }

    /** @return every command in registration order (a snapshot). */
    public synchronized List<QmpCommand> commands()
    {
        return new ArrayList<>(commands.values());
    }
}
