package dev.tidemark.bench.jobs;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.CopyMethod;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.target.BackupTargets;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Stateless benchmark methods over per-thread JMH states: the backup pump itself, a {@code full} backup job of a
 * 1 GiB raw disk of random data in {@code /dev/shm} into a fresh raw file or a fresh qcow2 image (64 KiB clusters),
 * with each {@link CopyMethod}, from the transaction that starts the job to {@code BLOCK_JOB_COMPLETED} and the
 * target's flush. Beside it, in the same run, {@link FileChannel#transferTo} of the same file to a fresh file: the
 * copy the kernel offers a program that does nothing else. GB/s = 1.074 / (seconds per operation).
 *
 * <p>Command: {@code java -jar bench/target/benchmarks.jar PumpBenchmark -f 1 -wi 2 -i 7}.
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class PumpBenchmark
{
    static final long SIZE = 1L << 30;
    static final long GRANULARITY = 65536;

    static Path fill(final Path dir) throws IOException
    {
        final Path image = dir.resolve("disk.raw");
        final ByteBuffer chunk = ByteBuffer.allocateDirect(1 << 20);
        final byte[] data = new byte[1 << 20];
        final SplittableRandom random = new SplittableRandom(3);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            for (long at = 0; at < SIZE; at += data.length)
            {
                random.nextBytes(data);
                chunk.clear();
                chunk.put(data).flip();
                while (chunk.hasRemaining())
                {
                    channel.write(chunk, at + chunk.position());
                }
            }
        }
        return image;
    }

    static void deleteTree(final Path dir) throws IOException
    {
        try (var files = Files.walk(dir))
        {
            for (final Path path : files.sorted(java.util.Comparator.reverseOrder()).toList())
            {
                Files.deleteIfExists(path);
            }
        }
    }

    /** The tracked disk and a fresh target per operation; used by one benchmark thread. */
    @State(Scope.Thread)
    public static class Backup
    {
        /** {@code raw} or {@code qcow2}. */
        @Param({"raw", "qcow2"})
        public String target;

        /** {@link CopyMethod} name. */
        @Param({"KERNEL", "BUFFER"})
        public String copy;

        Path dir;
        Path targetPath;
        TrackedDisk disk;
        final JobManager jobs = new JobManager();
        BlockStore store;
        volatile CountDownLatch finished;
        volatile Object error;

        /** Creates and fills the disk once per trial. */
        @Setup(Level.Trial)
        public void open() throws IOException
        {
            dir = Files.createTempDirectory(Path.of("/dev/shm"), "pump-bench-");
            disk = TrackedDisk.open(DiskOptions.of(RawFileStore.open(fill(dir)), dir.resolve("bitmaps"))
                .withName("d0"));
            disk.addListener((name, fields) ->
            {
                if ("BLOCK_JOB_COMPLETED".equals(name))
                {
                    error = fields.get("error");
                    finished.countDown();
                }
            });
        }

        /** A fresh target per operation, as a backup has. */
        @Setup(Level.Invocation)
        public void freshTarget() throws IOException
        {
            targetPath = dir.resolve("target." + target);
            Files.deleteIfExists(targetPath);
            store = "raw".equals(target) ? BackupTargets.createRaw(targetPath, SIZE)
                : BackupTargets.createQcow2(targetPath, SIZE, GRANULARITY);
            finished = new CountDownLatch(1);
        }

        /** Closes and deletes the target outside the timing. */
        @TearDown(Level.Invocation)
        public void dropTarget() throws IOException
        {
            store.close();
            Files.deleteIfExists(targetPath);
        }

        /** Closes the disk. */
        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            disk.close();
            deleteTree(dir);
        }
    }

    /** The same image and a fresh file per operation, for the kernel's plain copy; used by one benchmark thread. */
    @State(Scope.Thread)
    public static class Plain
    {
        Path dir;
        Path image;
        Path copy;

        /** Creates and fills the image once per trial. */
        @Setup(Level.Trial)
        public void open() throws IOException
        {
            dir = Files.createTempDirectory(Path.of("/dev/shm"), "pump-bench-");
            image = fill(dir);
            copy = dir.resolve("copy.raw");
        }

        /** Deletes the copy outside the timing. */
        @TearDown(Level.Invocation)
        public void drop() throws IOException
        {
            Files.deleteIfExists(copy);
        }

        /** Deletes everything. */
        @TearDown(Level.Trial)
        public void close() throws IOException
        {
            deleteTree(dir);
        }
    }

    /**
     * @param state the disk and target.
     * @return the target, so that nothing is optimised away.
     * @throws Exception when the job fails.
     */
    @Benchmark
    public BlockStore fullBackup(final Backup state) throws Exception
    {
        BackupStartAction.start(state.disk, state.jobs, BackupOptions.of("d0", SyncMode.FULL).withJobId("j0")
            .withCopyMethod(CopyMethod.valueOf(state.copy)), state.store);
        if (!state.finished.await(5, TimeUnit.MINUTES) || state.error != null)
        {
            throw new IOException("backup failed: " + state.error);
        }
        state.store.flush();
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        // The id is free again once the job has been dismissed; the next invocation reuses it.
        while (System.nanoTime() < deadline)
        {
            try
            {
                state.jobs.job("j0");
            }
            catch (final dev.tidemark.engine.EngineException gone)
            {
                break;
            }
            Thread.yield();
        }
        return state.store;
    }

    /**
     * @param state the image.
     * @return bytes copied.
     * @throws IOException on a failed copy.
     */
    @Benchmark
    public long transferTo(final Plain state) throws IOException
    {
        try (FileChannel in = FileChannel.open(state.image, StandardOpenOption.READ);
            FileChannel out = FileChannel.open(state.copy, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            long done = 0;
            while (done < SIZE)
            {
                done += in.transferTo(done, SIZE - done, out);
            }
            return done;
        }
    }
}
