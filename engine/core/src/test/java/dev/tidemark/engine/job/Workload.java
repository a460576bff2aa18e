package dev.tidemark.engine.job;

import dev.tidemark.engine.RequestKind;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.io.BlockStore;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Concurrent guest writers with a log of every request and its ring sequence, so a test can rebuild the disk's
 * content at any cut; the log is safe for concurrent appends (synchronized).
 */
final class Workload
{
    /** One logged request. */
    record Entry(long sequence, RequestKind kind, long offset, int length, long seed)
    {
    }

    private final TrackedDisk disk;
    private final byte[] base;
    private final long seed;
    private final int writers;
    private final int maxLength;
    private final List<Entry> log = new ArrayList<>();
    private final List<Thread> threads = new ArrayList<>();
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private volatile boolean stop;
    private volatile boolean tolerateErrors;
    /** Per writer: the highest sequence it has logged, or Long.MAX_VALUE once it has left its loop. */
    private java.util.concurrent.atomic.AtomicLongArray lastLogged;

    Workload(final TrackedDisk disk, final byte[] base, final long seed, final int writers, final int maxLength)
    {
        this.disk = disk;
        this.base = base;
        this.seed = seed;
        this.writers = writers;
        this.maxLength = maxLength;
    }

    /** Fills a store with seeded random data and returns its content. */
    static byte[] fill(final BlockStore store, final long seed) throws IOException
    {
        final byte[] content = new byte[Math.toIntExact(store.size())];
        new SplittableRandom(seed).nextBytes(content);
        // Leave a few zero regions so full backups meet holes and zero chunks.
        Arrays.fill(content, content.length / 4, content.length / 4 + (1 << 20), (byte)0);
        store.write(0, ByteBuffer.wrap(content));
        return content;
    }

    /** @param value whether failed guest writes are expected (and not logged). */
    void tolerateErrors(final boolean value)
    {
        tolerateErrors = value;
    }

    void start()
    {
        lastLogged = new java.util.concurrent.atomic.AtomicLongArray(writers);
        for (int w = 0; w < writers; w++)
        {
            final SplittableRandom random = new SplittableRandom(seed * 31 + w);
            final int writer = w;
            lastLogged.set(w, -1);
            final Thread t = new Thread(() -> loop(writer, random), "workload-" + w);
            t.setDaemon(true);
            threads.add(t);
            t.start();
        }
    }

    private void loop(final int writer, final SplittableRandom random)
    {
        final ByteBuffer buffer = ByteBuffer.allocateDirect(maxLength);
        try
        {
            while (!stop)
            {
                final int length = 512 * (1 + random.nextInt(maxLength / 512));
                final long offset = 512L * random.nextLong((disk.size() - length) / 512 + 1);
                final int pick = random.nextInt(20);
                final RequestKind kind = pick == 0 ? RequestKind.WRITE_ZEROES : pick == 1 ? RequestKind.DISCARD
                    : RequestKind.WRITE;
                final long dataSeed = random.nextLong();
                ByteBuffer data = null;
                if (kind == RequestKind.WRITE)
                {
                    final byte[] bytes = new byte[length];
                    new SplittableRandom(dataSeed).nextBytes(bytes);
                    buffer.clear();
                    buffer.put(bytes).flip();
                    data = buffer;
                }
                final CompletableFuture<Long> done = new CompletableFuture<>();
                disk.submit(kind, offset, length, data, false, true, (sequence, error) ->
                {
                    if (error != null)
                    {
                        done.completeExceptionally(error);
                    }
                    else
                    {
                        done.complete(sequence);
                    }
                });
                try
                {
                    final long sequence = done.get(30, TimeUnit.SECONDS);
                    synchronized (log)
                    {
                        log.add(new Entry(sequence, kind, offset, length, dataSeed));
                    }
                    lastLogged.set(writer, sequence);
                }
                catch (final java.util.concurrent.ExecutionException ex)
                {
                    if (!tolerateErrors)
                    {
                        throw ex;
                    }
                }
            }
        }
        catch (final Throwable t)
        {
            failure.compareAndSet(null, t);
        }
        finally
        {
            lastLogged.set(writer, Long.MAX_VALUE);
        }
    }

