package dev.tidemark.bench;

import dev.tidemark.engine.JvmFlags;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.CommandLineOptionException;
import org.openjdk.jmh.runner.options.CommandLineOptions;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * Runs JMH with the JVM flags from the root pom appended to every fork; main thread only.
 *
 * <p>Takes JMH's own command line ({@code java -jar bench/target/benchmarks.jar -h}).
 */
public final class BenchMain
{
    private BenchMain()
    {
    }

    /**
     * @param args JMH command-line arguments.
     * @throws RunnerException if a benchmark fails.
     * @throws CommandLineOptionException if the arguments are not JMH's.
     */
    public static void main(final String[] args) throws RunnerException, CommandLineOptionException
    {
        final CommandLineOptions commandLine = new CommandLineOptions(args);
        final OptionsBuilder options = new OptionsBuilder();
        options.parent(commandLine)
            .jvmArgsAppend(JvmFlags.forThisJava().toArray(new String[0]))
            .shouldFailOnError(true);
        new Runner(options.build()).run();
    }
}
