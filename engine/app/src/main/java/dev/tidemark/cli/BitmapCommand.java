package dev.tidemark.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import dev.tidemark.bitmap.BitmapArgumentException;
import dev.tidemark.bitmap.BitmapError;
import dev.tidemark.bitmap.BitmapFileDescriptor;
import dev.tidemark.bitmap.BitmapFileException;
import dev.tidemark.bitmap.MappedBitmap;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code tidemark bitmap}: create, mark, inspect, verify and dump bitmap files, and generate a sample;
 * each invocation runs on the calling thread only.
 */
@Command(
    name = "bitmap",
    mixinStandardHelpOptions = true,
    description = "Create, mark, inspect, verify and dump persistent dirty bitmap files.",
    subcommands = {
        BitmapCommand.Create.class,
        BitmapCommand.Mark.class,
        BitmapCommand.Inspect.class,
        BitmapCommand.Verify.class,
        BitmapCommand.Dump.class,
        BitmapCommand.Sample.class,
    })
public final class BitmapCommand implements Callable<Integer>
{
    @Spec
    CommandSpec spec;

    @Override
    public Integer call()
    {
        spec.commandLine().getErr().println(
            "tidemark bitmap: missing subcommand: one of create, mark, inspect, verify, dump, sample");
        spec.commandLine().usage(spec.commandLine().getErr());
        return TidemarkMain.EXIT_USAGE;
    }

    /** Parses sizes like {@code 4096}, {@code 64K}, {@code 1M}, {@code 10G}, {@code 2T}, {@code 1GiB}; stateless. */
    static final class SizeConverter implements CommandLine.ITypeConverter<Long>
    {
        @Override
        public Long convert(final String value)
        {
            return parseSize(value);
        }
    }

    static long parseSize(final String text)
    {
        final String value = text.trim().toUpperCase(Locale.ROOT).replace("IB", "").replace("B", "");
        if (value.isEmpty())
        {
            throw new CommandLine.TypeConversionException("'" + text + "' is not a size");
        }
        final char unit = value.charAt(value.length() - 1);
        final int shift = "KMGTP".indexOf(unit) + 1;
        final String digits = shift > 0 ? value.substring(0, value.length() - 1) : value;
        final long number;
        try
        {
            number = Long.parseLong(digits);
        }
        catch (final NumberFormatException ex)
        {
            throw new CommandLine.TypeConversionException("'" + text + "' is not a size (examples: 4096, 64K, 10G)");
        }
        if (number < 0)
        {
            throw new CommandLine.TypeConversionException("size '" + text + "' is negative");
        }
        if (shift > 0 && number > (Long.MAX_VALUE >>> (10 * shift)))
        {
            throw new CommandLine.TypeConversionException("size '" + text + "' is too large");
        }
        return number << (10 * shift);
    }

    /** Common plumbing: output streams and the mapping of errors to exit codes; confined to one invocation. */
    abstract static class BitmapSubcommand implements Callable<Integer>
    {
        @Spec
        CommandSpec spec;

        PrintWriter out()
        {
            return spec.commandLine().getOut();
        }

        PrintWriter err()
        {
            return spec.commandLine().getErr();
        }

        @Override
        public final Integer call()
        {
            try
            {
                return execute();
            }
            catch (final BitmapFileException | BitmapArgumentException | CommandLine.ParameterException ex)
            {
                err().println("tidemark bitmap " + spec.name() + ": " + ex.getMessage());
                return TidemarkMain.EXIT_USAGE;
            }
            catch (final NoSuchFileException ex)
            {
                err().println("tidemark bitmap " + spec.name() + ": " + ex.getFile() + ": no such file");
                return TidemarkMain.EXIT_USAGE;
            }
            catch (final IOException ex)
            {
                err().println("tidemark bitmap " + spec.name() + ": I/O error: " + ex);
                return TidemarkMain.EXIT_ERROR;
            }
        }

        abstract int execute() throws IOException;

        /** Prints a {@link #describe} report as aligned {@code key: value} lines. */
        void printReport(final Map<String, Object> report)
        {
            for (final Map.Entry<String, Object> entry : report.entrySet())
            {
                out().printf("%-22s %s%n", entry.getKey() + ":", entry.getValue());
            }
        }
    }

