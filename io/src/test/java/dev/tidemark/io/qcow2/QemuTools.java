package dev.tidemark.io.qcow2;

import dev.tidemark.io.testing.ExternalTools;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/** Stateless, safe from any thread: runs QEMU's tools for interop tests; a missing tool fails the test. */
final class QemuTools
{
    private static final Pattern MAP_ENTRY = Pattern.compile(
        "\"start\": (\\d+), \"length\": (\\d+),.*?\"zero\": (true|false), \"data\": (true|false)");

    private QemuTools()
    {
    }

    /** The outcome of one tool run. */
    record Result(int exitCode, String stdout, String stderr)
    {
        String all()
        {
            return stdout + stderr;
        }
    }

    /** One merged extent of {@code qemu-img map}: data and zero as QEMU reports them. */
    record MapExtent(long start, long length, boolean data, boolean zero)
    {
    }

    /** Runs a tool (found by {@link ExternalTools}) for at most 60 s, whatever its exit status. */
    static Result run(final String tool, final String... args) throws IOException, InterruptedException
    {
        final List<String> command = new ArrayList<>();
        command.add(tool);
        command.addAll(List.of(args));
        final ExternalTools.Result result = ExternalTools.runAllowingFailure(60, command.toArray(String[]::new));
        return new Result(result.exit(), result.out(), result.err());
    }

    /** Runs a tool and asserts exit 0. */
    static Result ok(final String tool, final String... args) throws IOException, InterruptedException
    {
        final Result result = run(tool, args);
        assertThat(result.exitCode()).as("%s %s failed:%n%s", tool, String.join(" ", args), result.all()).isZero();
        return result;
    }

    /** Asserts that {@code qemu-img check} finds no errors and no leaks. */
    static void check(final Path image) throws IOException, InterruptedException
    {
        final Result result = run("qemu-img", "check", image.toString());
        assertThat(result.exitCode()).as("qemu-img check %s:%n%s", image, result.all()).isZero();
        assertThat(result.stdout()).as("qemu-img check %s", image).contains("No errors were found")
            .doesNotContain("leaked");
    }

    /** Asserts that {@code qemu-img compare} finds {@code image} (through its chain) equal to a raw file. */
    static void compare(final Path image, final Path raw) throws IOException, InterruptedException
    {
        final Result result = run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", image.toString(),
            raw.toString());
        assertThat(result.exitCode()).as("qemu-img compare %s %s:%n%s", image, raw, result.all()).isZero();
        assertThat(result.stdout()).contains("Images are identical");
    }

    /** @return the guest bytes as {@code qemu-img convert -O raw} produces them. */
    static byte[] convertToRaw(final Path image, final Path scratchDir) throws IOException, InterruptedException
    {
        final Path out = Files.createTempFile(scratchDir, "converted", ".raw");
        Files.delete(out);
        ok("qemu-img", "convert", "-O", "raw", image.toString(), out.toString());
        final byte[] bytes = Files.readAllBytes(out);
        Files.delete(out);
        return bytes;
    }

    /** @return {@code qemu-img map --output=json}, with neighbours of equal data/zero merged. */
    static List<MapExtent> map(final Path image) throws IOException, InterruptedException
    {
        final Result result = ok("qemu-img", "map", "--output=json", image.toString());
        final List<MapExtent> merged = new ArrayList<>();
        final Matcher matcher = MAP_ENTRY.matcher(result.stdout());
        while (matcher.find())
        {
            final MapExtent next = new MapExtent(Long.parseLong(matcher.group(1)), Long.parseLong(matcher.group(2)),
                Boolean.parseBoolean(matcher.group(4)), Boolean.parseBoolean(matcher.group(3)));
            final int last = merged.size() - 1;
            if (last >= 0 && merged.get(last).data() == next.data() && merged.get(last).zero() == next.zero())
            {
                final MapExtent previous = merged.get(last);
                merged.set(last, new MapExtent(previous.start(), previous.length() + next.length(), next.data(),
                    next.zero()));
            }
            else
            {
                merged.add(next);
            }
        }
        assertThat(merged).as("qemu-img map output:%n%s", result.stdout()).isNotEmpty();
        return merged;
    }
}
