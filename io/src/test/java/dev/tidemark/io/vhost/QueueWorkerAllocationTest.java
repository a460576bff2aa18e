package dev.tidemark.io.vhost;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.testing.DiscardingExport;
import dev.tidemark.io.nbd.NbdProtocol;

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.function.Function;
import java.util.function.IntConsumer;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the queue thread allocates per request once warm, measured with the JVM's per-thread allocation counter;
 * JUnit's thread drives the test front end and the export completes on the queue thread itself, so the whole
 * request path (walk, header, status, pooled completion, the export's cached adapter) runs on the measured thread.
 */
class QueueWorkerAllocationTest
{
    /** One slice of guest memory per data descriptor (the buffer an export is handed) is all that is left. */
    private static final double MOST_BYTES_PER_REQUEST = 100;
    private static final int BATCH = 16;

    /** Stands for an engine export's adapter (TrackedDiskExport's IoCompletion): one per pooled completion. */
    private static final Function<NbdCompletion, IntConsumer> ADAPTER = done -> done::complete;

    @TempDir
    Path dir;

    private VhostUserBlkServer server;
    private FrontEnd fe;

    /** Completes every request at once on the calling thread, through its adapter; thread-safe. */
    private static final class ImmediateExport extends DiscardingExport
    {
        ImmediateExport()
        {
            super("alloc", 16L << 20, EnumSet.allOf(Feature.class));
        }

        @Override
        public void write(final long offset, final ByteBuffer src, final int flags, final NbdCompletion done)
        {
            done.adapter(IntConsumer.class, ADAPTER).accept(NbdProtocol.OK);
        }

        @Override
        public void flush(final NbdCompletion done)
        {
            done.adapter(IntConsumer.class, ADAPTER).accept(NbdProtocol.OK);
        }

        @Override
        protected void modify(final long offset, final NbdCompletion done)
        {
            done.complete(NbdProtocol.OK);
        }
    }

    @AfterEach
    void tearDown()
    {
        if (fe != null)
        {
            fe.close();
        }
        if (server != null)
        {
            server.close();
        }
    }

    @Test
    void aWarmQueueAllocatesOnlyTheDataSliceOfAWriteOrARead() throws Exception
    {
        server = new VhostUserBlkServer("disk0", new ImmediateExport(), 1, 512);
        server.listen(dir.resolve("vhost.sock"));
        fe = new FrontEnd(1);
        fe.connect(dir.resolve("vhost.sock"));
        fe.setUp(0);
        final int[] used = {0};
        // Warm-up: the pool fills, the chain arrays reach their size and the JIT compiles the path.
        run(VhostUser.VIRTIO_BLK_T_OUT, 2000, used);
        run(VhostUser.VIRTIO_BLK_T_IN, 2000, used);
        final Thread worker = Thread.getAllStackTraces().keySet().stream()
            .filter(t -> t.getName().equals("vhost-disk0-q0")).findFirst().orElseThrow();
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();
        for (final int type : new int[] {VhostUser.VIRTIO_BLK_T_OUT, VhostUser.VIRTIO_BLK_T_IN})
        {
            final int rounds = 2000;
            final long before = threads.getThreadAllocatedBytes(worker.getId());
            run(type, rounds, used);
            final long after = threads.getThreadAllocatedBytes(worker.getId());
            final double perRequest = (after - before) / (double)(rounds * BATCH);
            assertThat(perRequest).as("bytes per %s request", type == VhostUser.VIRTIO_BLK_T_OUT ? "write" : "read")
                .isLessThan(MOST_BYTES_PER_REQUEST);
        }
    }

    /** {@code rounds} times: {@link #BATCH} 4 KiB requests (header, data, status), then await their used entries. */
    private void run(final int type, final int rounds, final int[] used) throws InterruptedException
    {
        final boolean read = type == VhostUser.VIRTIO_BLK_T_IN;
        for (int round = 0; round < rounds; round++)
        {
            for (int i = 0; i < BATCH; i++)
            {
                final long header = FrontEnd.DATA + i * 32L;
                fe.header(header, type, 8 * i);
                fe.publish(0, new FrontEnd.Buf(header, 16, false), new FrontEnd.Buf(FrontEnd.DATA + 65536, 4096, read),
                    new FrontEnd.Buf(FrontEnd.DATA + 4096 + i, 1, true));
            }
            fe.kick(0);
            used[0] += BATCH;
            fe.awaitUsed(0, used[0]);
        }
    }
}
