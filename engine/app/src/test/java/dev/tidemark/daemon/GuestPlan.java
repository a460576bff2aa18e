package dev.tidemark.daemon;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

/**
 * What the guest's {@code /init} does to its virtio disk, generated from a seed, and its replay on the host;
 * immutable after construction.
 *
 * <p>Every data write copies a slice of {@code /pat} (the pattern, also from the seed) to the disk. Kinds:
 * buffered aligned, buffered unaligned, buffered with fsync, O_DIRECT, and discard (after a {@code sync}, so no
 * dirty page cache overlaps it). The guest prints {@code TM-OK i} after op i completed and {@code TM-FAIL i} if
 * it failed, {@code TM-DONE} at the end after a final sync.
 */
final class GuestPlan
{
    static final int PATTERN = 1 << 20;

    enum Kind
    {
        BUFFERED, UNALIGNED, FSYNC, DIRECT, DISCARD
    }

    /** One op: a write of {@code length} bytes of the pattern at {@code patternOffset} to {@code offset}. */
    record Op(int index, Kind kind, long offset, int length, int patternOffset)
    {
        String shell()
        {
            final String dd = "dd if=/pat of=/dev/vda bs=" + length + " count=1 iflag=skip_bytes skip=" + patternOffset
                + " seek=" + offset;
            final String cmd = switch (kind)
            {
                case BUFFERED, UNALIGNED -> dd + " oflag=seek_bytes conv=notrunc";
                case FSYNC -> dd + " oflag=seek_bytes conv=notrunc,fsync";
                case DIRECT -> dd + " oflag=seek_bytes,direct conv=notrunc";
                case DISCARD -> "sync && blkdiscard -o " + offset + " -l " + length + " /dev/vda";
            };
            return cmd + " 2>/tmp/err && echo TM-OK " + index + " || { echo TM-FAIL " + index + "; cat /tmp/err; }";
        }
    }

    final long diskSize;
    final byte[] pattern;
    final List<Op> ops;

    GuestPlan(final long seed, final long diskSize, final int count)
    {
        this.diskSize = diskSize;
        final Random random = new Random(seed);
        pattern = new byte[PATTERN];
        random.nextBytes(pattern);
        final List<Op> list = new ArrayList<>();
        for (int i = 0; i < count; i++)
        {
            final int pick = random.nextInt(100);
            final Kind kind = pick < 35 ? Kind.BUFFERED : pick < 55 ? Kind.UNALIGNED : pick < 70 ? Kind.FSYNC
                : pick < 92 ? Kind.DIRECT : Kind.DISCARD;
            final long offset;
            final int length;
            switch (kind)
            {
                case UNALIGNED ->
                {
                    length = 1 + random.nextInt(20000);
                    offset = (long)(random.nextDouble() * (diskSize - length));
                }
                case DISCARD ->
                {
                    // Where an earlier op wrote, so the discard has data to drop.
                    length = (1 + random.nextInt(4)) * 65536;
                    final long near = list.isEmpty() ? 0 : list.get(random.nextInt(list.size())).offset();
                    offset = Math.min(near / 65536 * 65536, diskSize - length);
                }
                default ->
                {
                    length = (1 + random.nextInt(32)) * 4096;
                    offset = (long)random.nextInt((int)((diskSize - length) / 4096)) * 4096;
                }
            }
            list.add(new Op(i, kind, offset, length, random.nextInt(PATTERN - length)));
        }
        ops = List.copyOf(list);
    }

    /** @return the shell lines of the plan, ending with the final sync, {@code TM-DONE} and power-off. */
    String script()
    {
        final StringBuilder s = new StringBuilder();
        for (final Op op : ops)
        {
            s.append(op.shell()).append('\n');
        }
        s.append("sync && echo TM-SYNCED\n");
        return s.toString();
    }

    /** @return the disk as the plan leaves it, starting from zeroes (discarded bytes read as zeroes). */
    byte[] replay()
    {
        final byte[] disk = new byte[(int)diskSize];
        for (final Op op : ops)
        {
            if (op.kind() == Kind.DISCARD)
            {
                Arrays.fill(disk, (int)op.offset(), (int)op.offset() + op.length(), (byte)0);
            }
            else
            {
                System.arraycopy(pattern, op.patternOffset(), disk, (int)op.offset(), op.length());
            }
        }
        return disk;
    }
}
