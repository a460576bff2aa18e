package dev.tidemark.engine.fleece;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.RawFileStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Fleecing: bounded copy-before-write space under each policy; the view never returns wrong data. */
@Timeout(60)
class FleecingPolicyTest
{
    private static final int SIZE = 4 << 20;
    private static final int CHUNK = 64 << 10;

    @TempDir
    Path dir;

    private final long seed = System.nanoTime();
    private final List<String> events = new CopyOnWriteArrayList<>();
    private TrackedDisk disk;
    private byte[] base;

    @BeforeEach
    void open() throws Exception
    {
        final RawFileStore store = RawFileStore.create(dir.resolve("disk.raw"), SIZE);
        base = new byte[SIZE];
        new SplittableRandom(seed).nextBytes(base);
        store.write(0, ByteBuffer.wrap(base));
        disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bitmaps")).withName("vda"));
        final EngineEvents listener = (name, data) -> events.add(name + " " + data);
        disk.addListener(listener);
    }

    @AfterEach
    void close() throws Exception
    {
        disk.close();
    }

    private static byte[] readAll(final FleecingView view) throws IOException
    {
        final ByteBuffer all = ByteBuffer.allocate(SIZE);
        view.read(0, all);
        return all.array();
    }

    private void guestWrite(final int chunk) throws IOException
    {
        final byte[] data = new byte[CHUNK];
        Arrays.fill(data, (byte)(chunk + 1));
        disk.write((long)chunk * CHUNK, ByteBuffer.wrap(data), false);
    }

