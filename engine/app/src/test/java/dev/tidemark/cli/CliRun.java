package dev.tidemark.cli;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * One in-process run of {@code tidemark ARGS} with its standard output and error captured; runs on the calling
 * thread, which must be the only one printing meanwhile (it swaps {@code System.out} and {@code System.err}).
 *
 * @param exit the exit code.
 * @param out what it printed on standard output.
 * @param err what it printed on standard error.
 */
record CliRun(int exit, String out, String err)
{
    /** @return the outcome of {@code tidemark ARGS}. */
    static CliRun of(final String... args)
    {
        final PrintStream oldOut = System.out;
        final PrintStream oldErr = System.err;
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        final ByteArrayOutputStream err = new ByteArrayOutputStream();
        final int exit;
        try
        {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            exit = TidemarkMain.run(args);
        }
        finally
        {
            System.out.flush();
            System.err.flush();
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        return new CliRun(exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }
}
