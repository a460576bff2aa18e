package dev.tidemark.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code tidemark bitmap} through {@link TidemarkMain#run}: output and exit codes; single-threaded (swaps System.out). */
class BitmapCommandTest
{
    @TempDir
    Path dir;

    private String out;
    private String err;

    private int run(final String... args)
    {
        final CliRun run = CliRun.of(args);
        out = run.out();
        err = run.err();
        return run.exit();
    }

    @Test
    void createMarkInspectDumpVerify() throws Exception
    {
        final String file = dir.resolve("b.tmbm").toString();
        assertThat(run("bitmap", "create", file, "--name", "disk0", "--size", "1G", "--granularity", "64K")).isZero();
        assertThat(out).contains("16384 chunks");
        assertThat(run("bitmap", "mark", file, "0:1", "1M:128K", "1M:64K")).isZero();
        assertThat(out).contains("marked 3 range(s), 2 set new bits; 3 dirty chunks (196608 bytes)");
        assertThat(run("bitmap", "inspect", file)).isZero();
        assertThat(out).contains("name:", "disk0", "state:", "clean", "dirty-chunks:          3", "dirty-extents:         2",
            "generation:            2");
        assertThat(run("bitmap", "dump", file)).isZero();
        assertThat(out).isEqualTo("0 65536\n1048576 131072\n");
        assertThat(run("bitmap", "dump", file, "--offset", "1M", "--length", "64K")).isZero();
        assertThat(out).isEqualTo("1048576 65536\n");
        assertThat(run("bitmap", "dump", file, "--json")).isZero();
        final JsonNode json = new ObjectMapper().readTree(out);
        assertThat(json.get("extents")).hasSize(2);
        assertThat(json.get("extents").get(1).get("offset").asLong()).isEqualTo(1048576);
        assertThat(run("bitmap", "inspect", "--json", file)).isZero();
        assertThat(new ObjectMapper().readTree(out).get("count").asLong()).isEqualTo(196608);
        assertThat(run("bitmap", "verify", file)).isZero();
        assertThat(out).startsWith("OK");
    }

    @Test
    void corruptHeaderFailsVerifyAndIsBadInputForInspect() throws Exception
    {
        final Path file = dir.resolve("c.tmbm");
        assertThat(run("bitmap", "create", file.toString(), "--name", "c", "--size", "10M")).isZero();
        final byte[] before = Files.readAllBytes(file);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw"))
        {
            raf.seek(2000);
            raf.write(7);
        }
        assertThat(run("bitmap", "verify", file.toString())).isEqualTo(TidemarkMain.EXIT_CHECK_FAILED);
        assertThat(out).contains("FAIL", "CRC32C", "BAD_CHECKSUM");
        assertThat(run("bitmap", "inspect", file.toString())).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("CRC32C");
        assertThat(Files.readAllBytes(file)).hasSameSizeAs(before);
    }

    @Test
    void badArgumentsAreUsageErrors()
    {
        final String file = dir.resolve("d.tmbm").toString();
        assertThat(run("bitmap")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("missing subcommand");
        assertThat(run("bitmap", "create", file, "--name", "d", "--size", "ten")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("'ten' is not a size");
        assertThat(run("bitmap", "create", file, "--name", "d", "--size", "1G", "--granularity", "3000"))
            .isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("granularity 3000");
        assertThat(run("bitmap", "create", file, "--name", "", "--size", "1G")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("name cannot be empty");
        assertThat(run("bitmap", "create", file, "--name", "d", "--size", "1M")).isZero();
        assertThat(run("bitmap", "create", file, "--name", "d", "--size", "1M")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("already exists");
        assertThat(run("bitmap", "mark", file, "2M:1")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("beyond the disk");
        assertThat(run("bitmap", "mark", file, "12")).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("OFFSET:LENGTH");
        assertThat(run("bitmap", "inspect", dir.resolve("missing.tmbm").toString())).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(err).contains("no such file");
        assertThat(run("bitmap", "verify", dir.resolve("missing.tmbm").toString())).isEqualTo(TidemarkMain.EXIT_USAGE);
    }

    @Test
    void sampleGeneratesInspectsAndVerifies()
    {
        assertThat(run("bitmap", "sample", dir.toString(), "--size", "4G", "--writes", "20000", "--seed", "7")).isZero();
        assertThat(out).contains("sample: 20000 simulated writes (seed 7)", "dirty-chunks:", "verify: OK");
        assertThat(dir.resolve("sample.tmbm")).exists();
    }
}