    /** A subcommand on one existing bitmap file, the first parameter; confined to one invocation. */
    abstract static class ExistingFileSubcommand extends BitmapSubcommand
    {
        @Parameters(index = "0", paramLabel = "FILE", description = "The bitmap file.")
        Path file;
    }

    /** A subcommand that prints what it finds in one bitmap file as text or JSON; confined to one invocation. */
    abstract static class ReportSubcommand extends ExistingFileSubcommand
    {
        @Option(names = "--json", description = "Print JSON instead of text.")
        boolean json;
    }

    /** {@code create}. */
    @Command(name = "create", mixinStandardHelpOptions = true, description = "Create a new, clean bitmap file.")
    static final class Create extends BitmapSubcommand
    {
        @Parameters(index = "0", paramLabel = "FILE", description = "The bitmap file to create (must not exist).")
        Path file;

        @Option(names = "--name", required = true, description = "Bitmap name, 1..1023 bytes of UTF-8.")
        String name;

        @Option(names = "--size", required = true, converter = SizeConverter.class,
            description = "Size of the tracked disk (e.g. 10G).")
        long size;

        @Option(names = "--granularity", defaultValue = "64K", converter = SizeConverter.class,
            description = "Bytes per chunk, a power of two in 512..2G (default ${DEFAULT-VALUE}).")
        long granularity;

        @Option(names = "--durable", description = "Create in durable mode (trusted even after a power loss).")
        boolean durable;

        @Override
        int execute() throws IOException
        {
            try (MappedBitmap bitmap = MappedBitmap.create(file, name, size, granularity))
            {
                if (durable)
                {
                    bitmap.setDurable(true);
                }
                out().printf("created %s: name '%s', disk size %d, granularity %d, %d chunks%s%n",
                    file, name, size, granularity, bitmap.chunkCount(), durable ? ", durable" : "");
            }
            return TidemarkMain.EXIT_OK;
        }
    }

    /** {@code mark}. */
    @Command(name = "mark", mixinStandardHelpOptions = true,
        description = "Mark byte ranges dirty (OFFSET:LENGTH, sizes may use K/M/G) and close cleanly.")
    static final class Mark extends ExistingFileSubcommand
    {
        @Parameters(index = "1..*", arity = "1..*", paramLabel = "OFFSET:LENGTH", description = "Ranges to mark.")
        List<String> ranges;

        @Override
        int execute() throws IOException
        {
            final List<long[]> parsed = new ArrayList<>();
            for (final String range : ranges)
            {
                final int colon = range.indexOf(':');
                if (colon <= 0 || colon == range.length() - 1)
                {
                    throw new CommandLine.ParameterException(spec.commandLine(),
                        "range '" + range + "' must be OFFSET:LENGTH, for example 1M:64K");
                }
                try
                {
                    parsed.add(new long[] {parseSize(range.substring(0, colon)), parseSize(range.substring(colon + 1))});
                }
                catch (final CommandLine.TypeConversionException ex)
                {
                    throw new CommandLine.ParameterException(spec.commandLine(), "range '" + range + "': " + ex.getMessage());
                }
            }
            try (MappedBitmap bitmap = MappedBitmap.open(file))
            {
                long gained = 0;
                for (final long[] range : parsed)
                {
                    if (bitmap.mark(range[0], range[1]))
                    {
                        gained++;
                    }
                }
                bitmap.force();
                out().printf("marked %d range(s), %d set new bits; %d dirty chunks (%d bytes)%n",
                    parsed.size(), gained, bitmap.dirtyChunkCount(), bitmap.dirtyByteCount());
            }
            return TidemarkMain.EXIT_OK;
        }
    }

    /** {@code inspect}. */
    @Command(name = "inspect", mixinStandardHelpOptions = true,
        description = "Print the header, the trust state, dirty counts and an extent summary (read-only).")
    static final class Inspect extends ReportSubcommand
    {
        @Override
        int execute() throws IOException
        {
            try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
            {
                final Map<String, Object> report = describe(bitmap);
                if (json)
                {
                    out().println(toJson(report));
                }
                else
                {
                    printReport(report);
                }
            }
            return TidemarkMain.EXIT_OK;
        }
    }

