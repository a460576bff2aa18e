package dev.tidemark.io.vhost;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The back end driven by a test front end over a real socket with real fds; each test on its own thread. */
class VhostUserBlkServerTest
{
    private static final long SIZE = 16L << 20;

    @TempDir
    Path dir;

    private final MemoryExport export = new MemoryExport(SIZE);
    private VhostUserBlkServer server;
    private FrontEnd fe;

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
        export.completer.shutdownNow();
    }

    private void start(final int queues) throws Exception
    {
        server = new VhostUserBlkServer("disk0", export, queues, 512);
        server.listen(dir.resolve("vhost.sock"));
        fe = new FrontEnd(queues);
        fe.connect(dir.resolve("vhost.sock"));
    }

    @Test
    void negotiatesFeaturesQueuesAndConfig() throws Exception
    {
        start(2);
        final long features = fe.getU64(VhostUser.GET_FEATURES);
        assertThat(features & 1L << VhostUser.VIRTIO_F_VERSION_1).isNotZero();
        assertThat(features & 1L << VhostUser.F_PROTOCOL_FEATURES).isNotZero();
        assertThat(features & 1L << VhostUser.VIRTIO_BLK_F_FLUSH).isNotZero();
        assertThat(features & 1L << VhostUser.VIRTIO_BLK_F_DISCARD).isNotZero();
        assertThat(features & 1L << VhostUser.VIRTIO_BLK_F_RO).isZero();
        final long protocol = fe.getU64(VhostUser.GET_PROTOCOL_FEATURES);
        assertThat(protocol & 1L << VhostUser.PROTOCOL_F_CONFIG).isNotZero();
        assertThat(protocol & 1L << VhostUser.PROTOCOL_F_MQ).isNotZero();
        fe.setU64(VhostUser.SET_PROTOCOL_FEATURES, protocol);
        assertThat(fe.getU64(VhostUser.GET_QUEUE_NUM)).isEqualTo(2);
        fe.send(VhostUser.GET_CONFIG, 0, FrontEnd.le(12 + 60).putInt(0, 0).putInt(4, 60).array());
        final ByteBuffer config = fe.receive(VhostUser.GET_CONFIG);
        assertThat(config.getInt(4)).isEqualTo(60);
        assertThat(config.getLong(12)).isEqualTo(SIZE / 512);
        assertThat(config.getInt(12 + 20)).isEqualTo(512);
        assertThat(config.getShort(12 + 34)).isEqualTo((short)2);
    }

    @Test
    void writesReadsFlushesAndGetsIdThroughGuestMemory() throws Exception
    {
        start(1);
        fe.setUp(0);
        final byte[] pattern = new byte[8192];
        new Random(7).nextBytes(pattern);
        final long hdr = FrontEnd.DATA;
        final long data = FrontEnd.DATA + 4096;
        final long status = FrontEnd.DATA + 64;
        fe.header(hdr, VhostUser.VIRTIO_BLK_T_OUT, 24);
        fe.guest.put((int)data, pattern);
        fe.guest.put((int)status, (byte)0x7f);
        // The data split over two descriptors, as a guest's scatter list would be.
        fe.publish(0, new FrontEnd.Buf(hdr, 16, false), new FrontEnd.Buf(data, 4096, false),
            new FrontEnd.Buf(data + 4096, 4096, false), new FrontEnd.Buf(status, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 1);
        assertThat(fe.guest.get((int)status)).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_OK);
        assertThat(fe.usedLen(0, 0)).isEqualTo(1);
        assertThat(export.bytes(24 * 512, 8192)).isEqualTo(pattern);
        assertThat(export.writeThreads).noneMatch(name -> name.startsWith("vhost-"));

        final long readAt = FrontEnd.DATA + 65536;
        final long hdr2 = FrontEnd.DATA + 128;
        final long status2 = FrontEnd.DATA + 192;
        fe.header(hdr2, VhostUser.VIRTIO_BLK_T_IN, 24);
        final int head = fe.publish(0, new FrontEnd.Buf(hdr2, 16, false), new FrontEnd.Buf(readAt, 8192, true),
            new FrontEnd.Buf(status2, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 2);
        assertThat(fe.usedId(0, 1)).isEqualTo(head);
        assertThat(fe.usedLen(0, 1)).isEqualTo(8193);
        final byte[] back = new byte[8192];
        fe.guest.get((int)readAt, back);
        assertThat(back).isEqualTo(pattern);

        fe.header(hdr2, VhostUser.VIRTIO_BLK_T_FLUSH, 0);
        fe.publish(0, new FrontEnd.Buf(hdr2, 16, false), new FrontEnd.Buf(status2, 1, true));
        fe.header(hdr, VhostUser.VIRTIO_BLK_T_GET_ID, 0);
        fe.publish(0, new FrontEnd.Buf(hdr, 16, false), new FrontEnd.Buf(readAt, 20, true),
            new FrontEnd.Buf(status, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 4);
        assertThat(export.flushes).isEqualTo(1);
        final byte[] id = new byte[5];
        fe.guest.get((int)readAt, id);
        assertThat(new String(id, java.nio.charset.StandardCharsets.US_ASCII)).isEqualTo("disk0");
        assertThat(fe.usedLen(0, 3)).isEqualTo(6);
    }

    /**
     * Sends a write-zeroes or discard request with one segment ({@code sectors} sectors from {@code sector}, no
     * flags) on queue 0, header at {@code DATA}, segment at {@code DATA + 256}, status at {@code DATA + 512}, and
     * waits until the used index reaches {@code used}.
     */
    private void sendOneSegment(final int type, final long sector, final int sectors, final int used) throws Exception
    {
        final long hdr = FrontEnd.DATA;
        final long seg = FrontEnd.DATA + 256;
        fe.header(hdr, type, 0);
        fe.guest.putLong((int)seg, sector).putInt((int)seg + 8, sectors).putInt((int)seg + 12, 0);
        fe.publish(0, new FrontEnd.Buf(hdr, 16, false), new FrontEnd.Buf(seg, 16, false),
            new FrontEnd.Buf(FrontEnd.DATA + 512, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, used);
    }

    @Test
    void discardsWritesZeroesAndRefusesBadRequests() throws Exception
    {
        start(1);
        fe.setUp(0);
        final long hdr = FrontEnd.DATA;
        final long status = FrontEnd.DATA + 512;
        sendOneSegment(VhostUser.VIRTIO_BLK_T_WRITE_ZEROES, 8, 16, 1);
        assertThat(fe.guest.get((int)status)).isEqualTo((byte)0);
        assertThat(export.calls).containsExactly("zeroes 4096+8192 flags " + NbdProtocol.CMD_FLAG_NO_HOLE);

        sendOneSegment(VhostUser.VIRTIO_BLK_T_DISCARD, 0, 8, 2);
        assertThat(export.calls).endsWith("trim 0+4096");

        // A write past the end, and an unknown request type.
        final long status2 = FrontEnd.DATA + 520;
        fe.header(hdr, VhostUser.VIRTIO_BLK_T_OUT, SIZE / 512);
        fe.publish(0, new FrontEnd.Buf(hdr, 16, false), new FrontEnd.Buf(FrontEnd.DATA + 4096, 512, false),
            new FrontEnd.Buf(status, 1, true));
        fe.header(hdr + 32, 99, 0);
        fe.publish(0, new FrontEnd.Buf(hdr + 32, 16, false), new FrontEnd.Buf(status2, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 4);
        assertThat(fe.guest.get((int)status)).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_IOERR);
        assertThat(fe.guest.get((int)status2)).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_UNSUPP);
        assertThat(server.errors()).isEqualTo(2);
    }

    @Test
    void completesInRingOrderAndQueuesRunOnTheirOwnThreads() throws Exception
    {
        start(2);
        fe.setUp(0);
        // The export finishes later writes first: the used ring must still list them in the order taken.
        export.reverse = true;
        for (int q = 0; q < 2; q++)
        {
            for (int i = 0; i < 8; i++)
            {
                final long base = FrontEnd.DATA + q * 131072L + i * 8192L;
                fe.header(base, VhostUser.VIRTIO_BLK_T_OUT, q * 1000 + i * 8);
                fe.guest.put((int)base + 4096, (byte)(q * 16 + i + 1));
                fe.publish(q, new FrontEnd.Buf(base, 16, false), new FrontEnd.Buf(base + 4096, 512, false),
                    new FrontEnd.Buf(base + 64, 1, true));
            }
        }
        fe.kick(0);
        fe.kick(1);
        fe.awaitUsed(0, 8);
        fe.awaitUsed(1, 8);
        for (int q = 0; q < 2; q++)
        {
            for (int i = 0; i < 8; i++)
            {
                assertThat(fe.usedId(q, i)).isEqualTo(i * 3);
                assertThat(export.bytes((q * 1000 + i * 8) * 512L, 1)[0]).isEqualTo((byte)(q * 16 + i + 1));
            }
        }
        assertThat(export.submitThreads).contains("vhost-disk0-q0", "vhost-disk0-q1");
    }

    @Test
    void aNewConnectionReplaysWhatTheOldOneDidNotComplete() throws Exception
    {
        start(1);
        fe.setUp(0);
        export.hold = true;
        final long base = FrontEnd.DATA;
        fe.header(base, VhostUser.VIRTIO_BLK_T_OUT, 40);
        fe.guest.put((int)base + 4096, (byte)0x5a);
        fe.publish(0, new FrontEnd.Buf(base, 16, false), new FrontEnd.Buf(base + 4096, 512, false),
            new FrontEnd.Buf(base + 64, 1, true));
        fe.kick(0);
        while (export.held.isEmpty())
        {
            Thread.sleep(1);
        }
        // The front end goes away (as when the daemon dies, seen from the other side); nothing was used.
        fe.disconnect();
        export.release();
        final long deadline = System.nanoTime() + 5_000_000_000L;
        while (server.isConnected() && System.nanoTime() < deadline)
        {
            Thread.sleep(5);
        }
        final int used = fe.usedIdx(0);
        assertThat(used).isEqualTo(1);
        // QEMU restarts the ring from the used index; a request completed before the drop is not run again.
        fe.connect(dir.resolve("vhost.sock"));
        final int before = export.calls.size();
        fe.nextAvail[0] = used;
        fe.setUp(used);
        fe.header(base + 256, VhostUser.VIRTIO_BLK_T_IN, 40);
        fe.publish(0, new FrontEnd.Buf(base + 256, 16, false), new FrontEnd.Buf(base + 8192, 512, true),
            new FrontEnd.Buf(base + 320, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 2);
        assertThat(fe.guest.get((int)base + 8192)).isEqualTo((byte)0x5a);
        assertThat(export.calls.size()).isEqualTo(before);
    }

    @Test
    void withEventIdxTheBackEndAsksForKicksAndSignalsOnlyWhenAsked() throws Exception
    {
        start(1);
        fe.setUp(0, true);
        final long base = FrontEnd.DATA;
        // used_event far ahead: the driver wants no interrupt for the first two requests.
        fe.usedEvent(0, 100);
        fe.publishWrites(0, 2);
        fe.kick(0);
        fe.awaitUsed(0, 2);
        assertThat(fe.signals).isZero();
        // Idle again, the back end asked to be kicked for the next request.
        final long deadline = System.nanoTime() + 5_000_000_000L;
        while (fe.availEvent(0) != 2 && System.nanoTime() < deadline)
        {
            Thread.sleep(1);
        }
        assertThat(fe.availEvent(0)).isEqualTo(2);
        // Now the driver wants an interrupt once the used index passes 2.
        fe.usedEvent(0, 2);
        fe.header(base, VhostUser.VIRTIO_BLK_T_FLUSH, 0);
        fe.publish(0, new FrontEnd.Buf(base, 16, false), new FrontEnd.Buf(base + 64, 1, true));
        fe.kick(0);
        fe.awaitUsed(0, 3);
        final long until = System.nanoTime() + 2_000_000_000L;
        while (fe.signals == 0 && System.nanoTime() < until)
        {
            fe.awaitUsed(0, 3);
            final com.sun.jna.Memory counter = new com.sun.jna.Memory(8);
            final com.sun.jna.Memory pollFd = new com.sun.jna.Memory(8);
            pollFd.setInt(0, fe.call[0]);
            pollFd.setShort(4, (short)1);
            if (Libc.poll(pollFd, 1, 100) > 0)
            {
                Libc.read(fe.call[0], counter, 8);
                fe.signals++;
            }
        }
        assertThat(fe.signals).isEqualTo(1);
    }

    @Test
    void getVringBaseStopsTheRingAfterItsRequestsComplete() throws Exception
    {
        start(1);
        fe.setUp(0);
        fe.publishWrites(0, 3);
        fe.kick(0);
        fe.awaitUsed(0, 3);
        fe.send(VhostUser.GET_VRING_BASE, 0, FrontEnd.le(8).putInt(0, 0).array());
        final ByteBuffer state = fe.receive(VhostUser.GET_VRING_BASE);
        assertThat(state.getInt(4)).isEqualTo(3);
    }

    /** An in-memory export, safe for concurrent use, that completes modifying requests on another thread (as a disk's ring does). */
    static final class MemoryExport implements NbdExport
    {
        final ByteBuffer data;
        final ExecutorService completer = Executors.newSingleThreadExecutor(r -> new Thread(r, "ring"));
        final List<String> calls = Collections.synchronizedList(new ArrayList<>());
        final Set<String> submitThreads = ConcurrentHashMap.newKeySet();
        final Set<String> writeThreads = ConcurrentHashMap.newKeySet();
        final List<Runnable> held = Collections.synchronizedList(new ArrayList<>());
        volatile boolean reverse;
        volatile boolean hold;
        volatile int flushes;

        MemoryExport(final long size)
        {
            data = ByteBuffer.allocateDirect((int)size).order(ByteOrder.LITTLE_ENDIAN);
        }

        synchronized byte[] bytes(final long offset, final int length)
        {
            final byte[] out = new byte[length];
            data.get((int)offset, out);
            return out;
        }

        void release()
        {
            final List<Runnable> copy;
            synchronized (held)
            {
                copy = new ArrayList<>(held);
                held.clear();
            }
            copy.forEach(completer::execute);
        }

        @Override
        public String name()
        {
            return "mem";
        }

        @Override
        public long size()
        {
            return data.capacity();
        }

        @Override
        public boolean isReadOnly()
        {
            return false;
        }

        @Override
        public Set<Feature> features()
        {
            return EnumSet.allOf(Feature.class);
        }

        @Override
        public synchronized int read(final long offset, final ByteBuffer dst)
        {
            final ByteBuffer src = data.duplicate();
            src.position((int)offset).limit((int)offset + dst.remaining());
            dst.put(src);
            return NbdProtocol.OK;
        }

        private final List<Runnable> batch = new ArrayList<>();

        @Override
        public void write(final long offset, final ByteBuffer src, final int flags, final NbdCompletion done)
        {
            submitThreads.add(Thread.currentThread().getName());
            calls.add("write " + offset + "+" + src.remaining());
            final Runnable work = () ->
            {
                writeThreads.add(Thread.currentThread().getName());
                synchronized (this)
                {
                    final ByteBuffer dst = data.duplicate();
                    dst.position((int)offset);
                    dst.put(src);
                }
                done.complete(NbdProtocol.OK);
            };
            if (hold)
            {
                held.add(work);
            }
            else if (reverse)
            {
                // Completes in batches of 4, last first.
                synchronized (batch)
                {
                    batch.add(0, work);
                    if (batch.size() == 4)
                    {
                        batch.forEach(completer::execute);
                        batch.clear();
                    }
                }
            }
            else
            {
                completer.execute(work);
            }
        }

        @Override
        public void flush(final NbdCompletion done)
        {
            flushes++;
            completer.execute(() -> done.complete(NbdProtocol.OK));
        }

        @Override
        public void trim(final long offset, final long length, final int flags, final NbdCompletion done)
        {
            calls.add("trim " + offset + "+" + length);
            completer.execute(() -> done.complete(NbdProtocol.OK));
        }

        @Override
        public void writeZeroes(final long offset, final long length, final int flags, final NbdCompletion done)
        {
            calls.add("zeroes " + offset + "+" + length + " flags " + flags);
            completer.execute(() -> done.complete(NbdProtocol.OK));
        }
    }

}
