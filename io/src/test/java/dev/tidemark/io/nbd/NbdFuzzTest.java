package dev.tidemark.io.nbd;

import dev.tidemark.io.testing.HeapStore;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import static dev.tidemark.io.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Seeded protocol fuzzing of the server, confined to JUnit's thread (the server's own threads do the rest): random and mutated bytes at every stage (greeting, client
 * flags, options, requests, payloads, disconnects), each checked against the protocol's answer, with a
 * control client working throughout and a byte model of the export that only acknowledged writes change.
 *
 * <p>Export layout: {@code [0, CHECKED)} is modelled exactly; {@code [CHECKED, SCRATCH)} belongs to the
 * control client; {@code [SCRATCH, SIZE)} takes writes that race a disconnect (their outcome is unknown
 * by design, so that region is not modelled).
 */
class NbdFuzzTest
{
    private static final int SIZE = 1 << 20;
    private static final int CHECKED = 448 * 1024;
    private static final int SCRATCH = 512 * 1024;
    private static final int CASES = Integer.getInteger("tidemark.nbd.fuzzCases", 3000);
    private static final int TIMEOUT_MILLIS = 5000;

    private final byte[] model = new byte[SIZE];
    private HeapStore store;
    private InetSocketAddress address;
    private final int[] kinds = new int[5];
    private final Map<String, Integer> outcomes = new java.util.TreeMap<>();

    @Test
    @Timeout(120)
    void fuzzEveryStage() throws Exception
    {
        final long seed = Long.getLong("tidemark.nbd.fuzzSeed", System.nanoTime());
        final SplittableRandom random = new SplittableRandom(seed);
        random.nextBytes(model);
        store = new HeapStore(model, false);
        final byte[] roBytes = new byte[64 * 1024];
        random.nextBytes(roBytes);
        final ExecutorService completer = Executors.newFixedThreadPool(2);
        final long started = System.nanoTime();
        int done = 0;
        try (NbdServer server = new NbdServer(64, java.time.Duration.ofSeconds(3)))
        {
            server.addExport(new RecordingExport(new BlockStoreExport("w", store), new BitSetBitmap(4096, SIZE), "fz",
                completer));
            server.addExport(new BlockStoreExport("r", "", new HeapStore(roBytes, true), true, List.of()));
            address = server.listenTcp(0);
            try (NbdClient control = NbdClient.builder().tcp("127.0.0.1", address.getPort()).exportName("w")
                .connections(1).replyTimeout(java.time.Duration.ofSeconds(10)).connect())
            {
                for (; done < CASES; done++)
                {
                    final int kind = random.nextInt(100);
                    if (kind < 12)
                    {
                        greetingCase(random);
                        kinds[0]++;
                    }
                    else if (kind < 40)
                    {
                        optionCase(random);
                        kinds[1]++;
                    }
                    else if (kind < 82)
                    {
                        transmissionCase(random);
                        kinds[2]++;
                    }
                    else if (kind < 93)
                    {
                        burstCase(random);
                        kinds[3]++;
                    }
                    else
                    {
                        raceCase(random);
                        kinds[4]++;
                    }
                    if (done % 20 == 0)
                    {
                        controlCheck(control, random);
                    }
                }
                controlCheck(control, random);
                assertThat(java.util.Arrays.mismatch(store.copy(0, CHECKED), java.util.Arrays.copyOf(model, CHECKED)))
                    .as("modelled region after %d cases", done).isEqualTo(-1);
                final long deadline = System.currentTimeMillis() + 10_000;
                while (server.connectionCount() > 1 && System.currentTimeMillis() < deadline)
                {
                    Thread.sleep(10);
                }
                assertThat(server.connectionCount()).as("only the control connection is left").isEqualTo(1);
            }
        }
        catch (final Throwable ex)
        {
            throw new AssertionError("NBD fuzz failed in case " + done + " with seed " + seed
                + " (rerun with -Dtidemark.nbd.fuzzSeed=" + seed + ")", ex);
        }
        finally
        {
            completer.shutdownNow();
        }
        System.out.printf("NBD fuzz: %d cases (greeting %d, option %d, transmission %d, pipelined burst %d, "
            + "disconnect race %d), seed %d, %d ms; outcomes %s%n", done, kinds[0], kinds[1], kinds[2], kinds[3],
            kinds[4], seed, (System.nanoTime() - started) / 1_000_000, outcomes);
        assertThat(done).isEqualTo(CASES);
    }