    static Map<String, Object> describe(final MappedBitmap bitmap)
    {
        final Map<String, Object> report = new LinkedHashMap<>();
        report.put("file", String.valueOf(bitmap.file()));
        report.put("name", bitmap.name());
        report.put("format-version", bitmap.formatVersion());
        report.put("disk-size", bitmap.diskSize());
        report.put("granularity", bitmap.granularity());
        report.put("chunks", bitmap.chunkCount());
        report.put("words", bitmap.wordCount());
        final int flags = bitmap.headerFlags();
        final List<String> flagNames = new ArrayList<>();
        if ((flags & BitmapFileDescriptor.FLAG_IN_USE) != 0)
        {
            flagNames.add("in-use");
        }
        if ((flags & BitmapFileDescriptor.FLAG_INCONSISTENT) != 0)
        {
            flagNames.add("inconsistent");
        }
        if ((flags & BitmapFileDescriptor.FLAG_DURABLE) != 0)
        {
            flagNames.add("durable");
        }
        report.put("flags", flagNames);
        report.put("state", bitmap.openState().name().toLowerCase(Locale.ROOT).replace('_', '-'));
        report.put("trusted", bitmap.openState().isTrusted());
        report.put("generation", bitmap.generation());
        report.put("created", Instant.ofEpochMilli(bitmap.creationTimeMillis()).toString());
        report.put("last-open", bitmap.openTimeMillis() == 0 ? "never" : Instant.ofEpochMilli(bitmap.openTimeMillis()).toString());
        report.put("last-clean-close",
            bitmap.lastCleanCloseMillis() == 0 ? "never" : Instant.ofEpochMilli(bitmap.lastCleanCloseMillis()).toString());
        report.put("boot-id-at-open", String.valueOf(bitmap.bootIdAtOpen()));
        report.put("dirty-chunks", bitmap.dirtyChunkCount());
        report.put("count", bitmap.dirtyByteCount());
        final long[] extents = {0, 0, -1};
        bitmap.forEachDirtyExtent(0, bitmap.diskSize(), (offset, length) ->
        {
            extents[0]++;
            if (length > extents[1])
            {
                extents[1] = length;
                extents[2] = offset;
            }
            return true;
        });
        report.put("dirty-extents", extents[0]);
        report.put("largest-extent", extents[2] < 0 ? "none" : extents[1] + " bytes at offset " + extents[2]);
        report.put("first-dirty", bitmap.nextDirty(0));
        report.put("sha256", HexFormat.of().formatHex(bitmap.sha256()));
        return report;
    }

    static String toJson(final Object value)
    {
        try
        {
            return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(value);
        }
        catch (final JsonProcessingException ex)
        {
            throw new IllegalStateException("cannot render a report of plain values as JSON", ex);
        }
    }

    /** {@code verify}. */
    @Command(name = "verify", mixinStandardHelpOptions = true,
        description = "Check the header (magic, version, CRC32C, sizes), padding and the summary against the data; "
            + "exit 1 on a problem.")
    static final class Verify extends ExistingFileSubcommand
    {
        @Override
        int execute() throws IOException
        {
            if (!Files.isRegularFile(file))
            {
                err().println("tidemark bitmap verify: " + file + ": no such file");
                return TidemarkMain.EXIT_USAGE;
            }
            final List<String> problems = new ArrayList<>();
            try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
            {
                problems.addAll(bitmap.checkConsistency());
                if (!bitmap.openState().isTrusted())
                {
                    problems.add("the bits are not trusted: state " + bitmap.openState() +
                        " (left in use by another boot in lazy mode, or marked inconsistent)");
                }
            }
            catch (final BitmapFileException ex)
            {
                if (ex.error() == BitmapError.LOCKED)
                {
                    throw ex;
                }
                problems.add(ex.getMessage());
            }
            if (problems.isEmpty())
            {
                out().println("OK " + file + ": header checksum, layout, padding and summary are consistent");
                return TidemarkMain.EXIT_OK;
            }
            for (final String problem : problems)
            {
                out().println("FAIL " + problem);
            }
            return TidemarkMain.EXIT_CHECK_FAILED;
        }
    }

    /** {@code dump}. */
    @Command(name = "dump", mixinStandardHelpOptions = true,
        description = "Print the dirty extents (offset length per line, or --json).")
    static final class Dump extends ReportSubcommand
    {
        @Option(names = "--offset", defaultValue = "0", converter = SizeConverter.class, description = "Start of the range.")
        long offset;

        @Option(names = "--length", converter = SizeConverter.class, description = "Length of the range (default: to the end).")
        Long length;

