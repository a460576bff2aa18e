package dev.tidemark.engine;

import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.Successor;
import dev.tidemark.io.RawFileStore;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;

/**
 * The child JVM of {@link JournalCrashTest}: runs transactions, writes and successor cycles on one disk forever,
 * printing what it is about to do and acknowledging what is done; runs on its main thread only.
 *
 * <p>Lines: {@code TRY <names after>} before a transaction, {@code ACK <names>} after it committed,
 * {@code WROTE <offset>} after a write completed.
 */
public final class JournalCrashChild
{
    static final long SIZE = 16 << 20;
    static final long GRANULARITY = 65536;

    private JournalCrashChild()
    {
    }

    /**
     * @param args image path, seed.
     * @throws Exception on any failure (the parent sees the exit).
     */
    public static void main(final String[] args) throws Exception
    {
        final Path image = Path.of(args[0]);
        final SplittableRandom random = new SplittableRandom(Long.parseLong(args[1]));
        final RawFileStore store = Files.exists(image) ? RawFileStore.open(image) : RawFileStore.create(image, SIZE);
        final TrackedDisk disk = TrackedDisk.open(DiskOptions.of(store, DiskOptions.bitmapDirectoryFor(image)));
        final TreeSet<String> names = new TreeSet<>();
        disk.bitmaps().query().forEach(info -> names.add(info.name()));
        if (!names.contains("keep"))
        {
            names.add("keep");
            transaction(disk, names, BitmapActions.add("keep", GRANULARITY, true, false));
        }
        final ByteBuffer block = ByteBuffer.allocateDirect(4096);
        for (int i = 0; ; i++)
        {
            final long offset = random.nextLong(SIZE / 4096) * 4096;
            block.clear();
            disk.write(offset, block, false);
            System.out.println("WROTE " + offset);
            final List<String> others = new ArrayList<>(names);
            others.remove("keep");
            final int choice = random.nextInt(8);
            if (choice == 0 || others.isEmpty())
            {
                final String name = "t" + i + "-" + random.nextInt(1000);
                names.add(name);
                transaction(disk, names, BitmapActions.add(name, GRANULARITY << random.nextInt(3), true,
                    random.nextBoolean()));
            }
            else if (choice == 1)
            {
                final String name = others.get(random.nextInt(others.size()));
                names.remove(name);
                transaction(disk, names, BitmapActions.remove(name));
            }
            else if (choice == 2)
            {
                final String name = others.get(random.nextInt(others.size()));
                final String next = "r" + i;
                names.add(next);
                transaction(disk, names, BitmapActions.add(next, GRANULARITY, true, false),
                    BitmapActions.merge(next, List.of(name, "keep")), BitmapActions.disable(name),
                    BitmapActions.clear(name));
            }
            else if (choice == 3)
            {
                transaction(disk, names, BitmapActions.add("keep"));
            }
            else
            {
                // A job's life on "keep" (always merged back) or on another bitmap (taking over on success).
                final String name = choice < 6 ? "keep" : others.get(random.nextInt(others.size()));
                final Successor[] successor = new Successor[1];
                transaction(disk, names, new ControlAction()
                {
                    @Override
                    public void prepare(final CutContext ctx)
                    {
                        successor[0] = ctx.registry().createSuccessor(name);
                    }

                    @Override
                    public void commit(final CutContext ctx)
                    {
                    }

                    @Override
                    public void abort(final CutContext ctx)
                    {
                        ctx.registry().reclaim(successor[0]);
                    }
                });
                if (successor[0] == null)
                {
                    // The bitmap could not be frozen (inconsistent after an earlier kill): no job this time.
                    continue;
                }
                final long during = random.nextLong(SIZE / 4096) * 4096;
                block.clear();
                disk.write(during, block, false);
                System.out.println("WROTE " + during);
                final boolean abdicate = !"keep".equals(name) && random.nextBoolean();
                transaction(disk, names, new ControlAction()
                {
                    @Override
                    public void prepare(final CutContext ctx)
                    {
                    }

                    @Override
                    public void commit(final CutContext ctx)
                    {
                        if (abdicate)
                        {
                            ctx.registry().abdicate(successor[0]);
                        }
                        else
                        {
                            ctx.registry().reclaim(successor[0]);
                        }
                    }

                    @Override
                    public void abort(final CutContext ctx)
                    {
                    }
                });
            }
        }
    }

    private static void transaction(final TrackedDisk disk, final TreeSet<String> namesAfter,
        final ControlAction... actions)
    {
        System.out.println("TRY " + String.join(",", namesAfter));
        try
        {
            disk.transaction(actions);
        }
        catch (final EngineException expected)
        {
            // For example adding "keep" again: the transaction changed nothing; the names are as before it.
            System.out.println("FAILED " + expected.getMessage());
            namesAfter.clear();
            disk.bitmaps().query().forEach(info -> namesAfter.add(info.name()));
        }
        System.out.println("ACK " + String.join(",", namesAfter));
    }
}
