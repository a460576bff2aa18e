package dev.tidemark.bench.nbd;

import dev.tidemark.bench.BenchProcesses;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.BlockStoreExport;
import dev.tidemark.io.nbd.NbdServer;

import java.nio.file.Path;
import java.util.List;

/**
 * Serves one file over NBD until the process is terminated; main thread only.
 *
 * <p>Usage: {@code NbdServeMain FILE SOCKET [EXPORT_NAME]}. Prints {@code ready} once listening on the
 * Unix socket. This is the plain {@link BlockStoreExport} over a {@link RawFileStore} (no bitmaps) the NBD benchmark compares with
 * qemu-storage-daemon; the engine's tracked export is launched the same way by its own main class.
 */
public final class NbdServeMain
{
    private NbdServeMain()
    {
    }

    /**
     * @param args file, socket path, optional export name (default {@code disk}).
     * @throws Exception if the file cannot be opened or the socket bound.
     */
    public static void main(final String[] args) throws Exception
    {
        if (args.length < 2 || args.length > 3)
        {
            System.err.println("usage: NbdServeMain FILE SOCKET [EXPORT_NAME]");
            System.exit(2);
        }
        final RawFileStore store = RawFileStore.open(Path.of(args[0]));
        final NbdServer server = new NbdServer();
        server.addExport(new BlockStoreExport(args.length == 3 ? args[2] : "disk", "", store, false, List.of()));
        server.listenUnix(Path.of(args[1]));
        BenchProcesses.serveUntilShutdown("nbd-serve-shutdown", server, store);
    }
}
