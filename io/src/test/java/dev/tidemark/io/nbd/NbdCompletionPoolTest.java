package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.DelayedCompleter;
import dev.tidemark.io.testing.DiscardingExport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static dev.tidemark.io.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The server's reused completions, driven from JUnit's thread (handshake, replies), a sender thread (requests; it
 * uses only the raw client's output stream, JUnit's thread only its input) and the export's completing threads:
 * far more requests than the pool holds each get exactly one reply, and a completion called twice fails even when
 * its pool entry was reused in between.
 */
@Timeout(120)
class NbdCompletionPoolTest
{
    private static final int SIZE = 64 << 20;
    private static final String POOL_EXPORT = "pool";
    private static final Set<NbdExport.Feature> POOL_FEATURES =
        EnumSet.of(NbdExport.Feature.FLUSH, NbdExport.Feature.TRIM, NbdExport.Feature.WRITE_ZEROES);
    private static final int BLOCK = 4096;

    /** Offsets from here on park their completion until the test releases it; the random requests stay below. */
    private static final long PARK_FROM = SIZE - (1 << 20);

    /** What the test export does with one modifying request, chosen from its offset. */
    private enum Outcome
    {
        /** Completes with OK on a completing thread. */
        OK,
        /** Completes with ENOSPC on a completing thread. */
        FAILS,
        /** Keeps the completion and throws instead of completing (the server answers EIO). */
        THROWS,
        /** Keeps the completion until the test completes it. */
        PARKS;

        static Outcome of(final long offset)
        {
            final long block = offset / BLOCK;
            return offset >= PARK_FROM ? PARKS : block % 11 == 3 ? THROWS : block % 5 == 1 ? FAILS : OK;
        }
    }

    /** Completes on other threads after random delays, or as {@link Outcome} says; thread-safe. */
    private static final class ScatteringExport extends DiscardingExport
    {
        private final DelayedCompleter completer;
        /** Completions the export kept when it threw; the server must never reuse them. */
        final ConcurrentLinkedQueue<NbdCompletion> kept = new ConcurrentLinkedQueue<>();
        final LinkedBlockingQueue<NbdCompletion> parked = new LinkedBlockingQueue<>();

        ScatteringExport(final long seed)
        {
            super(POOL_EXPORT, SIZE, POOL_FEATURES);
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
        protected void modify(final long offset, final NbdCompletion done)
        {
            switch (offset < 0 ? Outcome.OK : Outcome.of(offset))
            {
                case THROWS ->
                {
                    kept.add(done);
                    throw new IllegalStateException("the export failed at " + offset);
                }
                case PARKS -> parked.add(done);
                case FAILS -> completer.later(done, NbdProtocol.ENOSPC);
                default -> completer.later(done, NbdProtocol.OK);
            }
        }

    }