    private void count(final String outcome)
    {
        count(outcome, 1);
    }

    private void count(final String outcome, final int times)
    {
        outcomes.merge(outcome, times, Integer::sum);
    }

    private void controlCheck(final NbdClient control, final SplittableRandom random) throws IOException
    {
        final byte[] data = new byte[1 + random.nextInt(8192)];
        random.nextBytes(data);
        final long at = CHECKED + random.nextInt(SCRATCH - CHECKED - data.length);
        control.write(at, ByteBuffer.wrap(data));
        final ByteBuffer back = ByteBuffer.allocate(data.length);
        control.read(at, back);
        assertThat(back.array()).isEqualTo(data);
        final int from = random.nextInt(CHECKED - 4096);
        final ByteBuffer checked = ByteBuffer.allocate(4096);
        control.read(from, checked);
        assertThat(checked.array()).isEqualTo(java.util.Arrays.copyOfRange(model, from, from + 4096));
    }

    // ------------------------------------------------------------------------------------------------

    private void greetingCase(final SplittableRandom random) throws IOException
    {
        try (RawNbd raw = new RawNbd(address, TIMEOUT_MILLIS))
        {
            if (random.nextBoolean())
            {
                raw.greeting();
                final int flags = random.nextBoolean() ? random.nextInt() : random.nextInt(4);
                raw.send(ByteBuffer.allocate(4).putInt(flags).array());
                if ((flags & ~3) != 0)
                {
                    assertThat(raw.closedByServer()).as("bad client flags 0x%x close the connection", flags).isTrue();
                    count("bad-client-flags-closed");
                    return;
                }
            }
            final byte[] garbage = new byte[random.nextInt(48)];
            random.nextBytes(garbage);
            raw.send(garbage);
            count("garbage-then-close");
        }
    }

