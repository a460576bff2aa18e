package dev.tidemark.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.qcow2.Qcow2Writer;
import dev.tidemark.qmp.QmpJson;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@code tidemark backup restore|verify} and the QSD option parser of {@code tidemark serve}. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BackupCommandTest
{
    private static final long SIZE = 8 << 20;

    @TempDir
    Path dir;
    private Path base;
    private Path top;
    private Path expected;

    @BeforeEach
    void chain() throws Exception
    {
        base = dir.resolve("base.qcow2");
        top = dir.resolve("top.qcow2");
        expected = dir.resolve("expected.raw");
        final SplittableRandom random = new SplittableRandom(42);
        try (RawFileStore raw = RawFileStore.create(expected, SIZE);
            Qcow2Writer b = Qcow2Writer.create(base, SIZE, Qcow2Writer.Options.defaults()))
        {
            for (int i = 0; i < 20; i++)
            {
                final long offset = random.nextLong(SIZE / 65536) * 65536;
                final ByteBuffer data = filled(random, 65536);
                b.write(offset, data.duplicate());
                raw.write(offset, data);
            }
        }
        try (RawFileStore raw = RawFileStore.open(expected);
            Qcow2Writer t = Qcow2Writer.create(top, SIZE, Qcow2Writer.Options.defaults().withBacking("base.qcow2",
                "qcow2")))
        {
            for (int i = 0; i < 10; i++)
            {
                final long offset = random.nextLong(SIZE / 4096) * 4096;
                final ByteBuffer data = filled(random, 4096);
                t.write(offset, data.duplicate());
                raw.write(offset, data);
            }
        }
    }

    private static ByteBuffer filled(final SplittableRandom random, final int length)
    {
        final byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = (byte)random.nextInt(1, 256);
        }
        return ByteBuffer.wrap(bytes);
    }

    @Test
    void restoreTopAloneAndAsAListGiveTheExpectedDisk() throws Exception
    {
        final Path a = dir.resolve("a.raw");
        final CliRun alone = CliRun.of("backup", "restore", top.toString(), "--to", a.toString());
        assertThat(alone.exit()).as(alone.err()).isZero();
        assertThat(Files.mismatch(a, expected)).isEqualTo(-1);
        final Path b = dir.resolve("b.raw");
        final CliRun list = CliRun.of("backup", "restore", base.toString(), top.toString(), "--to", b.toString(), "--json");
        assertThat(list.exit()).as(list.err()).isZero();
        final JsonNode report = QmpJson.MAPPER.readTree(list.out());
        assertThat(report.path("chain")).hasSize(2);
        assertThat(report.path("size").asLong()).isEqualTo(SIZE);
        assertThat(Files.mismatch(b, expected)).isEqualTo(-1);
        assertThat(CliRun.of("backup", "verify", top.toString(), "--against", b.toString()).exit()).isZero();
    }

    @Test
    void verifyReportsTheFirstDifferenceWithExitOne() throws Exception
    {
        try (RawFileStore raw = RawFileStore.open(expected))
        {
            final ByteBuffer one = ByteBuffer.allocate(1);
            raw.read(5_000_000, one);
            raw.write(5_000_000, ByteBuffer.wrap(new byte[] {(byte)~one.get(0)}));
        }
        final CliRun r = CliRun.of("backup", "verify", top.toString(), "--against", expected.toString(), "--json");
        assertThat(r.exit()).isEqualTo(TidemarkMain.EXIT_CHECK_FAILED);
        final JsonNode report = QmpJson.MAPPER.readTree(r.out());
        assertThat(report.path("equal").asBoolean()).isFalse();
        assertThat(report.path("first_difference").asLong()).isEqualTo(5_000_000);
    }

    @Test
    void badChainsAndArgumentsGetClearErrors() throws Exception
    {
        final CliRun missing = CliRun.of("backup", "restore", dir.resolve("nope.qcow2").toString(), "--to",
            dir.resolve("x.raw").toString());
        assertThat(missing.exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(missing.err()).contains("nope.qcow2");
        final CliRun wrongOrder = CliRun.of("backup", "restore", top.toString(), base.toString(), "--to",
            dir.resolve("y.raw").toString());
        assertThat(wrongOrder.exit()).isEqualTo(TidemarkMain.EXIT_ERROR);
        assertThat(wrongOrder.err()).contains("has no backing file");
        assertThat(Files.exists(dir.resolve("y.raw"))).isFalse();
        final CliRun exists = CliRun.of("backup", "restore", top.toString(), "--to", expected.toString());
        assertThat(exists.exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(exists.err()).contains("exists");
        final CliRun notQcow2 = CliRun.of("backup", "verify", expected.toString(), "--against", expected.toString());
        assertThat(notQcow2.exit()).isEqualTo(TidemarkMain.EXIT_ERROR);
        assertThat(CliRun.of("backup", "restore", top.toString()).exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        assertThat(CliRun.of("backup").exit()).isEqualTo(TidemarkMain.EXIT_USAGE);
        final CliRun badUri = CliRun.of("backup", "verify", top.toString(), "--against", "nbd+unix:///x");
        assertThat(badUri.exit()).isEqualTo(TidemarkMain.EXIT_ERROR);
        assertThat(badUri.err()).contains("socket=");
        assertThat(CliRun.of("backup", "restore", "--help").exit()).isZero();
    }

    @Test
    void qemuStorageDaemonOptionSyntaxParses()
    {
        final ObjectNode blockdev = ServeCommand.parseOptions(
            "driver=qcow2,node-name=q0,file.driver=file,file.filename=/a,,b.qcow2,read-only=on", null);
        assertThat(QmpJson.compact(blockdev)).isEqualTo("{\"driver\":\"qcow2\",\"node-name\":\"q0\",\"file\":"
            + "{\"driver\":\"file\",\"filename\":\"/a,b.qcow2\"},\"read-only\":true}");
        final ObjectNode export = ServeCommand.parseOptions("type=nbd,id=e0,node-name=d0,bitmaps.0=a,bitmaps.1=b",
            null);
        assertThat(export.path("bitmaps").toString()).isEqualTo("[\"a\",\"b\"]");
        final ObjectNode server = ServeCommand.nbdServerArgs(ServeCommand.parseOptions(
            "addr.type=inet,addr.host=127.0.0.1,addr.port=10809,max-connections=4", null));
        assertThat(QmpJson.compact(server)).isEqualTo("{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":"
            + "\"127.0.0.1\",\"port\":\"10809\"}},\"max-connections\":4}");
        final ObjectNode chardev = ServeCommand.parseOptions("socket,id=m0,path=/q.sock,server=on,wait=off", "socket");
        assertThat(chardev.path("backend").asText()).isEqualTo("socket");
        assertThat(chardev.path("wait").asBoolean(true)).isFalse();
        final ObjectNode json = ServeCommand.parseOptions("{\"driver\":\"file\",\"node-name\":\"f\"}", null);
        assertThat(json.path("node-name").asText()).isEqualTo("f");
    }
}
