package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.HeapStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Runs on JUnit's thread: a client that disconnected no longer holds its export, however soon the question
 * is asked (the race behind {@code block-export-del} refusing with "still in use" right after the last client
 * left), while a connected one still does.
 */
@Timeout(120)
class NbdExportReleaseTest
{
    private static final int ROUNDS = 500;

    @Test
    void exportIsFreeTheMomentTheLastClientDisconnects() throws Exception
    {
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("disk", new HeapStore(new byte[1 << 20], false)));
            final InetSocketAddress address = server.listenTcp(0);
            int held = 0;
            for (int round = 0; round < ROUNDS; round++)
            {
                try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("disk")
                    .connections(1).connect())
                {
                    client.read(4096L * (round % 200), ByteBuffer.allocate(4096));
                }
                // Asked at once, as block-export-del in safe mode does.
                if (server.activeConnections("disk", Duration.ofSeconds(2)) != 0)
                {
                    held++;
                }
            }
            assertThat(held).as("rounds in which a disconnected client still held the export").isZero();
        }
    }

    @Test
    void aConnectedClientStillHoldsTheExport() throws Exception
    {
        try (NbdServer server = new NbdServer())
        {
            server.addExport(new BlockStoreExport("disk", new HeapStore(new byte[1 << 20], false)));
            final InetSocketAddress address = server.listenTcp(0);
            try (NbdClient client = NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("disk")
                .connections(1).connect())
            {
                client.read(0, ByteBuffer.allocate(4096));
                final long started = System.nanoTime();
                assertThat(server.activeConnections("disk", Duration.ofMillis(200))).isEqualTo(1);
                assertThat(System.nanoTime() - started).as("waited no longer than the settle time")
                    .isLessThan(Duration.ofSeconds(2).toNanos());
                assertThat(server.connectionCount("disk")).isEqualTo(1);
            }
        }
    }
}