    @Test
    void breakSnapshotBreaksTheViewAndLetsGuestWritesThrough() throws Exception
    {
        final FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir, 2L * CHUNK));
        guestWrite(1);
        guestWrite(5);
        assertThat(readAll(view)).as("two chunks fit (seed " + seed + ")").isEqualTo(base);
        assertThat(view.cbwBytesUsed()).isEqualTo(2L * CHUNK);
        guestWrite(9);
        assertThat(view.brokenReason()).contains("copy-before-write space of 131072 bytes is exhausted");
        assertThatThrownBy(() -> readAll(view)).isInstanceOf(IOException.class)
            .hasMessageContaining("fleecing view of 'vda' is broken: copy-before-write space");
        final ByteBuffer chunk9 = ByteBuffer.allocate(CHUNK);
        disk.read(9L * CHUNK, chunk9);
        assertThat(chunk9.array()[0]).as("the guest write landed").isEqualTo((byte)10);
        assertThat(events).anyMatch(e -> e.startsWith("__dev.tidemark_FLEECING_BROKEN"));
        view.close();
        assertThat(Files.list(dir).filter(p -> p.toString().endsWith(".cbw"))).isEmpty();
    }

    @Test
    void breakGuestWriteFailsTheWriteAndKeepsTheView() throws Exception
    {
        final FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir, 2L * CHUNK)
            .withOnCbwError(FleecingView.OnCbwError.BREAK_GUEST_WRITE));
        guestWrite(1);
        guestWrite(5);
        assertThatThrownBy(() -> guestWrite(9)).isInstanceOf(IOException.class)
            .hasMessageContaining("No space left on device");
        assertThat(view.brokenReason()).isNull();
        assertThat(view.guestWritesRefused()).isEqualTo(1);
        assertThat(readAll(view)).as("view stays exact (seed " + seed + ")").isEqualTo(base);
        final ByteBuffer chunk9 = ByteBuffer.allocate(CHUNK);
        disk.read(9L * CHUNK, chunk9);
        assertThat(chunk9.array()).as("nothing of the refused write landed")
            .isEqualTo(Arrays.copyOfRange(base, 9 * CHUNK, 10 * CHUNK));
        guestWrite(1);
        assertThat(readAll(view)).isEqualTo(base);
        view.close();
        assertThatThrownBy(() -> readAll(view)).hasMessageContaining("closed");
        guestWrite(9);
    }

    @Test
    void viewIsReadOnlyAndChecksRanges() throws Exception
    {
        try (FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir, SIZE)))
        {
            assertThat(view.isReadOnly()).isTrue();
            assertThat(view.size()).isEqualTo(SIZE);
            assertThatThrownBy(() -> view.write(0, ByteBuffer.allocate(512))).hasMessageContaining("read-only");
            assertThatThrownBy(() -> view.discard(0, 512)).hasMessageContaining("read-only");
            assertThatThrownBy(() -> view.writeZeroes(0, 512, true)).hasMessageContaining("read-only");
            assertThatThrownBy(() -> view.read(SIZE - 10, ByteBuffer.allocate(20)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside the view");
            assertThatThrownBy(() -> new FleecingOptions(dir, -1, FleecingView.OnCbwError.BREAK_SNAPSHOT, CHUNK))
                .isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> new FleecingOptions(dir, 1, FleecingView.OnCbwError.BREAK_SNAPSHOT, 1000))
                .isInstanceOf(IllegalArgumentException.class);
        }
    }

    /** Concurrent writers and readers with a small CBW space: every read is exact or fails, never wrong. */
    @Test
    void neverWrongDataUnderLoadWhenSpaceRunsOut() throws Exception
    {
        for (final FleecingView.OnCbwError policy : FleecingView.OnCbwError.values())
        {
            final byte[] atCut = new byte[SIZE];
            disk.read(0, ByteBuffer.wrap(atCut));
            final FleecingView view = FleecingView.open(disk, FleecingOptions.of(dir, 24L * CHUNK)
                .withOnCbwError(policy));
            final AtomicBoolean stop = new AtomicBoolean();
            final AtomicReference<Throwable> failure = new AtomicReference<>();
            final List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < 2; w++)
            {
                final SplittableRandom random = new SplittableRandom(seed + w);
                threads.add(new Thread(() ->
                {
                    final byte[] data = new byte[8192];
                    while (!stop.get())
                    {
                        random.nextBytes(data);
                        try
                        {
                            disk.write(512L * random.nextInt((SIZE - data.length) / 512), ByteBuffer.wrap(data), false);
                        }
                        catch (final IOException refused)
                        {
                            if (policy != FleecingView.OnCbwError.BREAK_GUEST_WRITE)
                            {
                                failure.compareAndSet(null, refused);
                            }
                        }
                    }
                }));
            }
            for (int r = 0; r < 2; r++)
            {
                final SplittableRandom random = new SplittableRandom(seed * 7 + r);
                threads.add(new Thread(() ->
                {
                    for (int i = 0; i < 400 && !stop.get(); i++)
                    {
                        final int len = 512 * (1 + random.nextInt(512));
                        final int off = 512 * random.nextInt((SIZE - len) / 512);
                        final ByteBuffer buffer = ByteBuffer.allocate(len);
                        try
                        {
                            view.read(off, buffer);
                        }
                        catch (final IOException broken)
                        {
                            if (policy == FleecingView.OnCbwError.BREAK_GUEST_WRITE)
                            {
                                failure.compareAndSet(null, broken);
                            }
                            continue;
                        }
                        if (!Arrays.equals(buffer.array(), Arrays.copyOfRange(atCut, off, off + len)))
                        {
                            failure.compareAndSet(null, new AssertionError("wrong data at " + off + "+" + len
                                + " under " + policy.qmpName() + " (seed " + seed + ")"));
                        }
                    }
                }));
            }
            threads.forEach(Thread::start);
            for (int i = 2; i < threads.size(); i++)
            {
                threads.get(i).join(30_000);
            }
            stop.set(true);
            for (final Thread t : threads)
            {
                t.join(30_000);
            }
            if (failure.get() != null)
            {
                throw new AssertionError(policy.qmpName() + " (seed " + seed + ")", failure.get());
            }
            assertThat(view.cbwBytesUsed()).isLessThanOrEqualTo(24L * CHUNK);
            view.close();
        }
    }

    @Test
    void policyNamesMatchQemu()
    {
        assertThat(FleecingView.OnCbwError.fromQmpName("break-snapshot")).isEqualTo(FleecingView.OnCbwError.BREAK_SNAPSHOT);
        assertThat(FleecingView.OnCbwError.fromQmpName("break-guest-write"))
            .isEqualTo(FleecingView.OnCbwError.BREAK_GUEST_WRITE);
        assertThat(FleecingView.OnCbwError.fromQmpName("other")).isNull();
    }
}