    @Test
    void farMoreRequestsThanThePoolHoldsEachGetOneReplyWithTheirCookieAndError() throws Exception
    {
        final long seed = System.nanoTime();
        final int requests = 40 * NbdConnection.MAX_IN_FLIGHT;
        final ScatteringExport export = new ScatteringExport(seed);
        final SplittableRandom random = new SplittableRandom(seed + 1);
        final Map<Long, Integer> expected = new HashMap<>();
        final List<long[]> plan = new ArrayList<>();
        for (long cookie = 1; cookie <= requests; cookie++)
        {
            final int kind = random.nextInt(10);
            final int type = kind < 6 ? CMD_WRITE : kind < 7 ? CMD_TRIM : kind < 8 ? CMD_WRITE_ZEROES : CMD_FLUSH;
            final long offset = type == CMD_FLUSH ? 0 : (long)random.nextInt((int)(PARK_FROM / BLOCK)) * BLOCK;
            // One write in twenty is empty: the reader completes those itself.
            final long length = type == CMD_FLUSH || kind == 0 && random.nextInt(4) == 0 ? 0 : BLOCK;
            plan.add(new long[] {type, cookie, offset, length});
            final Outcome outcome = type == CMD_FLUSH || length == 0 ? Outcome.OK : Outcome.of(offset);
            expected.put(cookie, switch (outcome)
            {
                case FAILS -> ENOSPC;
                case THROWS -> EIO;
                default -> OK;
            });
        }
        try (NbdServer server = new NbdServer())
        {
            server.addExport(export);
            final InetSocketAddress address = server.listenTcp(0);
            try (RawNbd raw = new RawNbd(address, 30_000))
            {
                raw.open("pool", false);
                final AtomicReference<Throwable> senderFailure = new AtomicReference<>();
                final Thread sender = new Thread(() ->
                {
                    try
                    {
                        for (final long[] request : plan)
                        {
                            raw.request(0, (int)request[0], request[1], request[2], request[3],
                                request[0] == CMD_WRITE ? new byte[(int)request[3]] : null);
                        }
                    }
                    catch (final Throwable ex)
                    {
                        senderFailure.set(ex);
                    }
                }, "pool-test-sender");
                sender.setDaemon(true);
                sender.start();
                final Map<Long, Integer> answered = new HashMap<>();
                for (int n = 0; n < requests; n++)
                {
                    final RawNbd.Reply reply = raw.readReply(Map.of());
                    assertThat(answered.put(reply.cookie, reply.error)).as("cookie %d answered twice, seed %d",
                        reply.cookie, seed).isNull();
                }
                sender.join(10_000);
                assertThat(senderFailure.get()).isNull();
                assertThat(answered).as("seed %d", seed).isEqualTo(expected);
                assertThat(export.unexpected()).as("a completing thread failed").isNull();

                // The completions the export kept when it threw were answered (EIO) long ago. Their pool entries
                // must not have been reused: with every entry of the pool armed by a parked write, a late call must
                // fail instead of answering someone else's request.
                final int parkedWrites = NbdConnection.MAX_IN_FLIGHT;
                for (int i = 0; i < parkedWrites; i++)
                {
                    raw.request(0, CMD_WRITE, requests + 1L + i, PARK_FROM + (long)i * BLOCK, BLOCK, new byte[BLOCK]);
                }
                final List<NbdCompletion> parked = new ArrayList<>();
                while (parked.size() < parkedWrites)
                {
                    final NbdCompletion next = export.parked.poll(10, TimeUnit.SECONDS);
                    assertThat(next).as("parked write %d reached the export", parked.size()).isNotNull();
                    parked.add(next);
                }
                assertThat(export.kept).isNotEmpty();
                for (final NbdCompletion late : export.kept)
                {
                    assertThatThrownBy(() -> late.complete(OK)).isInstanceOf(IllegalStateException.class)
                        .hasMessageContaining("completed twice");
                }
                for (final NbdCompletion done : parked)
                {
                    done.complete(OK);
                }
                final Set<Long> parkedAnswers = new HashSet<>();
                for (int i = 0; i < parkedWrites; i++)
                {
                    final RawNbd.Reply reply = raw.readReply(Map.of());
                    assertThat(reply.error).isZero();
                    parkedAnswers.add(reply.cookie);
                }
                assertThat(parkedAnswers).hasSize(parkedWrites).allMatch(cookie -> cookie > requests);
                raw.request(0, CMD_FLUSH, requests + parkedWrites + 1L, 0, 0, null);
                final RawNbd.Reply last = raw.readReply(Map.of());
                assertThat(last.cookie).as("no stray reply from the late calls").isEqualTo(requests + parkedWrites + 1L);
                assertThat(last.error).isZero();
            }
        }
        finally
        {
            export.close();
        }
    }

    @Test
    void aReusedCompletionCompletedTwiceStillThrows() throws Exception
    {
        final AtomicInteger refused = new AtomicInteger();
        final AtomicReference<Throwable> unexpected = new AtomicReference<>();
        final NbdExport twice = new DiscardingExport(POOL_EXPORT, SIZE, POOL_FEATURES)
        {
            @Override
            protected void modify(final long offset, final NbdCompletion done)
            {
                // On the reader thread, so the server cannot reuse the entry between the two calls.
                done.complete(OK);
                try
                {
                    done.complete(OK);
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
        final int writes = 3 * NbdConnection.MAX_IN_FLIGHT;
        try (NbdServer server = new NbdServer())
        {
            server.addExport(twice);
            final InetSocketAddress address = server.listenTcp(0);
            try (RawNbd raw = new RawNbd(address, 30_000))
            {
                raw.open("pool", false);
                for (long cookie = 1; cookie <= writes; cookie++)
                {
                    raw.request(0, CMD_WRITE, cookie, 0, 8, new byte[8]);
                    final RawNbd.Reply reply = raw.readReply(Map.of());
                    assertThat(reply.cookie).isEqualTo(cookie);
                    assertThat(reply.error).isZero();
                }
            }
        }
        assertThat(unexpected.get()).isNull();
        assertThat(refused.get()).as("every second call, also on entries used before").isEqualTo(writes);
    }

    /**
     * The interleaving CI once hit, forced: the reader holds a permit, but the pool's head slot is still being
     * filled by a returning thread. The reader must wait for it (past the spinning phase too), not call the pool dry.
     */
    @Test
    void aReaderWaitsForAHeadSlotStillBeingFilled()
    {
        final AtomicInteger polls = new AtomicInteger();
        final Object completion = new Object();
        final Object found = NbdConnection.pollUntil(() -> polls.incrementAndGet() <= 5_000 ? null : completion,
            TimeUnit.SECONDS.toNanos(10));
        assertThat(found).isSameAs(completion);
        assertThat(polls.get()).isEqualTo(5_001);
    }

    @Test
    void aCompletionThatNeverComesBackIsReportedAfterTheBound()
    {
        final long start = System.nanoTime();
        assertThat(NbdConnection.<Object>pollUntil(() -> null, TimeUnit.MILLISECONDS.toNanos(50))).isNull();
        assertThat(System.nanoTime() - start).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(50));
    }
}
