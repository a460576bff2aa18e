package dev.tidemark.cli;

import dev.tidemark.engine.torture.TortureHarness;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code tidemark torture}: the process-crash torture for long runs (SIGKILL cycles against a child engine); runs on
 * the calling thread, which spawns and kills the children.
 */
@Command(
    name = "torture",
    mixinStandardHelpOptions = true,
    description = "Kill a child engine under a write storm with rotations, backups and fleecing, reopen, check.")
public final class TortureCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Option(names = "--cycles", defaultValue = "1000", description = "kill cycles (default ${DEFAULT-VALUE})")
    int cycles;

    @Option(names = "--seed", description = "the run's seed (default: time based, printed)")
    Long seed;

    @Option(names = "--dir", description = "work directory (default: a new temporary directory)")
    Path dir;

    @Option(names = "--size", defaultValue = "32M", converter = BitmapCommand.SizeConverter.class,
        description = "disk size, a multiple of 64K (default ${DEFAULT-VALUE})")
    long size;

    @Option(names = "--writers", defaultValue = "3", description = "writer threads in the child (default ${DEFAULT-VALUE})")
    int writers;

    @Option(names = "--min-run-ms", defaultValue = "200", description = "shortest child run before the kill")
    long minRun;

    @Option(names = "--max-run-ms", defaultValue = "900", description = "longest child run before the kill")
    long maxRun;

    @Option(names = "--no-chain", description = "incrementals without qcow2 backing files")
    boolean noChain;

    @Option(names = "--quiet", description = "no line per cycle")
    boolean quiet;

    @Override
    public Integer call() throws Exception
    {
        final long runSeed = seed != null ? seed : System.nanoTime();
        final TortureHarness.Settings settings;
        try
        {
            // Nothing is created before the arguments are checked; the harness creates the directory.
            settings = new TortureHarness.Settings(dir != null ? dir : Path.of(System.getProperty("java.io.tmpdir"),
                "tidemark-torture-" + runSeed + "-" + System.nanoTime()),
                cycles, runSeed, writers, size, minRun, maxRun, !noChain, quiet ? null : System.out);
        }
        catch (final IllegalArgumentException ex)
        {
            spec.commandLine().getErr().println("tidemark torture: " + ex.getMessage());
            return TidemarkMain.EXIT_USAGE;
        }
        spec.commandLine().getOut().println("torture: seed " + runSeed + ", work directory " + settings.work());
        spec.commandLine().getOut().flush();
        final TortureHarness.Report report = new TortureHarness(settings).run();
        spec.commandLine().getOut().println("torture: " + report);
        for (final String failure : report.failures)
        {
            spec.commandLine().getOut().println("FAILED: " + failure);
        }
        return report.failures.isEmpty() ? TidemarkMain.EXIT_OK : TidemarkMain.EXIT_CHECK_FAILED;
    }
}
