package dev.tidemark.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A store that fails on demand, for tests of error paths; safe for concurrent use by any number of threads when the
 * wrapped store is (the switches are atomics and volatile fields).
 *
 * <p>Two kinds of failure: from the n-th data-changing call on, or the next n reads (tests count calls); and every
 * data change and flush while a switch is on (the daemon started with test commands wraps its targets in one, and
 * {@code __dev.tidemark_x-inject-error} flips it).
 */
public final class FaultyStore extends ForwardingBlockStore
{
    private final AtomicLong changes = new AtomicLong();
    private final AtomicInteger readFailures = new AtomicInteger();
    private volatile long failFrom = Long.MAX_VALUE;
    private volatile String message = "Input/output error";
    private volatile boolean failWrites;

    /** @param delegate the store that does the work while nothing fails. */
    public FaultyStore(final BlockStore delegate)
    {
        super(delegate);
    }

    /**
     * @param nth the first failing call (1-based), counted from now.
     * @param text the error text.
     */
    public void failFrom(final long nth, final String text)
    {
        message = text;
        failFrom = changes.get() + nth;
    }

    /** @param count how many of the next reads fail. */
    public void failReads(final int count)
    {
        readFailures.set(count);
    }

    /** @param on whether every data change and flush fails from now on ({@code Input/output error (injected)}). */
    public void failWrites(final boolean on)
    {
        failWrites = on;
    }

    /** Ends the failures of {@link #failFrom}. */
    public void heal()
    {
        failFrom = Long.MAX_VALUE;
    }

    private void checkSwitch() throws IOException
    {
        if (failWrites)
        {
            throw new IOException("Input/output error (injected)");
        }
    }

    private void check() throws IOException
    {
        checkSwitch();
        if (changes.incrementAndGet() >= failFrom)
        {
            throw new IOException(message);
        }
    }

    @Override
    public void read(final long offset, final ByteBuffer dst) throws IOException
    {
        if (readFailures.getAndUpdate(n -> Math.max(0, n - 1)) > 0)
        {
            throw new IOException("Input/output error");
        }
        super.read(offset, dst);
    }

    @Override
    public void write(final long offset, final ByteBuffer src) throws IOException
    {
        check();
        super.write(offset, src);
    }

    @Override
    public void flush() throws IOException
    {
        checkSwitch();
        super.flush();
    }

    @Override
    public void discard(final long offset, final long length) throws IOException
    {
        check();
        super.discard(offset, length);
    }

    @Override
    public void writeZeroes(final long offset, final long length, final boolean mayUnmap) throws IOException
    {
        check();
        super.writeZeroes(offset, length, mayUnmap);
    }
}
