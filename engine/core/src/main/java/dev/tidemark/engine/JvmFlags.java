package dev.tidemark.engine;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;

/**
 * The JVM flags Tidemark's libraries need, as the root pom defines them; stateless and thread-safe.
 *
 * <p>The build filters them into {@code jvm-flags.properties}; child JVMs (JMH forks, torture
 * children) take them from here so that the flags are written down once.
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
