package dev.tidemark.cli;

import com.fasterxml.jackson.databind.ObjectMapper;

import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.qcow2.Qcow2Reader;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code tidemark backup restore|verify}: turn a qcow2 backup chain back into a raw image, or compare a chain with
 * a raw image or an NBD export byte for byte; each invocation runs on the calling thread only.
 */
@Command(
    name = "backup",
    mixinStandardHelpOptions = true,
    description = "Restore and verify qcow2 backup chains.",
    subcommands = {BackupCommand.Restore.class, BackupCommand.Verify.class})
final class BackupCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Override
    public Integer call()
    {
        spec.commandLine().getErr().println("tidemark backup: missing subcommand: one of restore, verify");
        spec.commandLine().usage(spec.commandLine().getErr());
        return TidemarkMain.EXIT_USAGE;
    }

    private static int fail(final String message, final int code)
    {
        System.err.println("tidemark backup: " + message);
        return code;
    }

    private static void print(final boolean json, final Map<String, Object> report, final String text)
        throws IOException
    {
        if (json)
        {
            System.out.println(new ObjectMapper().writeValueAsString(report));
        }
        else
        {
            System.out.println(text);
        }
    }

    /** What restore and verify share: the chain and how to report; picocli fills it on the calling thread. */
    abstract static class ChainCommand implements Callable<Integer>
    {
        @Parameters(arity = "1..*", paramLabel = "CHAIN", description = "qcow2 images: the top one, or base..top.")
        List<Path> chain;

        @Option(names = "--json", description = "Print the result as one JSON object.")
        boolean json;

        @Option(names = "--no-progress", description = "Never draw a progress bar.")
        boolean noProgress;
    }

    /** {@code tidemark backup restore CHAIN... --to FILE}; confined to the calling thread. */
    @Command(
        name = "restore",
        mixinStandardHelpOptions = true,
        description = {
            "Write the disk a backup chain describes into a new sparse raw file.",
            "CHAIN is the top image alone (backing files are followed) or every image, base first."})
    static final class Restore extends ChainCommand
    {
        @Option(names = "--to", required = true, paramLabel = "FILE", description = "New raw image to write.")
        Path to;

        @Option(names = "--force", description = "Replace FILE if it exists.")
        boolean force;

        @Override
        public Integer call() throws IOException
        {
            if (Files.exists(to))
            {
                if (!force)
                {
                    return fail(to + " exists (use --force to replace it)", TidemarkMain.EXIT_USAGE);
                }
                Files.delete(to);
            }
            final long started = System.nanoTime();
            final Map<String, Object> report = new LinkedHashMap<>();
            try (Qcow2Reader top = ChainTools.openChain(chain))
            {
                final long data = ChainTools.restore(top, to,
                    ChainTools.Progress.onTerminal("restore", top.size(), !noProgress));
                final double seconds = (System.nanoTime() - started) / 1e9;
                report.put("chain", ChainTools.describe(top));
                report.put("to", to.toString());
                report.put("size", top.size());
                report.put("data_bytes", data);
                report.put("seconds", Math.round(seconds * 1000) / 1000.0);
                print(json, report, String.format(java.util.Locale.ROOT,
                    "restored %s (%d images) to %s: %d bytes, %d bytes of data, %.2f s",
                    chain.get(chain.size() - 1), ChainTools.describe(top).size(), to, top.size(), data, seconds));
                return TidemarkMain.EXIT_OK;
            }
            catch (final NoSuchFileException ex)
            {
                return fail(ex.getFile() + ": " + (ex.getReason() == null ? "not found" : ex.getReason()),
                    TidemarkMain.EXIT_USAGE);
            }
            catch (final FileAlreadyExistsException ex)
            {
                return fail(ex.getFile() + " exists", TidemarkMain.EXIT_USAGE);
            }
            catch (final IOException | IllegalArgumentException ex)
            {
                Files.deleteIfExists(to);
                return fail(ex.getMessage(), TidemarkMain.EXIT_ERROR);
            }
        }
    }

    /** {@code tidemark backup verify CHAIN... --against RAW|nbd+unix://...}; confined to the calling thread. */
    @Command(
        name = "verify",
        mixinStandardHelpOptions = true,
        description = {
            "Compare a backup chain byte for byte with a raw image or an NBD export.",
            "Exit 0 when equal, 1 at the first difference (printed)."})
    static final class Verify extends ChainCommand
    {
        @Option(names = "--against", required = true, paramLabel = "RAW|URI",
            description = "A raw image file, nbd+unix:///EXPORT?socket=PATH or nbd://HOST[:PORT]/EXPORT.")
        String against;

        @Override
        public Integer call() throws IOException
        {
            final long started = System.nanoTime();
            try (Qcow2Reader top = ChainTools.openChain(chain); BlockStore other = openOther(against))
            {
                final ChainTools.Mismatch mismatch = ChainTools.compare(top, other,
                    ChainTools.Progress.onTerminal("verify", top.size(), !noProgress));
                final Map<String, Object> report = new LinkedHashMap<>();
                report.put("chain", ChainTools.describe(top));
                report.put("against", against);
                report.put("size", top.size());
                report.put("equal", mismatch == null);
                if (mismatch != null)
                {
                    report.put("first_difference", mismatch.offset());
                    report.put("chain_byte", mismatch.expected());
                    report.put("other_byte", mismatch.actual());
                }
                report.put("seconds", Math.round((System.nanoTime() - started) / 1e6) / 1000.0);
                final String text = mismatch == null
                    ? "equal: " + chain.get(chain.size() - 1) + " and " + against + " (" + top.size() + " bytes)"
                    : top.size() != other.size() && mismatch.offset() == Math.min(top.size(), other.size())
                        ? "DIFFERENT: sizes differ (chain " + top.size() + ", other " + other.size() + ")"
                        : "DIFFERENT: first difference at offset " + mismatch.offset() + " (chain byte "
                            + mismatch.expected() + ", other byte " + mismatch.actual() + ")";
                print(json, report, text);
                return mismatch == null ? TidemarkMain.EXIT_OK : TidemarkMain.EXIT_CHECK_FAILED;
            }
            catch (final NoSuchFileException ex)
            {
                return fail(ex.getFile() + ": " + (ex.getReason() == null ? "not found" : ex.getReason()),
                    TidemarkMain.EXIT_USAGE);
            }
            catch (final IOException | IllegalArgumentException ex)
            {
                return fail(ex.getMessage(), TidemarkMain.EXIT_ERROR);
            }
        }

        static BlockStore openOther(final String where) throws IOException
        {
            if (!where.startsWith("nbd"))
            {
                return RawFileStore.open(Path.of(where), RawFileStore.Option.READ_ONLY);
            }
            final URI uri;
            try
            {
                uri = new URI(where);
            }
            catch (final URISyntaxException ex)
            {
                throw new IllegalArgumentException("'" + where + "' is not an NBD URI: " + ex.getMessage(), ex);
            }
            final String export = uri.getPath() == null || uri.getPath().isEmpty() ? "" : uri.getPath().substring(1);
            final NbdClient.Builder builder = NbdClient.builder().exportName(export);
            if ("nbd+unix".equals(uri.getScheme()))
            {
                final String query = uri.getQuery() == null ? "" : uri.getQuery();
                if (!query.startsWith("socket="))
                {
                    throw new IllegalArgumentException("'" + where + "' lacks ?socket=PATH");
                }
                builder.unix(Path.of(query.substring("socket=".length())));
            }
            else if ("nbd".equals(uri.getScheme()))
            {
                builder.tcp(uri.getHost(), uri.getPort() < 0 ? 10809 : uri.getPort());
            }
            else
            {
                throw new IllegalArgumentException("'" + where + "': scheme must be nbd or nbd+unix");
            }
            return builder.connect();
        }
    }
}
