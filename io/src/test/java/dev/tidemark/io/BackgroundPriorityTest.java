package dev.tidemark.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.concurrent.atomic.AtomicReference;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Lowering a thread's priority changes that thread's nice value alone, to the process's plus the amount asked,
 * capped at 19, and once only; each case
 * runs on a thread of its own (a raised nice value cannot be lowered again without privilege), JUnit's waits.
 */
@Timeout(30)
class BackgroundPriorityTest
{
    @Test
    void raisesTheCallingThreadsNiceValueOnly() throws Exception
    {
        final int callerBefore = BackgroundPriority.currentThreadNice();
        final int[] seen = onNewThread(() ->
        {
            final int before = BackgroundPriority.currentThreadNice();
            final boolean changed = BackgroundPriority.lowerCurrentThread(3);
            final boolean again = BackgroundPriority.lowerCurrentThread(3);
            return new int[] {before, BackgroundPriority.currentThreadNice(), changed ? 1 : 0, again ? 1 : 0};
        });
        assertThat(seen[0]).as("a new thread starts at the process's value").isEqualTo(callerBefore);
        assertThat(seen[1]).isEqualTo(Math.min(19, callerBefore + 3));
        assertThat(seen[2]).as("reported as changed").isEqualTo(callerBefore + 3 <= 19 ? 1 : 0);
        assertThat(seen[3]).as("a second call (a pooled thread's next task) lowers it no further").isZero();
        assertThat(BackgroundPriority.currentThreadNice()).as("the caller keeps its own").isEqualTo(callerBefore);
    }

    @Test
    void capsAtNineteenAndIgnoresNothingToDo() throws Exception
    {
        final int[] seen = onNewThread(() ->
        {
            final boolean none = BackgroundPriority.lowerCurrentThread(0);
            final int afterNone = BackgroundPriority.currentThreadNice();
            BackgroundPriority.lowerCurrentThread(100);
            final int capped = BackgroundPriority.currentThreadNice();
            final boolean again = BackgroundPriority.lowerCurrentThread(5);
            return new int[] {none ? 1 : 0, afterNone, capped, again ? 1 : 0};
        });
        assertThat(seen[0]).isZero();
        assertThat(seen[1]).isEqualTo(BackgroundPriority.currentThreadNice());
        assertThat(seen[2]).isEqualTo(19);
        assertThat(seen[3]).as("already at 19: nothing changes").isZero();
    }

    @Test
    void thePropertySetsTheAmountAndZeroTurnsItOff() throws Exception
    {
        final int base = BackgroundPriority.currentThreadNice();
        final String saved = System.getProperty(BackgroundPriority.PROPERTY);
        try
        {
            System.setProperty(BackgroundPriority.PROPERTY, "0");
            assertThat(onNewThread(() -> new int[] {BackgroundPriority.applyToCurrentThread() ? 1 : 0,
                BackgroundPriority.currentThreadNice()})).containsExactly(0, base);
            System.setProperty(BackgroundPriority.PROPERTY, "2");
            assertThat(onNewThread(() -> new int[] {BackgroundPriority.applyToCurrentThread() ? 1 : 0,
                BackgroundPriority.currentThreadNice()})).containsExactly(1, Math.min(19, base + 2));
        }
        finally
        {
            if (saved == null)
            {
                System.clearProperty(BackgroundPriority.PROPERTY);
            }
            else
            {
                System.setProperty(BackgroundPriority.PROPERTY, saved);
            }
        }
    }

    private interface Probe
    {
        int[] run() throws Exception;
    }

    private static int[] onNewThread(final Probe probe) throws Exception
    {
        final AtomicReference<int[]> result = new AtomicReference<>();
        final AtomicReference<Exception> failure = new AtomicReference<>();
        final Thread thread = new Thread(() ->
        {
            try
            {
                result.set(probe.run());
            }
            catch (final Exception ex)
            {
                failure.set(ex);
            }
        }, "priority-probe");
        thread.start();
        thread.join();
        if (failure.get() != null)
        {
            throw failure.get();
        }
        return result.get();
    }
}
