package dev.tidemark.engine;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;

/**
 * The JVM flags Tidemark's libraries need, as the root pom defines them; stateless and thread-safe.
 *
 * <p>The build filters them into {@code jvm-flags.properties}; child JVMs (JMH forks, torture
 * children, test children) take them from here so that the flags are written down once, and
 * {@link #javaCommand} is the one place that builds a child JVM's command line.
 */
public final class JvmFlags
{
    private JvmFlags()
    {
    }

    /**
     * @param javaFeatureVersion the feature version of the JVM that will run, for example 17 or 25.
     * @return the flags for that JVM, in order.
     */
    public static List<String> forJava(final int javaFeatureVersion)
    {
        final Properties properties = properties();
        final List<String> flags = new ArrayList<>(split(properties.getProperty("base", "")));
        if (javaFeatureVersion >= 23)
        {
            flags.addAll(split(properties.getProperty("jdk23", "")));
        }
        return Collections.unmodifiableList(flags);
    }

    /** @return the flags for the running JVM. */
    public static List<String> forThisJava()
    {
        return forJava(Runtime.version().feature());
    }

    /**
     * The flags {@code tidemark serve} runs with, as the launcher gives them: {@link #forThisJava()} and
     * {@link #collector}.
     *
     * @param otherOptions options the caller adds after these.
     * @return the flags, in order.
     */
    public static List<String> forDaemon(final List<String> otherOptions)
    {
        final List<String> flags = new ArrayList<>(forThisJava());
        flags.addAll(collector(otherOptions));
        return Collections.unmodifiableList(flags);
    }

    /**
     * @param otherOptions options the caller adds to a daemon's command line.
     * @return the garbage collector the root pom names for {@code tidemark serve} (its {@code tidemark.jvm.gc}), or
     *         nothing when {@code otherOptions} or this JVM's own options already choose one: two collectors are a
     *         start-up error, and an explicit choice wins (A/B runs).
     */
    public static List<String> collector(final List<String> otherOptions)
    {
        final boolean chosen = otherOptions.stream().anyMatch(JvmFlags::choosesCollector)
            || ManagementFactory.getRuntimeMXBean().getInputArguments().stream().anyMatch(JvmFlags::choosesCollector);
        return chosen ? List.of() : split(properties().getProperty("gc", ""));
    }

    /** @return whether a JVM option selects a garbage collector ({@code -XX:+UseZGC}, {@code -XX:+UseG1GC}, ...). */
    static boolean choosesCollector(final String option)
    {
        return option.startsWith("-XX:+Use") && option.endsWith("GC");
    }

    /**
     * A command line for a child JVM that runs this JVM's classes: {@code java} of this JVM, the flags for it, this
     * JVM's other options (not debug agents, nor options with whitespace, which a command joined into one shell line
     * could not carry), {@code jvmOptions}, this classpath, {@code mainClass} and {@code arguments}.
     *
     * @param mainClass the class whose {@code main} the child runs.
     * @param jvmOptions further options for the child (heap size, system properties), after this JVM's.
     * @param arguments the child's program arguments.
     * @return the command, modifiable.
     */
    public static List<String> javaCommand(final String mainClass, final List<String> jvmOptions,
        final String... arguments)
    {
        final List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        final List<String> flags = forThisJava();
        command.addAll(flags);
        for (final String option : ManagementFactory.getRuntimeMXBean().getInputArguments())
        {
            if (!flags.contains(option) && !option.startsWith("-agentlib") && !option.startsWith("-javaagent")
                && !option.startsWith("-Xrunjdwp") && option.chars().noneMatch(Character::isWhitespace))
            {
                command.add(option);
            }
        }
        command.addAll(jvmOptions);
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(mainClass);
        command.addAll(List.of(arguments));
        return command;
    }

    private static Properties properties()
    {
        final Properties properties = new Properties();
        try (InputStream in = JvmFlags.class.getResourceAsStream("/jvm-flags.properties"))
        {
            if (in == null)
            {
                throw new IllegalStateException("jvm-flags.properties is missing from the classpath");
            }
            properties.load(in);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
        return properties;
    }

    private static List<String> split(final String value)
    {
        final List<String> parts = new ArrayList<>();
        for (final String part : value.trim().split("\\s+"))
        {
            if (!part.isEmpty())
            {
                parts.add(part);
            }
        }
        return parts;
    }
}