    private void optionCase(final SplittableRandom random) throws IOException
    {
        try (RawNbd raw = new RawNbd(address, TIMEOUT_MILLIS))
        {
            raw.greeting();
            final int clientFlags = random.nextInt(10) == 0 ? 0 : random.nextInt(10) == 0 ? 1 : 3;
            raw.send(ByteBuffer.allocate(4).putInt(clientFlags).array());
            boolean structured = false;
            if (clientFlags != 0 && random.nextInt(3) == 0)
            {
                raw.sendOption(IHAVEOPT, OPT_STRUCTURED_REPLY, 0, new byte[0]);
                assertThat(last(raw.readOptionReplies(OPT_STRUCTURED_REPLY))).isEqualTo(REP_ACK);
                structured = true;
            }
            final int mutation = random.nextInt(20);
            if (mutation == 0)
            {
                raw.sendOption(random.nextLong(), random.nextInt(12), 0, new byte[0]);
                assertThat(raw.closedByServer()).as("bad option magic").isTrue();
                count("bad-option-magic-closed");
                return;
            }
            if (mutation == 1)
            {
                raw.sendOption(IHAVEOPT, random.nextInt(12), (1 << 20) + 1 + random.nextInt(1 << 30), new byte[0]);
                assertThat(raw.closedByServer()).as("oversized option").isTrue();
                count("oversized-option-closed");
                return;
            }
            if (mutation == 2)
            {
                final byte[] part = new byte[random.nextInt(20)];
                random.nextBytes(part);
                raw.sendOption(IHAVEOPT, random.nextInt(12), part.length + 1 + random.nextInt(100), part);
                count("truncated-option");
                return;
            }
            final int option = random.nextInt(8) == 0 ? random.nextInt() : random.nextInt(13);
            final byte[] data = optionData(random, option);
            raw.sendOption(IHAVEOPT, option, data.length, data);
            if (clientFlags == 0 && option != OPT_EXPORT_NAME)
            {
                assertThat(raw.closedByServer()).as("option %d without fixed newstyle", option).isTrue();
                count("not-fixed-newstyle-closed");
                return;
            }
            if (option == OPT_EXPORT_NAME)
            {
                final String name = new String(data, StandardCharsets.UTF_8);
                if (isExport(data))
                {
                    final byte[] reply = new byte[(clientFlags & 2) != 0 ? 10 : 134];
                    raw.in.readFully(reply);
                    assertThat(ByteBuffer.wrap(reply).getLong()).isEqualTo(name.equals("r") ? 64 * 1024 : SIZE);
                    raw.request(0, CMD_DISC, 1, 0, 0, null);
                    assertThat(raw.closedByServer()).isTrue();
                    count("export-name-ok");
                }
                else
                {
                    assertThat(raw.closedByServer()).as("EXPORT_NAME of an unknown export").isTrue();
                    count("export-name-unknown-closed");
                }
                return;
            }
            final List<RawNbd.OptionReply> replies = raw.readOptionReplies(option);
            final int type = last(replies);
            final int expected = expectedOptionReply(option, data, structured);
            if (expected == Integer.MIN_VALUE)
            {
                assertThat(type).as("option %d", option).isIn(REP_ACK, REP_ERR_INVALID, REP_ERR_UNKNOWN);
            }
            else
            {
                assertThat(type).as("option %d with %d bytes", option, data.length).isEqualTo(expected);
            }
            count("option-" + (option >= 0 && option <= 12 ? option : "unknown") + "-" + Integer.toHexString(type));
            if (option == OPT_ABORT)
            {
                assertThat(raw.closedByServer()).isTrue();
                return;
            }
            if (option == OPT_GO && type == REP_ACK)
            {
                raw.request(0, CMD_FLUSH, 7, 0, 0, null);
                assertThat(raw.readReply(Map.of()).error).isZero();
                raw.request(0, CMD_DISC, 8, 0, 0, null);
                assertThat(raw.closedByServer()).isTrue();
                return;
            }
            raw.sendOption(IHAVEOPT, OPT_LIST, 0, new byte[0]);
            final List<RawNbd.OptionReply> list = raw.readOptionReplies(OPT_LIST);
            assertThat(list).hasSize(3);
            assertThat(last(list)).isEqualTo(REP_ACK);
        }
    }

    private static boolean isExport(final byte[] name)
    {
        final String text = new String(name, StandardCharsets.UTF_8);
        return (text.equals("w") || text.equals("r")) && java.util.Arrays.equals(text.getBytes(StandardCharsets.UTF_8), name);
    }

    private static int last(final List<RawNbd.OptionReply> replies)
    {
        return replies.get(replies.size() - 1).type;
    }

    private static byte[] optionData(final SplittableRandom random, final int option)
    {
        final String name = pick(random, "w", "r", "", "nosuch", "w\u00e9");
        switch (random.nextInt(4))
        {
            case 0:
            {
                final byte[] data = new byte[random.nextInt(40)];
                random.nextBytes(data);
                return data;
            }
            case 1:
                if (option == OPT_EXPORT_NAME)
                {
                    return name.getBytes(StandardCharsets.UTF_8);
                }
                if (option == OPT_INFO || option == OPT_GO)
                {
                    return RawNbd.goData(name, random.nextInt(5), random.nextInt(5));
                }
                if (option == OPT_LIST_META_CONTEXT || option == OPT_SET_META_CONTEXT)
                {
                    return RawNbd.metaData(name, pick(random, "base:allocation", "qemu:dirty-bitmap:fz", "qemu:", "x:y"));
                }
                return new byte[0];
            case 2:
            {
                // Well-formed but with a length field that lies.
                final byte[] data = option == OPT_INFO || option == OPT_GO ? RawNbd.goData(name, 3)
                    : RawNbd.metaData(name, "base:allocation");
                ByteBuffer.wrap(data).putInt(0, random.nextInt());
                return data;
            }
            default:
                return new byte[0];
        }
    }

