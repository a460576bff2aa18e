package dev.tidemark.io.vhost;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;

import dev.tidemark.io.nbd.NbdCompletion;
import dev.tidemark.io.testing.DelayedCompleter;
import dev.tidemark.io.testing.DiscardingExport;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A queue worker's reused pending requests, driven from JUnit's thread (the test front end) and the export's
 * completing threads: far more requests than the ring holds, each with one indirect descriptor so that the ring's
 * size of them are out at once, each get exactly one used entry with their own status; the pool holds no more
 * entries than the ring has descriptors; and a completion the export kept when it threw fails when called late,
 * even when every other entry of the pool is armed by a parked request.
 */
@Timeout(120)
class VhostPendingPoolTest
{
    private static final long SIZE = 64L << 20;
    private static final int BLOCK = 4096;
    private static final int QUEUE = FrontEnd.QUEUE_SIZE;
    /** Offsets from here on park their completion until the test releases it; the random requests stay below. */
    private static final long PARK_FROM = SIZE - (1 << 20);

    // Guest memory of ring slot s (request k uses slot k % QUEUE, free again once request k is used).
    private static long table(final int slot)
    {
        return FrontEnd.DATA + 64L * slot;
    }

    private static long header(final int slot)
    {
        return FrontEnd.DATA + 4096 + 16L * slot;
    }

    private static long status(final int slot)
    {
        return FrontEnd.DATA + 8192 + slot;
    }

    private static long segment(final int slot)
    {
        return FrontEnd.DATA + 12288 + 16L * slot;
    }

    /** Shared payload of every write: two parts, so each write completes through two export calls. */
    private static final long PAYLOAD = FrontEnd.DATA + 65536;

    /** What the export does with one part, chosen from its offset (both parts of a write share the choice). */
    private enum Outcome
    {
        OK, NOT_SUPPORTED, NO_SPACE,
        /** The first part keeps its completion and throws (answered EIO); a second part completes OK later. */
        THROWS,
        PARKS;

        static Outcome of(final long offset)
        {
            final long unit = offset / (2 * BLOCK);
            return offset >= PARK_FROM ? PARKS : unit % 11 == 3 ? THROWS : unit % 7 == 2 ? NOT_SUPPORTED
                : unit % 5 == 1 ? NO_SPACE : OK;
        }

        int status()
        {
            return switch (this)
            {
                case NOT_SUPPORTED -> VhostUser.VIRTIO_BLK_S_UNSUPP;
                case NO_SPACE, THROWS -> VhostUser.VIRTIO_BLK_S_IOERR;
                default -> VhostUser.VIRTIO_BLK_S_OK;
            };
        }
    }