    /** Stops the writers without checking them (for finally blocks). */
    void halt()
    {
        stop = true;
    }

    /** Stops the writers and rethrows the first writer failure. */
    void stop() throws InterruptedException
    {
        stop = true;
        for (final Thread t : threads)
        {
            t.join(30_000);
            if (t.isAlive())
            {
                throw new AssertionError("writer " + t.getName() + " did not stop (seed " + seed + ")");
            }
        }
        final Throwable t = failure.get();
        if (t != null)
        {
            throw new AssertionError("writer failed (seed " + seed + ")", t);
        }
    }

    /** @return how many requests were logged so far. */
    int logged()
    {
        synchronized (log)
        {
            return log.size();
        }
    }

    /** @return the disk's content just before ring sequence {@code cut}, from the base and the log. */
    byte[] contentAt(final long cut)
    {
        awaitLoggedUpTo(cut);
        final List<Entry> entries;
        synchronized (log)
        {
            entries = new ArrayList<>(log);
        }
        entries.sort(Comparator.comparingLong(Entry::sequence));
        final byte[] image = base.clone();
        for (final Entry e : entries)
        {
            if (e.sequence() >= cut)
            {
                break;
            }
            if (e.kind() == RequestKind.WRITE)
            {
                final byte[] bytes = new byte[e.length()];
                new SplittableRandom(e.seed()).nextBytes(bytes);
                System.arraycopy(bytes, 0, image, (int)e.offset(), e.length());
            }
            else
            {
                Arrays.fill(image, (int)e.offset(), (int)e.offset() + e.length(), (byte)0);
            }
        }
        return image;
    }

    /**
     * Waits until no writer can still log a request sequenced before {@code cut}: a writer logs after its request
     * completes, so a request before the cut may be complete (and backed up) but not yet in the log. Each writer has
     * one request in flight and logs in order, so once it has logged a sequence at or past the cut, or left its loop,
     * its part of the log before the cut is complete.
     */
    private void awaitLoggedUpTo(final long cut)
    {
        if (lastLogged == null)
        {
            return;
        }
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        for (int w = 0; w < writers; w++)
        {
            while (lastLogged.get(w) < cut)
            {
                if (System.nanoTime() > deadline)
                {
                    throw new AssertionError("writer " + w + " logged nothing at or past cut " + cut
                        + " within 30 s (seed " + seed + ")");
                }
                Thread.onSpinWait();
                Thread.yield();
            }
        }
    }

    /** Reads a whole store. */
    static byte[] read(final BlockStore store) throws IOException
    {
        final byte[] content = new byte[Math.toIntExact(store.size())];
        final ByteBuffer buffer = ByteBuffer.allocateDirect(1 << 20);
        for (long at = 0; at < content.length; at += buffer.capacity())
        {
            buffer.clear().limit((int)Math.min(buffer.capacity(), content.length - at));
            store.read(at, buffer);
            buffer.flip();
            buffer.get(content, (int)at, buffer.remaining());
        }
        return content;
    }

    /** Fails with the first differing offset. */
    static void assertSameContent(final byte[] expected, final byte[] actual, final String what)
    {
        if (expected.length != actual.length)
        {
            throw new AssertionError(what + ": sizes differ " + expected.length + " vs " + actual.length);
        }
        final int at = Arrays.mismatch(expected, actual);
        if (at >= 0)
        {
            int end = at;
            while (end < expected.length && expected[end] != actual[end])
            {
                end++;
            }
            throw new AssertionError(what + ": content differs from offset " + at + " (chunk " + (at >> 16)
                + ") for at least " + (end - at) + " bytes");
        }
    }
}