    @SafeVarargs
    private static <T> T pick(final SplittableRandom random, final T... values)
    {
        return values[random.nextInt(values.length)];
    }

    /** @return the final reply the server must send, or MIN_VALUE when several are acceptable. */
    private static int expectedOptionReply(final int option, final byte[] data, final boolean structured)
    {
        switch (option)
        {
            case OPT_ABORT:
                return REP_ACK;
            case OPT_LIST:
                return data.length == 0 ? REP_ACK : REP_ERR_INVALID;
            case OPT_STARTTLS:
                return REP_ERR_POLICY;
            case OPT_STRUCTURED_REPLY:
                return data.length != 0 || structured ? REP_ERR_INVALID : REP_ACK;
            case OPT_INFO:
            case OPT_GO:
            {
                if (data.length < 6)
                {
                    return REP_ERR_INVALID;
                }
                final ByteBuffer buffer = ByteBuffer.wrap(data);
                final long nameLength = Integer.toUnsignedLong(buffer.getInt());
                if (nameLength > data.length - 6)
                {
                    return REP_ERR_INVALID;
                }
                final byte[] name = java.util.Arrays.copyOfRange(data, 4, 4 + (int)nameLength);
                final int count = buffer.getShort(4 + (int)nameLength) & 0xffff;
                if (data.length - 6 - nameLength != count * 2L)
                {
                    return REP_ERR_INVALID;
                }
                if (!validUtf8(name))
                {
                    return REP_ERR_INVALID;
                }
                return isExport(name) ? REP_ACK : REP_ERR_UNKNOWN;
            }
            case OPT_LIST_META_CONTEXT:
            case OPT_SET_META_CONTEXT:
                return structured ? Integer.MIN_VALUE : REP_ERR_INVALID;
            default:
                return REP_ERR_UNSUP;
        }
    }

