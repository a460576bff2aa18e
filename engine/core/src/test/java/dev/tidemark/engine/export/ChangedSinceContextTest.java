package dev.tidemark.engine.export;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.io.testing.ExternalTools;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The {@code tidemark:changed-since:NAME} contexts of an export with checkpoints, read by nbdinfo and libnbd
 * (nbdsh); a missing tool fails the test.
 */
@Timeout(120)
class ChangedSinceContextTest extends ExportedDiskTestSupport
{
    private List<String> expected(final String checkpoint)
    {
        final List<String> out = new ArrayList<>();
        disk.checkpoints().changedSince(checkpoint, 0, SIZE, (offset, length) -> out.add(offset + "+" + length));
        return out;
    }

    @Test
    void nbdinfoAndLibnbdReadEveryCheckpointFromTheEpochMap() throws Exception
    {
        final SplittableRandom random = new SplittableRandom(seed);
        writeRandom(random, 10, 150_000);
        disk.transaction(CheckpointActions.add("c1", List.of("vda")));
        writeRandom(random, 30, 150_000);
        disk.transaction(CheckpointActions.add("c2", List.of("vda")));
        writeRandom(random, 8, 150_000);
        manager.add(ExportRequest.of("e0", ExportNode.disk("vda", disk)).withCheckpoints(true));
        final String uri = ExternalTools.uri("vda", socket);
        for (final String checkpoint : List.of("c1", "c2"))
        {
            final String out = ExternalTools.run(30, "nbdinfo", "--map=" + ChangedSinceContext.PREFIX + checkpoint,
                uri);
            final List<String> changed = setExtentsOfNbdinfoMap(out);
            assertThat(expected(checkpoint)).isNotEmpty();
            assertThat(changed).as("seed %d, %s\n%s", seed, checkpoint, out).isEqualTo(expected(checkpoint));
        }
        assertThat(expected("c1")).as("c1 is older: more changed").isNotEqualTo(expected("c2"));

        // libnbd: negotiate the context, read block status, then see the error once the checkpoint is gone.
        final String script = String.join("\n",
            "ctx = 'tidemark:changed-since:c2'",
            "h.add_meta_context(ctx)",
            "h.connect_uri('" + uri + "')",
            "assert h.can_meta_context(ctx)",
            "out = []",
            "pos = 0",
            "def f(name, offset, entries, err):",
            "    global pos",
            "    if name != ctx: return 0",
            "    for i in range(0, len(entries), 2):",
            "        if entries[i + 1] & 1:",
            "            if out and out[-1][0] + out[-1][1] == pos: out[-1][1] += entries[i]",
            "            else: out.append([pos, entries[i]])",
            "        pos += entries[i]",
            "    return 0",
            "while pos < h.get_size():",
            "    h.block_status(min(h.get_size() - pos, 1 << 30), pos, f)",
            "print(' '.join('%d+%d' % (a, b) for a, b in out))");
        final String libnbd = ExternalTools.run(30, "nbdsh", "-c", script).trim();
        assertThat(List.of(libnbd.split(" "))).as("nbdsh:\n%s", libnbd).isEqualTo(expected("c2"));
        disk.transaction(CheckpointActions.remove("c2"));
        final String gone = ExternalTools.run(30, "nbdsh", "-c", String.join("\n",
            "ctx = 'tidemark:changed-since:c2'",
            "h.add_meta_context(ctx)",
            "h.connect_uri('" + uri + "')",
            "try:",
            "    h.block_status(65536, 0, lambda *a: 0)",
            "    print('no error')",
            "except nbd.Error as e:",
            "    print('error', e.errnum)")).trim();
        assertThat(gone).startsWith("error");
    }
}
