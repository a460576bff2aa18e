package dev.tidemark.bench.engine;

import com.lmax.disruptor.PhasedBackoffWaitStrategy;
import com.lmax.disruptor.SleepingWaitStrategy;
import com.lmax.disruptor.WaitStrategy;
import com.lmax.disruptor.YieldingWaitStrategy;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.CutContext;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.WriteInterceptor;
import dev.tidemark.engine.ring.BackoffBlockingWaitStrategy;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Measures what an idle disk's ring threads cost in CPU, and one synchronous write's latency, per pipeline and wait
 * strategy; runs on its main thread only. Usage: {@code java -cp benchmarks.jar <flags>
 * dev.tidemark.bench.engine.RingIdleCpu [all]}: the default wait strategy under both pipelines, then, with
 * {@code all}, Disruptor's strategies too (staged pipeline, as measured before the fused one existed).
 */
public final class RingIdleCpu
{
    private RingIdleCpu()
    {
    }

    /**
     * @param args {@code all} to measure Disruptor's wait strategies too.
     * @throws Exception on failure.
     */
    public static void main(final String[] args) throws Exception
    {
        final Map<String, Supplier<WaitStrategy>> strategies = new LinkedHashMap<>();
        for (int round = 0; round < 3; round++)
        {
            for (final Pipeline pipeline : Pipeline.values())
            {
                measure(pipeline, "BackoffBlocking [default]", BackoffBlockingWaitStrategy::new);
            }
        }
        if (args.length == 0 || !"all".equals(args[0]))
        {
            return;
        }
        strategies.put("PhasedBackoff.withLiteLock(20us, 200us)",
            () -> PhasedBackoffWaitStrategy.withLiteLock(20, 200, TimeUnit.MICROSECONDS));
        strategies.put("Sleeping(200, 20us)", () -> new SleepingWaitStrategy(200, 20_000));
        strategies.put("Sleeping(200, 100ns)", () -> new SleepingWaitStrategy(200, 100));
        strategies.put("Sleeping(200, 200us)", () -> new SleepingWaitStrategy(200, 200_000));
        strategies.put("PhasedBackoff(10us, 100us, Sleeping(0, 200us))", () -> new PhasedBackoffWaitStrategy(10, 100,
            TimeUnit.MICROSECONDS, new SleepingWaitStrategy(0, 200_000)));
        strategies.put("Yielding", YieldingWaitStrategy::new);
        for (final Map.Entry<String, Supplier<WaitStrategy>> strategy : strategies.entrySet())
        {
            measure(Pipeline.STAGED, strategy.getKey(), strategy.getValue());
        }
    }

    private static void measure(final Pipeline pipeline, final String name, final Supplier<WaitStrategy> strategy)
        throws Exception
    {
        final ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        final Path directory = Files.createTempDirectory("tidemark-idle");
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(new NullStore(1 << 30), directory)
            .withWaitStrategy(strategy).withName("idle").withPipeline(pipeline)))
        {
            final ByteBuffer block = ByteBuffer.allocateDirect(4096);
            for (int i = 0; i < 20_000; i++)
            {
                block.clear();
                disk.write(0, block, false);
            }
            final long started = System.nanoTime();
            final int samples = 2000;
            for (int i = 0; i < samples; i++)
            {
                block.clear();
                disk.write(i * 4096L, block, false);
            }
            final double latencyMicros = (System.nanoTime() - started) / 1e3 / samples;
            Thread.sleep(200);
            final long before = ringCpu(threads);
            final long wall = System.nanoTime();
            Thread.sleep(2000);
            final double cpuShare = (ringCpu(threads) - before) / (double) (System.nanoTime() - wall);
            // A copy-before-write that takes a second (a slow backup target): what do the others burn?
            final WriteInterceptor slow = (offset, length) ->
            {
                try
                {
                    Thread.sleep(1500);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
            };
            disk.transaction(new ControlAction()
            {
                @Override
                public void prepare(final CutContext ctx)
                {
                    ctx.addInterceptor(slow);
                }

                @Override
                public void commit(final CutContext ctx)
                {
                }

                @Override
                public void abort(final CutContext ctx)
                {
                }
            });
            final var stalled = disk.writeAsync(0, ByteBuffer.allocateDirect(4096), false);
            final var behind = disk.writeAsync(4096, ByteBuffer.allocateDirect(4096), false);
            Thread.sleep(200);
            final long stallBefore = ringCpu(threads);
            final long stallWall = System.nanoTime();
            Thread.sleep(1000);
            final double stallShare = (ringCpu(threads) - stallBefore) / (double) (System.nanoTime() - stallWall);
            stalled.join();
            behind.join();
            System.out.printf("%-6s %-42s idle CPU of the ring threads: %5.1f %% of one core;"
                + " while copy-before-write is stalled: %5.1f %%; sync 4 KiB write to a null store: %6.1f us%n",
                pipeline, name, cpuShare * 100, stallShare * 100, latencyMicros);
        }
        finally
        {
            try (var files = Files.list(directory))
            {
                for (final Path file : files.toList())
                {
                    Files.delete(file);
                }
            }
            Files.delete(directory);
        }
    }

    private static long ringCpu(final ThreadMXBean threads) throws IOException
    {
        long total = 0;
        for (final Thread thread : Thread.getAllStackTraces().keySet())
        {
            if (thread.getName().startsWith("tidemark-idle-"))
            {
                total += threads.getThreadCpuTime(thread.getId());
            }
        }
        return total;
    }
}