    private static boolean validUtf8(final byte[] bytes)
    {
        try
        {
            StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes));
            return true;
        }
        catch (final java.nio.charset.CharacterCodingException ex)
        {
            return false;
        }
    }

    // ------------------------------------------------------------------------------------------------

    private static final int[] COMMANDS = {CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES,
        CMD_BLOCK_STATUS};

    private void transmissionCase(final SplittableRandom random) throws IOException
    {
        final boolean readOnly = random.nextInt(5) == 0;
        final boolean structured = random.nextBoolean();
        final List<String> asked = new ArrayList<>();
        if (structured)
        {
            for (final String context : new String[] {"base:allocation", "qemu:dirty-bitmap:fz", "nosuch:ctx"})
            {
                if (random.nextBoolean())
                {
                    asked.add(context);
                }
            }
        }
        final int selected = readOnly ? (asked.contains("base:allocation") ? 1 : 0)
            : (int)asked.stream().filter(c -> !c.equals("nosuch:ctx")).count();
        try (RawNbd raw = new RawNbd(address, TIMEOUT_MILLIS))
        {
            raw.open(readOnly ? "r" : "w", structured, asked.toArray(new String[0]));
            final long size = raw.exportSize;
            final int requests = 1 + random.nextInt(12);
            for (int i = 0; i < requests; i++)
            {
                final int type = random.nextInt(10) == 0 ? random.nextInt(65536) : COMMANDS[random.nextInt(COMMANDS.length)];
                if (type == CMD_DISC)
                {
                    continue;
                }
                final int flags = random.nextInt(10) < 7 ? 0 : random.nextInt(10) < 5 ? 1 << random.nextInt(5) : random.nextInt(65536);
                final long length = length(random);
                final long offset = offset(random, length, size, readOnly);
                final long cookie = random.nextLong();
                if (type == CMD_WRITE && length > MAX_PAYLOAD)
                {
                    raw.request(flags, type, cookie, offset, length, null);
                    final RawNbd.Reply reply = raw.readReply(Map.of());
                    assertThat(reply.error).isEqualTo(EOVERFLOW);
                    assertThat(raw.closedByServer()).as("oversized write payload ends the connection").isTrue();
                    count("oversized-write-closed");
                    return;
                }
                byte[] payload = null;
                if (type == CMD_WRITE)
                {
                    payload = new byte[(int)length];
                    random.nextBytes(payload);
                }
                raw.request(flags, type, cookie, offset, length, payload);
                final RawNbd.Reply reply;
                try
                {
                    reply = raw.readReply(type == CMD_READ ? Map.of(cookie, length) : Map.of());
                }
                catch (final IOException ex)
                {
                    throw new AssertionError("no reply to " + commandName(type) + " flags 0x" + Integer.toHexString(flags)
                        + " offset " + offset + " length " + length + " structured " + structured, ex);
                }
                assertThat(reply.cookie).isEqualTo(cookie);
                final int expected = expectedError(raw.transmissionFlags, readOnly, structured, selected, type, flags,
                    offset, length, size);
                assertThat(reply.error).as("%s flags 0x%x offset %d length %d on %s (structured %b)",
                    commandName(type), flags, offset, length, readOnly ? "r" : "w", structured).isEqualTo(expected);
                count((type > CMD_BLOCK_STATUS ? "UNKNOWN_COMMAND" : commandName(type)) + "-" + errorName(expected));
                if (expected == OK)
                {
                    apply(type, flags, offset, length, payload, reply, readOnly, structured, selected);
                }
            }
            finish(raw, random, size, readOnly);
        }
    }

    private void apply(final int type, final int flags, final long offset, final long length, final byte[] payload,
        final RawNbd.Reply reply, final boolean readOnly, final boolean structured, final int selected)
    {
        // The part of the range inside the modelled region (requests may straddle it).
        final int from = (int)Math.min(offset, CHECKED);
        final int to = (int)Math.min(offset + length, CHECKED);
        final boolean modelled = !readOnly && to > from;
        switch (type)
        {
            case CMD_WRITE:
                if (modelled)
                {
                    System.arraycopy(payload, 0, model, from, to - from);
                }
                break;
            case CMD_TRIM:
            case CMD_WRITE_ZEROES:
                if (modelled)
                {
                    java.util.Arrays.fill(model, from, to, (byte)0);
                }
                break;
            case CMD_READ:
                if (length > 0)
                {
                    assertThat(reply.data).hasSize((int)length);
                    if (structured)
                    {
                        assertThat(reply.dataOffset).isEqualTo(offset);
                    }
                    if (modelled)
                    {
                        assertThat(java.util.Arrays.copyOf(reply.data, to - from))
                            .isEqualTo(java.util.Arrays.copyOfRange(model, from, to));
                    }
                }
                break;
            case CMD_BLOCK_STATUS:
                assertThat(reply.statusChunks).as("one chunk per selected context").hasSize(selected);
                for (final int[] chunk : reply.statusChunks)
                {
                    long sum = 0;
                    final int extents = (chunk.length - 1) / 2;
                    if ((flags & CMD_FLAG_REQ_ONE) != 0)
                    {
                        assertThat(extents).isEqualTo(1);
                    }
                    for (int e = 0; e < extents; e++)
                    {
                        final long extent = Integer.toUnsignedLong(chunk[1 + 2 * e]);
                        assertThat(extent).isPositive();
                        sum += extent;
                    }
                    assertThat(sum).isLessThanOrEqualTo(length);
                }
                break;
            default:
                break;
        }
    }

    private static long length(final SplittableRandom random)
    {
        final int pick = random.nextInt(100);
        if (pick < 15)
        {
            return 0;
        }
        if (pick < 65)
        {
            return 1 + random.nextInt(8192);
        }
        if (pick < 90)
        {
            return 8193 + random.nextInt(96 * 1024);
        }
        if (pick < 95)
        {
            return MAX_PAYLOAD + 1 + (random.nextLong() & 0x7fffffffL) % (0xffffffffL - MAX_PAYLOAD);
        }
        return SIZE - random.nextInt(16);
    }

    private static long offset(final SplittableRandom random, final long length, final long size, final boolean readOnly)
    {
        final int pick = random.nextInt(100);
        if (pick < 60 && length <= CHECKED)
        {
            return random.nextLong(Math.min(CHECKED, size) - Math.min(length, size) + 1);
        }
        if (pick < 70 && length <= size - SCRATCH)
        {
            return readOnly ? random.nextLong(size - length + 1) : SCRATCH + random.nextLong(size - SCRATCH - length + 1);
        }
        if (pick < 80)
        {
            return size - length + random.nextInt(9) - 4 < 0 ? 0 : size - length + random.nextInt(9) - 4;
        }
        if (pick < 90)
        {
            return size + random.nextInt(1 << 20);
        }
        return random.nextLong();
    }

    /** The server's answer, derived from the specification independently of the server's code. */
    private static int expectedError(final int transmissionFlags, final boolean readOnly, final boolean structured,
        final int selected, final int type, final int flags, final long offset, final long length, final long size)
    {
        if (type > CMD_BLOCK_STATUS || type == CMD_DISC)
        {
            return EINVAL;
        }
        int allowed = CMD_FLAG_FUA;
        if (type == CMD_READ && structured)
        {
            allowed |= CMD_FLAG_DF;
        }
        if (type == CMD_WRITE_ZEROES)
        {
            allowed |= CMD_FLAG_NO_HOLE | ((transmissionFlags & TF_SEND_FAST_ZERO) != 0 ? CMD_FLAG_FAST_ZERO : 0);
        }
        if (type == CMD_BLOCK_STATUS)
        {
            allowed |= CMD_FLAG_REQ_ONE;
        }
        if ((flags & ~allowed) != 0)
        {
            return EINVAL;
        }
        if (readOnly && (type == CMD_WRITE || type == CMD_TRIM || type == CMD_WRITE_ZEROES))
        {
            return EPERM;
        }
        if (type == CMD_BLOCK_STATUS && selected == 0)
        {
            return EINVAL;
        }
        if (type == CMD_FLUSH)
        {
            return OK;
        }
        if (type == CMD_READ && length > MAX_PAYLOAD)
        {
            return EOVERFLOW;
        }
        if (offset < 0 || offset > size || length > size - offset)
        {
            return type == CMD_WRITE || type == CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
        }
        if (type == CMD_BLOCK_STATUS && length == 0)
        {
            return EINVAL;
        }
        if (type == CMD_WRITE_ZEROES && length > 0
            && (flags & (CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE)) == (CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE))
        {
            return ENOTSUP;
        }
        return OK;
    }

    /** Ends a transmission case: DISC, an abrupt close, or a truncated frame. */
    private void finish(final RawNbd raw, final SplittableRandom random, final long size, final boolean readOnly)
        throws IOException
    {
        final int pick = random.nextInt(10);
        if (pick < 4)
        {
            raw.request(0, CMD_DISC, 99, 0, 0, null);
            assertThat(raw.closedByServer()).as("DISC closes the connection").isTrue();
            count("disc-closed");
        }
        else if (pick < 7)
        {
            count("abrupt-close");
        }
        else if (pick < 9)
        {
            final ByteBuffer header = ByteBuffer.allocate(28);
            header.putInt(REQUEST_MAGIC).putShort((short)0).putShort((short)CMD_WRITE).putLong(5)
                .putLong(random.nextInt(CHECKED - 4096)).putInt(4096);
            final byte[] partial = new byte[28 + random.nextInt(4096)];
            System.arraycopy(header.array(), 0, partial, 0, 28);
            raw.send(java.util.Arrays.copyOf(partial, random.nextInt(partial.length)));
            count("truncated-write-frame");
        }
        else
        {
            final byte[] junk = new byte[28];
            random.nextBytes(junk);
            raw.send(junk);
            assertThat(raw.closedByServer()).as("bad request magic closes the connection").isTrue();
            count("bad-request-magic-closed");
        }
    }

    private void burstCase(final SplittableRandom random) throws IOException
    {
        final boolean structured = random.nextBoolean();
        try (RawNbd raw = new RawNbd(address, TIMEOUT_MILLIS))
        {
            if (structured)
            {
                raw.open("w", true, "base:allocation", "qemu:dirty-bitmap:fz");
            }
            else
            {
                raw.open("w", false);
            }
            final int count = 5 + random.nextInt(40);
            final Map<Long, Long> readLengths = new HashMap<>();
            final Map<Long, long[]> sent = new HashMap<>();
            for (int i = 0; i < count; i++)
            {
                final long cookie = i;
                final int pick = random.nextInt(10);
                if (pick < 5)
                {
                    final byte[] data = new byte[1 + random.nextInt(65536)];
                    random.nextBytes(data);
                    raw.request(random.nextInt(2), CMD_WRITE, cookie, SCRATCH + random.nextInt(SIZE - SCRATCH - data.length), data.length, data);
                    sent.put(cookie, new long[] {CMD_WRITE, 0, 0});
                }
                else if (pick < 8)
                {
                    final int length = 1 + random.nextInt(65536);
                    final int offset = random.nextInt(CHECKED - length);
                    raw.request(0, CMD_READ, cookie, offset, length, null);
                    readLengths.put(cookie, (long)length);
                    sent.put(cookie, new long[] {CMD_READ, offset, length});
                }
                else if (pick < 9 || !structured)
                {
                    raw.request(0, CMD_FLUSH, cookie, 0, 0, null);
                    sent.put(cookie, new long[] {CMD_FLUSH, 0, 0});
                }
                else
                {
                    raw.request(0, CMD_BLOCK_STATUS, cookie, 0, SIZE, null);
                    sent.put(cookie, new long[] {CMD_BLOCK_STATUS, 0, 0});
                }
            }
            for (int i = 0; i < count; i++)
            {
                final RawNbd.Reply reply = raw.readReply(readLengths);
                final long[] request = sent.remove(reply.cookie);
                assertThat(request).as("reply to a cookie that was sent once").isNotNull();
                assertThat(reply.error).isZero();
                if (request[0] == CMD_READ)
                {
                    assertThat(reply.data).isEqualTo(java.util.Arrays.copyOfRange(model, (int)request[1],
                        (int)(request[1] + request[2])));
                }
                if (request[0] == CMD_BLOCK_STATUS)
                {
                    assertThat(reply.statusChunks).hasSize(2);
                }
            }
            count("pipelined-burst");
            count("pipelined-requests", count);
            raw.request(0, CMD_DISC, 1000, 0, 0, null);
            assertThat(raw.closedByServer()).isTrue();
        }
    }

    private void raceCase(final SplittableRandom random) throws IOException
    {
        try (RawNbd raw = new RawNbd(address, TIMEOUT_MILLIS))
        {
            raw.open("w", random.nextBoolean());
            final int count = 1 + random.nextInt(30);
            for (int i = 0; i < count; i++)
            {
                if (random.nextBoolean())
                {
                    final byte[] data = new byte[1 + random.nextInt(200_000)];
                    random.nextBytes(data);
                    raw.request(0, CMD_WRITE, i, SCRATCH + random.nextInt(SIZE - SCRATCH - data.length), data.length, data);
                }
                else
                {
                    raw.request(0, CMD_READ, i, random.nextInt(SIZE - 300_000), 1 + random.nextInt(300_000), null);
                }
            }
            if (random.nextBoolean())
            {
                raw.socket.shutdownOutput();
            }
            count("race-close");
        }
    }
}
