package dev.tidemark.bench.nbd;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Reads CPU time from Linux's /proc (the machine's steal time, one process's CPU time); stateless, any thread.
 */
final class MachineTimes
{
    /** USER_HZ, which /proc reports in; 100 on every Linux this runs on. */
    static final int TICKS_PER_SECOND = 100;

    private MachineTimes()
    {
    }

    /** @return the first line of /proc/stat as numbers: user nice system idle iowait irq softirq steal... */
    static long[] cpuTicks() throws IOException
    {
        final String line = Files.readAllLines(Path.of("/proc/stat"), StandardCharsets.US_ASCII).get(0);
        final String[] fields = line.trim().split("\\s+");
        final long[] ticks = new long[fields.length - 1];
        for (int i = 1; i < fields.length; i++)
        {
            ticks[i - 1] = Long.parseLong(fields[i]);
        }
        return ticks;
    }

    /** @return steal time between two readings, in percent of all CPU time in between. */
    static double stealPercent(final long[] before, final long[] after)
    {
        long total = 0;
        // The first eight fields add up to all time; guest time is already inside user.
        for (int i = 0; i < 8; i++)
        {
            total += after[i] - before[i];
        }
        return total == 0 ? 0 : 100.0 * (after[7] - before[7]) / total;
    }

    /** @return user + system ticks of a process and all its threads so far. */
    static long processTicks(final long pid) throws IOException
    {
        final String stat = Files.readString(Path.of("/proc/" + pid + "/stat"), StandardCharsets.US_ASCII);
        // Fields after the command name, which is in parentheses and may hold spaces.
        final String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(fields[11]) + Long.parseLong(fields[12]);
    }
}
