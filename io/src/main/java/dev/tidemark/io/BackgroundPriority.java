package dev.tidemark.io;

import com.sun.jna.LastErrorException;
import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Platform;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Stateless and safe from any thread, each call acting on the calling thread alone: lowers the CPU priority (the
 * Linux nice value) of a thread whose work can wait for the guest's I/O, such as the engine's housekeeping.
 *
 * <p>A raised nice value leaves such a thread at full speed when the machine is idle and lets the scheduler prefer
 * the write path (the NBD or vhost-user threads and the write ring, all at the process's own nice value) when both
 * want a core. Linux schedules threads as tasks, so {@code setpriority(PRIO_PROCESS, tid, nice)} changes one
 * thread, and raising a nice value needs no privilege. Elsewhere, or if libc cannot be bound, nothing changes.
 * (A backup job's copy is not lowered by default: measured on the reference machine, that slowed backups without
 * raising the guest's write rate; docs/operations.md.)
 *
 * <p>{@link #applyToCurrentThread} takes the amount from the system property {@value #PROPERTY} (default
 * {@value #DEFAULT_NICE}, 0 keeps the process's own priority): the thread's nice value becomes the process's plus
 * that amount, capped at 19.
 */
public final class BackgroundPriority
{
    /** The system property holding how much to raise a background thread's nice value. */
    public static final String PROPERTY = "tidemark.background.nice";
    /** Raise by 10: about a tenth of a core's share against a busy thread of the default nice value. */
    public static final int DEFAULT_NICE = 10;

    private static final int PRIO_PROCESS = 0;
    private static final int MAX_NICE = 19;
    private static final Sched SCHED = load();

    private BackgroundPriority()
    {
    }

    /** The libc calls, as JNA maps them; each throws {@link LastErrorException} on failure. */
    interface Sched extends Library
    {
        int setpriority(int which, int who, int prio) throws LastErrorException;
    }

    private static Sched load()
    {
        if (!Platform.isLinux())
        {
            return null;
        }
        try
        {
            return Native.load("c", Sched.class);
        }
        catch (final LinkageError | RuntimeException ex)
        {
            return null;
        }
    }

    /**
     * Lowers the calling thread's priority by the configured amount ({@value #PROPERTY}).
     *
     * @return whether its nice value changed.
     */
    public static boolean applyToCurrentThread()
    {
        return lowerCurrentThread(Integer.getInteger(PROPERTY, DEFAULT_NICE));
    }

    /**
     * Sets the calling thread's nice value to the process's plus {@code by} (capped at 19), unless it is already
     * that high: a pooled thread that runs one background task after another is lowered once.
     *
     * @param by how much; 0 or less changes nothing.
     * @return whether its nice value changed.
     */
    public static boolean lowerCurrentThread(final int by)
    {
        if (by <= 0 || SCHED == null)
        {
            return false;
        }
        try
        {
            final int target = Math.min(MAX_NICE, niceOf("/proc/self/stat") + by);
            if (currentThreadNice() >= target)
            {
                return false;
            }
            SCHED.setpriority(PRIO_PROCESS, currentThreadId(), target);
            return true;
        }
        catch (final IOException | RuntimeException ex)
        {
            // Best effort (LastErrorException included): a thread that keeps its priority still works correctly.
            return false;
        }
    }

    /**
     * @return the calling thread's nice value, from {@code /proc/thread-self/stat}.
     * @throws IOException when that cannot be read (not Linux, no procfs).
     */
    public static int currentThreadNice() throws IOException
    {
        return niceOf("/proc/thread-self/stat");
    }

    /** @return the nice value in a {@code stat} file of procfs (the process's main thread for /proc/self). */
    private static int niceOf(final String statFile) throws IOException
    {
        final String stat = Files.readString(Path.of(statFile), StandardCharsets.US_ASCII);
        // The command name may hold spaces and parentheses: fields are counted after its closing one.
        final String[] fields = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
        // Field 19 (nice) of proc(5), the first after the name being field 3 (state).
        return Integer.parseInt(fields[19 - 3]);
    }

    private static int currentThreadId() throws IOException
    {
        // "/proc/thread-self" links to "<pid>/task/<tid>".
        final Path link = Files.readSymbolicLink(Path.of("/proc/thread-self"));
        return Integer.parseInt(link.getFileName().toString());
    }
}