        @Override
        int execute() throws IOException
        {
            try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
            {
                final long span = length == null ? Math.max(0, bitmap.diskSize() - offset) : length;
                final List<long[]> extents = new ArrayList<>();
                bitmap.forEachDirtyExtent(offset, span, (o, l) ->
                {
                    extents.add(new long[] {o, l});
                    return true;
                });
                if (json)
                {
                    final Map<String, Object> report = new LinkedHashMap<>();
                    report.put("name", bitmap.name());
                    report.put("disk-size", bitmap.diskSize());
                    report.put("granularity", bitmap.granularity());
                    report.put("trusted", bitmap.openState().isTrusted());
                    final List<Map<String, Long>> list = new ArrayList<>();
                    for (final long[] extent : extents)
                    {
                        final Map<String, Long> item = new LinkedHashMap<>();
                        item.put("offset", extent[0]);
                        item.put("length", extent[1]);
                        list.add(item);
                    }
                    report.put("extents", list);
                    out().println(toJson(report));
                }
                else
                {
                    for (final long[] extent : extents)
                    {
                        out().println(extent[0] + " " + extent[1]);
                    }
                }
            }
            return TidemarkMain.EXIT_OK;
        }
    }

    /** {@code sample}. */
    @Command(name = "sample", mixinStandardHelpOptions = true,
        description = "Generate DIR/sample.tmbm with a pseudo-random guest write pattern, then inspect and verify it.")
    static final class Sample extends BitmapSubcommand
    {
        @Parameters(index = "0", paramLabel = "DIR", description = "Directory for the sample (created if missing).")
        Path dir;

        @Option(names = "--size", defaultValue = "64G", converter = SizeConverter.class,
            description = "Disk size (default ${DEFAULT-VALUE}).")
        long size;

        @Option(names = "--granularity", defaultValue = "64K", converter = SizeConverter.class,
            description = "Bytes per chunk (default ${DEFAULT-VALUE}).")
        long granularity;

        @Option(names = "--writes", defaultValue = "200000", description = "Guest writes to simulate (default ${DEFAULT-VALUE}).")
        int writes;

        @Option(names = "--seed", defaultValue = "42", description = "Random seed (default ${DEFAULT-VALUE}).")
        long seed;

        @Override
        int execute() throws IOException
        {
            if (writes < 0)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--writes must not be negative");
            }
            if (size < 1L << 20)
            {
                throw new CommandLine.ParameterException(spec.commandLine(), "--size must be at least 1M for a sample");
            }
            Files.createDirectories(dir);
            final Path file = dir.resolve("sample.tmbm");
            Files.deleteIfExists(file);
            final SplittableRandom random = new SplittableRandom(seed);
            final long started = System.nanoTime();
            try (MappedBitmap bitmap = MappedBitmap.create(file, "sample", size, granularity))
            {
                // A guest-like mix: a few hot spots (metadata, logs), sequential streams, scattered random writes.
                final long[] hotSpots = new long[8];
                for (int i = 0; i < hotSpots.length; i++)
                {
                    hotSpots[i] = random.nextLong(size - (1L << 20));
                }
                long stream = random.nextLong(size / 2);
                for (int i = 0; i < writes; i++)
                {
                    final int kind = random.nextInt(100);
                    final long offset;
                    final long length;
                    if (kind < 50)
                    {
                        offset = hotSpots[random.nextInt(hotSpots.length)] + random.nextLong(1L << 20);
                        length = 4096;
                    }
                    else if (kind < 80)
                    {
                        offset = stream;
                        length = 128 * 1024;
                        stream = stream + length >= size ? 0 : stream + length;
                    }
                    else
                    {
                        offset = random.nextLong(size);
                        length = 4096 * (1 + random.nextInt(16));
                    }
                    bitmap.mark(offset, Math.min(length, size - offset));
                }
                bitmap.force();
            }
            final double millis = (System.nanoTime() - started) / 1e6;
            out().printf("sample: %d simulated writes (seed %d) into %s in %.1f ms%n%n", writes, seed, file, millis);
            try (MappedBitmap bitmap = MappedBitmap.openReadOnly(file))
            {
                printReport(describe(bitmap));
                final List<String> problems = bitmap.checkConsistency();
                out().println();
                out().println(problems.isEmpty() ? "verify: OK" : "verify: FAIL " + problems);
                return problems.isEmpty() ? TidemarkMain.EXIT_OK : TidemarkMain.EXIT_CHECK_FAILED;
            }
        }
    }
}
