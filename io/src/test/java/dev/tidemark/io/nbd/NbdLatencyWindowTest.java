package dev.tidemark.io.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.io.testing.HeapStore;
import dev.tidemark.io.testing.Waits;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link NbdServer#takeLongestModifyingRequestNanos()}: a write's time from its arrival to its reply on the socket,
 * whether the completing thread or the reply thread sends it; one test thread with the server's own threads.
 */
@Timeout(60)
class NbdLatencyWindowTest
{
    private static final int BLOCK = 4096;
    private static final long SLOW_NANOS = TimeUnit.MILLISECONDS.toNanos(40);

    @TempDir
    Path dir;

    @ParameterizedTest(name = "inline replies: {0}")
    @ValueSource(booleans = {true, false})
    void aSlowWriteFillsItsWindowAndTheNextWindowStartsEmpty(final boolean inline) throws Exception
    {
        final HeapStore store = new HeapStore(1 << 20);
        try (NbdServer server = new NbdServer())
        {
            if (!inline)
            {
                server.inlineSender(null);
            }
            server.addExport(new BlockStoreExport("d", store));
            final Path socket = server.listenUnix(dir.resolve("nbd.sock"));
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("d").connections(1).connect())
            {
                final long inlineBefore = server.inlineReplies();
                server.takeLongestModifyingRequestNanos();
                store.hook((offset, length) -> Waits.sleepAtLeast(SLOW_NANOS));
                client.write(0, ByteBuffer.allocate(BLOCK));
                store.hook((offset, length) -> { });
                assertThat(awaitLongest(server)).isGreaterThanOrEqualTo(SLOW_NANOS);
                assertThat(server.inlineReplies() - inlineBefore).as("sent by the completing thread")
                    .isEqualTo(inline ? 1 : 0);

                assertThat(server.takeLongestModifyingRequestNanos()).as("a new window starts empty").isZero();
                client.write(BLOCK, ByteBuffer.allocate(BLOCK));
                assertThat(awaitLongest(server)).isPositive().isLessThan(SLOW_NANOS);
            }
        }
    }

    @Test
    void readsDoNotCount() throws Exception
    {
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("d", new HeapStore(1 << 20)));
            final Path socket = server.listenUnix(dir.resolve("nbd.sock"));
            try (NbdClient client = NbdClient.builder().unix(socket).exportName("d").connections(1).connect())
            {
                server.takeLongestModifyingRequestNanos();
                client.read(0, ByteBuffer.allocate(BLOCK));
                assertThat(server.takeLongestModifyingRequestNanos()).isZero();
            }
        }
    }

    /**
     * The server notes a request once its reply is on the socket, so the client can have the reply a moment before
     * the figure is there; a window taken that early is empty and loses nothing.
     */
    private static long awaitLongest(final NbdServer server)
    {
        return Waits.firstFound(server::takeLongestModifyingRequestNanos, nanos -> nanos > 0, 10);
    }
}
