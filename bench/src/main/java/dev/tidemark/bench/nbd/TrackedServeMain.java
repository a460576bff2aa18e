package dev.tidemark.bench.nbd;

import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.Pipeline;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportAddress;
import dev.tidemark.engine.export.ExportManager;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.engine.export.ExportRequest;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.io.RawFileStore;
import java.nio.file.Path;

/**
 * Serves one raw file as a tracked disk through the engine's {@link ExportManager} until the process is terminated;
 * main thread only.
 *
 * <p>Usage: {@code TrackedServeMain FILE SOCKET BITMAPS [EXPORT_NAME]}: opens the file as a {@link TrackedDisk}
 * (bitmap directory beside it), adds {@code BITMAPS} recording bitmaps of 64 KiB granularity (not persistent, as
 * the ones the comparison adds to qemu-storage-daemon), and exports it writable. Prints {@code ready} when listening.
 * With {@code -Dtidemark.bench.wait=blocking} the ring's threads block instead of spinning first; with
 * {@code -Dtidemark.bench.pipeline=fused|staged} the ring runs that pipeline (default: the engine's).
 */
public final class TrackedServeMain
{
    private TrackedServeMain()
    {
    }

    /**
     * @param args file, socket, bitmap count, optional export name (default {@code disk}).
     * @throws Exception if the file cannot be opened or the socket bound.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 3 || args.length > 4)
        {
            System.err.println("usage: TrackedServeMain FILE SOCKET BITMAPS [EXPORT_NAME]");
            System.exit(2);
        }
        final Path image = Path.of(args[0]);
        final int bitmaps = Integer.parseInt(args[2]);
        DiskOptions options = DiskOptions.of(RawFileStore.open(image),
            image.resolveSibling(image.getFileName() + ".bitmaps")).withName("disk");
        if ("blocking".equals(System.getProperty("tidemark.bench.wait")))
        {
            // On a small, shared machine the ring's spinning threads compete with the client for the cores.
            options = options.withWaitStrategy(com.lmax.disruptor.BlockingWaitStrategy::new);
        }
        final String pipeline = System.getProperty("tidemark.bench.pipeline");
        if (pipeline != null)
        {
            options = options.withPipeline(Pipeline.valueOf(pipeline.toUpperCase(java.util.Locale.ROOT)));
        }
        final TrackedDisk disk = TrackedDisk.open(options);
        for (int i = 0; i < bitmaps; i++)
        {
            disk.transaction(BitmapActions.add("b" + i, 65536, false, false));
        }
        final ExportManager exports = new ExportManager((name, data) -> { });
        exports.start(ExportAddress.unix(Path.of(args[1])), 0);
        exports.add(ExportRequest.of("e0", ExportNode.disk("disk", disk)).withName(args.length == 4 ? args[3] : "disk")
            .withWritable(true));
        BenchProcesses.serveUntilShutdown("tracked-serve-shutdown", exports, disk);
    }
}
