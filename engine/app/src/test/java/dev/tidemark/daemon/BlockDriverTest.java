package dev.tidemark.daemon;

import static dev.tidemark.daemon.DaemonTesting.exec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A driver added as docs/architecture.md says (one class, one registration) is a full citizen: schema-checked
 * {@code blockdev-add}, queries, backup target, {@code blockdev-del}; confined to the test thread.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlockDriverTest
{
    private static final int SIZE = 4 << 20;

    @TempDir
    Path dir;

    private Daemon daemon;

    /** A target in memory, written as a new driver would be; its map is changed on the dispatcher thread only. */
    private static final class MemoryDriver implements BlockDriver
    {
        final Map<String, HeapStore> stores = new LinkedHashMap<>();

        @Override
        public String name()
        {
            return "x-memory";
        }

        @Override
        public List<QmpField> options(final QmpType blockdevRef)
        {
            return List.of(QmpField.required("size", QmpType.uint64()));
        }

        @Override
        public State open(final BlockNode node, final ObjectNode args, final Context context)
        {
            final HeapStore store = new HeapStore(args.get("size").asInt());
            stores.put(node.name, store);
            return new StoreState(store)
            {
                @Override
                public String filename()
                {
                    return "memory:" + node.name;
                }

                @Override
                public void close()
                {
                    super.close();
                    stores.remove(node.name);
                }
            };
        }
    }

    @AfterEach
    void tearDown()
    {
        if (daemon != null)
        {
            daemon.close();
        }
    }

    @Test
    void aRegisteredDriverIsAddedQueriedUsedAsATargetAndDeleted() throws Exception
    {
        final MemoryDriver memory = new MemoryDriver();
        final Map<String, BlockDriver> drivers = new LinkedHashMap<>(BlockDrivers.ALL);
        drivers.put(memory.name(), memory);
        daemon = Daemon.create(null, false, false, drivers);
        final byte[] data = new byte[SIZE];
        new SplittableRandom(7).nextBytes(data);
        final Path image = dir.resolve("a.raw");
        Files.write(image, data);
        exec(daemon, "blockdev-add",
            "{'driver':'raw','node-name':'a','file':{'driver':'file','filename':'" + image + "'}}");

        assertThatThrownBy(() -> exec(daemon, "blockdev-add", "{'driver':'x-memory','node-name':'m'}"))
            .isInstanceOf(QmpError.class).hasMessageContaining("size");
        exec(daemon, "blockdev-add", "{'driver':'x-memory','node-name':'m','size':" + SIZE + "}");
        JsonNode node = null;
        for (final JsonNode n : exec(daemon, "query-named-block-nodes", "{}"))
        {
            if ("m".equals(n.path("node-name").asText()))
            {
                node = n;
            }
        }
        assertThat(node).isNotNull();
        assertThat(node.path("drv").asText()).isEqualTo("x-memory");
        assertThat(node.path("file").asText()).isEqualTo("memory:m");
        assertThat(node.path("image").path("virtual-size").asLong()).isEqualTo(SIZE);

        exec(daemon, "blockdev-backup", "{'device':'a','target':'m','sync':'full','job-id':'j'}");
        DaemonTesting.awaitNoJobs(daemon);
        assertThat(memory.stores.get("m").snapshot()).isEqualTo(data);

        exec(daemon, "blockdev-del", "{'node-name':'m'}");
        assertThat(memory.stores).isEmpty();
    }

    @Test
    void anUnregisteredDriverIsRefusedByTheSchema()
    {
        daemon = Daemon.create(null, false, false);
        assertThatThrownBy(() -> exec(daemon, "blockdev-add", "{'driver':'x-memory','node-name':'m','size':4096}"))
            .isInstanceOf(QmpError.class).hasMessageContaining("x-memory");
    }
}