    /** Keeps no data; completes on other threads after random delays, or as {@link Outcome} says; thread-safe. */
    private static class ScatteringExport extends DiscardingExport
    {
        private final DelayedCompleter completer;
        /** Every completion object the worker handed over, by identity. */
        final Set<NbdCompletion> seen = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));
        /** Completions the export kept when it threw; the worker must never reuse them. */
        final ConcurrentLinkedQueue<NbdCompletion> kept = new ConcurrentLinkedQueue<>();
        final LinkedBlockingQueue<NbdCompletion> parked = new LinkedBlockingQueue<>();
        final AtomicInteger flushes = new AtomicInteger();

        ScatteringExport(final long seed)
        {
            super("pool", SIZE, EnumSet.allOf(Feature.class));
            completer = new DelayedCompleter(seed, 4, 400);
        }

        Throwable unexpected()
        {
            return completer.unexpected();
        }

        void close()
        {
            completer.close();
        }

        @Override
        public void flush(final NbdCompletion done)
        {
            flushes.incrementAndGet();
            seen.add(done);
            completer.later(done, NbdProtocol.OK);
        }

        @Override
        protected void modify(final long offset, final NbdCompletion done)
        {
            seen.add(done);
            switch (Outcome.of(offset))
            {
                case THROWS ->
                {
                    if (offset % (2 * BLOCK) == 0)
                    {
                        kept.add(done);
                        throw new IllegalStateException("the export failed at " + offset);
                    }
                    completer.later(done, NbdProtocol.OK);
                }
                case PARKS -> parked.add(done);
                case NOT_SUPPORTED -> completer.later(done, NbdProtocol.ENOTSUP);
                case NO_SPACE -> completer.later(done, NbdProtocol.ENOSPC);
                default -> completer.later(done, NbdProtocol.OK);
            }
        }
    }

    /** One planned request: its type, offset (sector * 512) and the status it must get. */
    private record Request(int type, long offset, int status)
    {
    }

    @TempDir
    Path dir;

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
    }

    private void start(final NbdExport export) throws Exception
    {
        server = new VhostUserBlkServer("disk0", export, 1, 512);
        server.listen(dir.resolve("vhost.sock"));
        fe = new FrontEnd(1);
        fe.connect(dir.resolve("vhost.sock"));
        fe.setUp(0);
    }

    /** Publishes request {@code r} as the {@code k}th of queue 0, with one indirect descriptor; @return its head. */
    private int publish(final int k, final Request r)
    {
        final int slot = k % QUEUE;
        fe.header(header(slot), r.type(), r.offset() / 512);
        fe.guest.put((int)status(slot), (byte)0x7f);
        final FrontEnd.Buf head = new FrontEnd.Buf(header(slot), 16, false);
        final FrontEnd.Buf done = new FrontEnd.Buf(status(slot), 1, true);
        return switch (r.type())
        {
            case VhostUser.VIRTIO_BLK_T_OUT -> fe.publishIndirect(0, table(slot), head,
                new FrontEnd.Buf(PAYLOAD, BLOCK, false), new FrontEnd.Buf(PAYLOAD + BLOCK, BLOCK, false), done);
            case VhostUser.VIRTIO_BLK_T_FLUSH -> fe.publishIndirect(0, table(slot), head, done);
            default ->
            {
                fe.guest.putLong((int)segment(slot), r.offset() / 512).putInt((int)segment(slot) + 8, BLOCK / 512)
                    .putInt((int)segment(slot) + 12, 0);
                yield fe.publishIndirect(0, table(slot), head, new FrontEnd.Buf(segment(slot), 16, false), done);
            }
        };
    }

    /** Waits until queue 0's used index differs from {@code used}; @return the new one. */
    private int awaitMoreUsed(final int used) throws InterruptedException
    {
        final long deadline = System.nanoTime() + 10_000_000_000L;
        final Memory counter = new Memory(8);
        final Memory pollFd = new Memory(8);
        pollFd.setInt(0, fe.call[0]);
        pollFd.setShort(4, (short)1);
        while (fe.usedIdx(0) == (used & 0xffff))
        {
            assertThat(System.nanoTime()).as("used index stuck at %d", used).isLessThan(deadline);
            try
            {
                if (Libc.poll(pollFd, 1, 100) > 0)
                {
                    Libc.read(fe.call[0], counter, 8);
                }
            }
            catch (final LastErrorException ex)
            {
                Thread.sleep(1);
            }
        }
        return used + ((fe.usedIdx(0) - used) & 0xffff);
    }

    @Test
    void farMoreRequestsThanTheRingHoldsEachGetOneUsedEntryWithTheirStatus() throws Exception
    {
        final long seed = System.nanoTime();
        final ScatteringExport export = new ScatteringExport(seed);
        try
        {
            start(export);
            final SplittableRandom random = new SplittableRandom(seed + 1);
            final int total = 40 * QUEUE;
            final List<Request> plan = new ArrayList<>();
            for (int k = 0; k < total; k++)
            {
                final int kind = random.nextInt(10);
                final int type = kind < 6 ? VhostUser.VIRTIO_BLK_T_OUT : kind < 7 ? VhostUser.VIRTIO_BLK_T_DISCARD
                    : kind < 8 ? VhostUser.VIRTIO_BLK_T_WRITE_ZEROES : VhostUser.VIRTIO_BLK_T_FLUSH;
                final long offset = type == VhostUser.VIRTIO_BLK_T_FLUSH ? 0
                    : (long)random.nextInt((int)(PARK_FROM / (2 * BLOCK))) * 2 * BLOCK;
                plan.add(new Request(type, offset, type == VhostUser.VIRTIO_BLK_T_FLUSH ? VhostUser.VIRTIO_BLK_S_OK
                    : Outcome.of(offset).status()));
            }
            final int[] heads = new int[total];
            int published = 0;
            int used = 0;
            int checked = 0;
            int mostOut = 0;
            while (checked < total)
            {
                // A slot is free once its last request is used: the ring's size of requests out at once.
                while (published < total && published < checked + QUEUE)
                {
                    heads[published] = publish(published, plan.get(published));
                    published++;
                }
                mostOut = Math.max(mostOut, published - checked);
                fe.kick(0);
                used = awaitMoreUsed(used);
                assertThat(used).as("seed %d", seed).isLessThanOrEqualTo(published);
                for (; checked < used; checked++)
                {
                    final int slot = checked % QUEUE;
                    assertThat(fe.usedId(0, checked)).as("request %d, seed %d", checked, seed)
                        .isEqualTo(heads[checked]);
                    assertThat(fe.usedLen(0, checked)).isEqualTo(1);
                    assertThat(fe.guest.get((int)status(slot))).as("status of request %d (%s), seed %d", checked,
                        plan.get(checked), seed).isEqualTo((byte)plan.get(checked).status());
                }
            }
            assertThat(mostOut).isEqualTo(QUEUE);
            assertThat(export.unexpected()).as("a completing thread failed").isNull();
            assertThat(export.kept).isNotEmpty();
            // Reused: no more entries than the ring holds, plus one for each retired when its export threw.
            assertThat(export.seen).hasSizeLessThanOrEqualTo(QUEUE + export.kept.size());

            // The kept completions were answered (EIO) long ago. With every entry of the pool armed by a parked
            // write, a late call must fail instead of answering someone else's request.
            for (int k = total; k < total + QUEUE; k++)
            {
                heads[k % QUEUE] = publish(k, new Request(VhostUser.VIRTIO_BLK_T_OUT,
                    PARK_FROM + (long)(k - total) * 2 * BLOCK, VhostUser.VIRTIO_BLK_S_OK));
            }
            fe.kick(0);
            final List<NbdCompletion> parked = new ArrayList<>();
            while (parked.size() < 2 * QUEUE)
            {
                final NbdCompletion next = export.parked.poll(10, TimeUnit.SECONDS);
                assertThat(next).as("parked part %d reached the export", parked.size()).isNotNull();
                parked.add(next);
            }
            for (final NbdCompletion late : export.kept)
            {
                assertThatThrownBy(() -> late.complete(NbdProtocol.OK)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("completed twice");
            }
            assertThat(fe.usedIdx(0)).as("no used entry from the late calls").isEqualTo(total & 0xffff);
            for (final NbdCompletion done : parked)
            {
                done.complete(NbdProtocol.OK);
            }
            while (used < total + QUEUE)
            {
                used = awaitMoreUsed(used);
            }
            assertThat(used).isEqualTo(total + QUEUE);
            for (int k = total; k < total + QUEUE; k++)
            {
                assertThat(fe.usedId(0, k)).isEqualTo(heads[k % QUEUE]);
                assertThat(fe.guest.get((int)status(k % QUEUE))).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_OK);
            }
            publish(total + QUEUE, new Request(VhostUser.VIRTIO_BLK_T_FLUSH, 0, VhostUser.VIRTIO_BLK_S_OK));
            fe.kick(0);
            fe.awaitUsed(0, total + QUEUE + 1);
            assertThat(fe.guest.get((int)status((total + QUEUE) % QUEUE))).isEqualTo((byte)0);
        }
        finally
        {
            export.close();
        }
    }

    @Test
    void aDriverWithMoreRequestsOutThanTheRingHoldsWaitsUntilOneIsUsed() throws Exception
    {
        final ScatteringExport export = new ScatteringExport(2);
        try
        {
            start(export);
            for (int k = 0; k < QUEUE; k++)
            {
                publish(k, new Request(VhostUser.VIRTIO_BLK_T_OUT, PARK_FROM + (long)k * 2 * BLOCK,
                    VhostUser.VIRTIO_BLK_S_OK));
            }
            fe.kick(0);
            final List<NbdCompletion> parked = new ArrayList<>();
            while (parked.size() < 2 * QUEUE)
            {
                final NbdCompletion next = export.parked.poll(10, TimeUnit.SECONDS);
                assertThat(next).as("parked part %d reached the export", parked.size()).isNotNull();
                parked.add(next);
            }
            // Breaks virtio's rule: a request beyond the ring's size, in a descriptor still in use. The worker must
            // not take it (the pool and the used ring's slots hold the ring's size of requests).
            publish(QUEUE, new Request(VhostUser.VIRTIO_BLK_T_FLUSH, 0, VhostUser.VIRTIO_BLK_S_OK));
            fe.kick(0);
            Thread.sleep(300);
            assertThat(export.flushes).hasValue(0);
            assertThat(export.parked).isEmpty();
            // The first request's two parts complete: it is used, and the worker takes the waiting flush.
            parked.get(0).complete(NbdProtocol.OK);
            parked.get(1).complete(NbdProtocol.OK);
            final int used = awaitMoreUsed(0);
            assertThat(used).isEqualTo(1);
            final long deadline = System.nanoTime() + 10_000_000_000L;
            while (export.flushes.get() == 0 && System.nanoTime() < deadline)
            {
                Thread.sleep(1);
            }
            assertThat(export.flushes).as("the flush was taken once there was room").hasValue(1);
            for (final NbdCompletion done : parked.subList(2, parked.size()))
            {
                done.complete(NbdProtocol.OK);
            }
            fe.awaitUsed(0, QUEUE + 1);
            assertThat(fe.guest.get((int)status(0))).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_OK);
            assertThat(export.unexpected()).isNull();
        }
        finally
        {
            export.close();
        }
    }

    @Test
    void aReusedPendingCompletedTwiceStillThrows() throws Exception
    {
        final AtomicInteger refused = new AtomicInteger();
        final AtomicReference<Throwable> unexpected = new AtomicReference<>();
        final ScatteringExport twice = new ScatteringExport(1)
        {
            @Override
            public void flush(final NbdCompletion done)
            {
                // On the worker thread, so the pool cannot reuse the entry between the two calls.
                done.complete(NbdProtocol.OK);
                try
                {
                    done.complete(NbdProtocol.OK);
                    unexpected.compareAndSet(null, new AssertionError("second completion accepted"));
                }
                catch (final IllegalStateException ex)
                {
                    if (ex.getMessage().contains("completed twice"))
                    {
                        refused.incrementAndGet();
                    }
                    else
                    {
                        unexpected.compareAndSet(null, ex);
                    }
                }
            }
        };
        try
        {
            start(twice);
            final int flushes = 3 * QUEUE;
            for (int k = 0; k < flushes; k++)
            {
                publish(k, new Request(VhostUser.VIRTIO_BLK_T_FLUSH, 0, VhostUser.VIRTIO_BLK_S_OK));
                fe.kick(0);
                fe.awaitUsed(0, k + 1);
                assertThat(fe.guest.get((int)status(k % QUEUE))).isEqualTo((byte)VhostUser.VIRTIO_BLK_S_OK);
            }
            // The worker makes the second call after the first published the used entry.
            final long deadline = System.nanoTime() + 5_000_000_000L;
            while (refused.get() + (unexpected.get() == null ? 0 : 1) < flushes && System.nanoTime() < deadline)
            {
                Thread.sleep(1);
            }
            assertThat(unexpected.get()).isNull();
            assertThat(refused.get()).as("every second call, also on entries used before").isEqualTo(flushes);
        }
        finally
        {
            twice.close();
        }
    }
}
