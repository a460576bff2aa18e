package dev.tidemark.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * Entry point of the {@code tidemark} command line; runs on the main thread only.
 *
 * <p>Exit codes scripts can rely on: 0 success, 1 a check found a problem (verify, compare),
 * 2 bad usage or bad input, 3 an I/O or internal error.
 */
@Command(
    name = "tidemark",
    mixinStandardHelpOptions = true,
    versionProvider = TidemarkMain.Version.class,
    description = "Write tracking and incremental backup for virtual disks.",
    subcommands = {
        CommandLine.HelpCommand.class,
        BitmapCommand.class,
        QmpCli.class,
        DemoCommand.class,
        ServeCommand.class,
        BackupCommand.class,
        TortureCommand.class,
    })
public final class TidemarkMain
{
    /** Success. */
    public static final int EXIT_OK = 0;
    /** A verification found a problem. */
    public static final int EXIT_CHECK_FAILED = 1;
    /** Bad usage or bad input. */
    public static final int EXIT_USAGE = 2;
    /** I/O or internal error. */
    public static final int EXIT_ERROR = 3;

    private TidemarkMain()
    {
    }

    /**
     * Runs the command line and returns its exit code, without exiting; tests call this.
     *
     * @param args command-line arguments.
     * @return the exit code.
     */
    public static int run(final String... args)
    {
        final CommandLine commandLine = new CommandLine(new TidemarkMain());
        commandLine.setExitCodeExceptionMapper(ex -> ex instanceof CommandLine.ParameterException ? EXIT_USAGE : EXIT_ERROR);
        return commandLine.execute(args);
    }

    /**
     * Process entry point.
     *
     * @param args command-line arguments.
     */
    public static void main(final String[] args)
    {
        System.exit(run(args));
    }

    /** Reports the build's version; stateless. */
    static final class Version implements CommandLine.IVersionProvider
    {
        @Override
        public String[] getVersion()
        {
            final String version = TidemarkMain.class.getPackage().getImplementationVersion();
            return new String[] {"tidemark " + (version == null ? "development build" : version)};
        }
    }
}
