package dev.tidemark.engine.export;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.nbd.BlockStoreExport;
import dev.tidemark.io.nbd.DirtyBitmapContext;
import dev.tidemark.io.nbd.MetaContext;
import dev.tidemark.io.nbd.NbdExport;
import dev.tidemark.io.nbd.NbdProtocol;
import dev.tidemark.io.nbd.NbdServer;
import dev.tidemark.io.vhost.VhostUserBlkServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.UnixDomainSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Owns the NBD server and its exports with QEMU's rules and error texts; safe for concurrent use by any number
 * of threads (every call serialises on the manager), and no call waits for clients except {@link #stop()} and
 * {@link #close()}.
 *
 * <p>This is what QMP's {@code nbd-server-start}, {@code nbd-server-stop}, {@code block-export-add}
 * ({@code nbd-server-add}), {@code block-export-del} ({@code nbd-server-remove}) and {@code query-block-exports}
 * run on. The caller resolves node names to an {@link ExportNode}. An export of a tracked disk
 * ({@link TrackedDiskExport}) sends writes through the disk's ring so they are tracked; an export of a fleecing
 * view is read-only. Each exported bitmap becomes {@code qemu:dirty-bitmap:NAME} and is busy (refused by every
 * bitmap command and by backup jobs) until its export is deleted.
 *
 * <p>Removal is asynchronous as in QEMU: {@link #remove} marks the export shutting down (its id stays in use, new
 * clients cannot open it), a background thread lets the open connections answer their in-flight requests and
 * close, then releases the bitmaps and emits {@code BLOCK_EXPORT_DELETED {"id"}}.
 *
 * <p>A vhost-user-blk export ({@link #addVhostUserBlk}) needs no NBD server: it listens on its own Unix socket for
 * one QEMU front end, and serves the guest's requests through the same {@link TrackedDiskExport}, so guest writes
 * take the tracked write path exactly as NBD writes do. It shares the id space, {@link #query} and {@link #remove}
 * with NBD exports; {@link #stop()} leaves it alone (as {@code nbd-server-stop} does in QEMU).
 */
public final class ExportManager implements AutoCloseable
{
    /** QEMU's default {@code max-connections} for {@code nbd-server-start}. */
    public static final int DEFAULT_MAX_CONNECTIONS = 100;
    /** The NBD export type. */
    public static final String TYPE = "nbd";
    /** The vhost-user-blk export type. */
    public static final String TYPE_VHOST_USER_BLK = "vhost-user-blk";

    private static final long STOP_WAIT_SECONDS = 30;
    /** Longest a safe-mode removal waits for connections whose client already left to notice. */
    private static final Duration DISCONNECT_SETTLE = Duration.ofMillis(500);

    private final EngineEvents events;
    private final Map<String, Entry> exports = new LinkedHashMap<>();
    private NbdServer server;
    private SocketAddress address;
    private boolean multiConn;

    /**
     * @param events receives {@code BLOCK_EXPORT_DELETED}, on the thread that finished the removal.
     */
    public ExportManager(final EngineEvents events)
    {
        this.events = events;
    }

    // ------------------------------------------------------------------------------------------ server

    /**
     * Starts the server ({@code nbd-server-start}) with a 10 second handshake limit.
     *
     * @param where where to listen.
     * @param maxConnections most concurrent clients, 0 for no limit; 1 also withholds {@code CAN_MULTI_CONN}.
     * @return the bound address (with the real port when 0 was asked for).
     * @throws EngineException {@code NBD server already running}, or the bind failure.
     */
    public SocketAddress start(final ExportAddress where, final int maxConnections)
    {
        return start(where, maxConnections, NbdServer.DEFAULT_HANDSHAKE_TIMEOUT);
    }

    /**
     * Starts the server ({@code nbd-server-start}).
     *
     * @param where where to listen.
     * @param maxConnections most concurrent clients, 0 for no limit; 1 also withholds {@code CAN_MULTI_CONN}.
     * @param handshakeTimeout clients that have not finished the handshake by then are dropped.
     * @return the bound address (with the real port when 0 was asked for).
     * @throws EngineException {@code NBD server already running}, or the bind failure.
     */
    public SocketAddress start(final ExportAddress where, final int maxConnections, final Duration handshakeTimeout)
    {
        return start(where, maxConnections, handshakeTimeout, NbdSecurity.DEFAULT);
    }

    /**
     * Starts the server ({@code nbd-server-start}) with TLS and the network policy: a TCP listener on an address
     * that is not loopback must have TLS credentials, unless {@link NbdSecurity#insecure()} says otherwise.
     *
     * @param where where to listen.
     * @param maxConnections most concurrent clients, 0 for no limit; 1 also withholds {@code CAN_MULTI_CONN}.
     * @param handshakeTimeout clients that have not finished the handshake (TLS included) by then are dropped.
     * @param security TLS credentials, authorisation, the insecure override and the refusal listener.
     * @return the bound address (with the real port when 0 was asked for).
     * @throws EngineException {@code NBD server already running}, the network policy refusal, or the bind failure.
     */
    public synchronized SocketAddress start(final ExportAddress where, final int maxConnections,
        final Duration handshakeTimeout, final NbdSecurity security)
    {
        if (server != null)
        {
            throw EngineException.generic("NBD server already running");
        }
        if (maxConnections < 0)
        {
            throw EngineException.generic("Parameter 'max-connections' expects uint32");
        }
        if (handshakeTimeout.isNegative() || handshakeTimeout.isZero())
        {
            throw EngineException.generic("handshake-max-seconds must be positive");
        }
        if (where instanceof ExportAddress.Tcp tcp && security.credentials() == null && !security.insecure()
            && !isLoopback(tcp.host()))
        {
            throw EngineException.generic("Refusing to serve NBD in clear text on " + tcp.host()
                + ", which is not a loopback address: anyone who can reach it could read and write the exports. "
                + "Give tls-creds, or pass --nbd-insecure (QMP: " + INSECURE_ARGUMENT + ") to allow it");
        }
        final NbdServer started = new NbdServer(maxConnections == 0 ? Integer.MAX_VALUE : maxConnections,
            handshakeTimeout);
        started.setListener(security.listener());
        if (security.credentials() != null)
        {
            started.requireTls(security.credentials(), security.authorizer());
        }
        try
        {
            if (where instanceof ExportAddress.Unix unix)
            {
                started.listenUnix(unix.path());
                address = UnixDomainSocketAddress.of(unix.path());
            }
            else
            {
                final ExportAddress.Tcp tcp = (ExportAddress.Tcp)where;
                address = started.listenTcp(new InetSocketAddress(InetAddress.getByName(tcp.host()), tcp.port()));
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            closeQuietly(started);
            address = null;
            throw new EngineException(EngineException.Reason.GENERIC,
                "Failed to bind socket to " + where + ": " + ex.getMessage(), ex);
        }
        server = started;
        multiConn = maxConnections != 1;
        return address;
    }

    /** The QMP argument of {@code nbd-server-start} that allows clear text on a non-loopback address. */
    public static final String INSECURE_ARGUMENT = "__dev.tidemark_insecure";

    /**
     * @return whether every address {@code host} names is a loopback address; an unresolvable name is not
     *         loopback (the bind reports it).
     */
    static boolean isLoopback(final String host)
    {
        try
        {
            for (final InetAddress each : InetAddress.getAllByName(host))
            {
                if (!each.isLoopbackAddress())
                {
                    return false;
                }
            }
            return true;
        }
        catch (final java.net.UnknownHostException ex)
        {
            return false;
        }
    }

    /** @return whether the server runs. */
    public synchronized boolean isRunning()
    {
        return server != null;
    }

    /** @return the bound address while the server runs. */
    public synchronized Optional<SocketAddress> address()
    {
        return Optional.ofNullable(address);
    }

    /**
     * Stops the server ({@code nbd-server-stop}): every export is removed as with {@link RemoveMode#HARD} (each
     * emits {@code BLOCK_EXPORT_DELETED}), then the listeners close. Waits for the connections to close.
     *
     * @throws EngineException {@code NBD server not running}.
     */
    public void stop()
    {
        final List<CompletableFuture<Void>> removals;
        final NbdServer stopping;
        synchronized (this)
        {
            requireRunning();
            removals = beginRemovals(false);
            stopping = server;
            server = null;
            address = null;
        }
        // The server close after the wait drops what a timed-out removal left.
        awaitRemovals(removals);
        closeQuietly(stopping);
    }

    /**
     * Starts removing every vhost export ({@code vhost}) or every NBD export, joining removals already under way;
     * the caller holds this monitor.
     */
    private List<CompletableFuture<Void>> beginRemovals(final boolean vhost)
    {
        final List<CompletableFuture<Void>> removals = new ArrayList<>();
        for (final Entry entry : new ArrayList<>(exports.values()))
        {
            if ((entry.vhost != null) == vhost)
            {
                removals.add(entry.shuttingDown ? entry.deleted : beginRemoval(entry));
            }
        }
        return removals;
    }

    /** Waits up to {@link #STOP_WAIT_SECONDS} for each removal; an interrupt ends the wait and stays set. */
    private static void awaitRemovals(final List<CompletableFuture<Void>> removals)
    {
        for (final CompletableFuture<Void> removal : removals)
        {
            try
            {
                removal.get(STOP_WAIT_SECONDS, TimeUnit.SECONDS);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                break;
            }
            catch (final ExecutionException | TimeoutException ex)
            {
                // The removal thread releases what it can; the caller closes what holds the rest.
            }
        }
    }

    // ------------------------------------------------------------------------------------------ exports

    /**
     * Adds an export ({@code block-export-add} with {@code type: nbd}); clients can open it at once.
     *
     * @param request what to export.
     * @return the export's record.
     * @throws EngineException QEMU's error for the first rule broken; nothing changes then.
     */
    public synchronized ExportInfo add(final ExportRequest request)
    {
        requireRunning();
        checkIdAndWritability(request);
        final ExportNode node = request.node();
        final String exportName = request.exportName();
        if (exportName.getBytes(StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING)
        {
            throw EngineException.generic("export name '" + exportName + "' too long");
        }
        final String description = request.description() == null ? "" : request.description();
        if (description.getBytes(StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING)
        {
            throw EngineException.generic("description '" + description + "' too long");
        }
        for (final Entry entry : exports.values())
        {
            if (entry.exportName.equals(exportName))
            {
                throw EngineException.generic("NBD server already has export named '" + exportName + "'");
            }
        }
        final boolean readOnly = !request.writable();
        for (final BitmapRef ref : request.bitmaps())
        {
            checkBitmap(node, ref, readOnly);
        }
        final List<BusyBitmap> taken = new ArrayList<>();
        final List<MetaContext> contexts = new ArrayList<>();
        try
        {
            for (final BitmapRef ref : request.bitmaps())
            {
                final TrackedDisk holder = ref.disk() != null ? ref.disk() : node.disk();
                holder.bitmaps().setBusy(ref.name(), true);
                taken.add(new BusyBitmap(holder, ref.name()));
                final BitmapView view = holder.bitmaps().view(ref.name());
                contexts.add(new DirtyBitmapContext(ref.name(),
                    (offset, length, visitor) -> view.forEachDirtyExtent(offset, length, visitor::accept)));
            }
            if (request.checkpoints())
            {
                contexts.addAll(ChangedSinceContext.of(node.disk()));
            }
            final NbdExport export = exportOf(node, exportName, description, readOnly, contexts);
            server.addExport(export);
        }
        catch (final RuntimeException ex)
        {
            release(taken);
            if (ex instanceof EngineException engine)
            {
                throw engine;
            }
            throw new EngineException(EngineException.Reason.GENERIC, String.valueOf(ex.getMessage()), ex);
        }
        final Entry entry = new Entry(request, exportName, taken);
        exports.put(request.id(), entry);
        return entry.info();
    }

    /** The rules every export type shares, in QEMU's order: a free, well-formed id, and no writable read-only node. */
    private void checkIdAndWritability(final ExportRequest request)
    {
        if (!isWellFormedId(request.id()))
        {
            throw EngineException.generic("Invalid block export id");
        }
        if (exports.containsKey(request.id()))
        {
            throw EngineException.generic("Block export id '" + request.id() + "' is already in use");
        }
        if (request.writable() && !request.node().isWritable())
        {
            throw EngineException.generic("Cannot export read-only node as writable");
        }
    }

    /**
     * Adds a vhost-user-blk export ({@code block-export-add} with {@code type: vhost-user-blk}): listens on
     * {@code socket} for a QEMU front end at once.
     *
     * @param request the id, node and writability (name, description and bitmaps do not apply).
     * @param socket the Unix socket path; a stale socket file there is replaced.
     * @param numQueues virtqueues offered, 1..256 (one per guest vCPU serves best).
     * @param logicalBlockSize the guest's logical block size, a power of two 512..65536.
     * @return the export's record.
     * @throws EngineException QEMU's error for the first rule broken, or the bind failure; nothing changes then.
     */
    public synchronized ExportInfo addVhostUserBlk(final ExportRequest request, final Path socket,
        final int numQueues, final int logicalBlockSize)
    {
        checkIdAndWritability(request);
        final ExportNode node = request.node();
        if (numQueues < 1 || numQueues > 256)
        {
            throw EngineException.generic("num-queues must be in 1..256, was " + numQueues);
        }
        if (logicalBlockSize < 512 || logicalBlockSize > 65536 || Integer.bitCount(logicalBlockSize) != 1)
        {
            throw EngineException.generic("Logical block size must be a power of 2 between 512 and 65536, was "
                + logicalBlockSize);
        }
        final NbdExport export = exportOf(node, request.id(), "", !request.writable(), List.of());
        if (export.size() % logicalBlockSize != 0)
        {
            throw EngineException.generic("The node's size (" + export.size()
                + " bytes) is not a multiple of the logical block size " + logicalBlockSize);
        }
        final VhostUserBlkServer vhost = new VhostUserBlkServer(request.id(), export, numQueues, logicalBlockSize);
        try
        {
            vhost.listen(socket);
        }
        catch (final IOException | RuntimeException ex)
        {
            vhost.close();
            final EngineException failure = EngineException.generic("Failed to bind socket to unix:" + socket + ": "
                + ex.getMessage());
            failure.initCause(ex);
            throw failure;
        }
        final Entry entry = new Entry(request, request.id(), List.of(), vhost);
        exports.put(request.id(), entry);
        return entry.info();
    }

    /**
     * @param id an export id.
     * @return the vhost-user-blk server of that export, if it is one.
     */
    public synchronized Optional<VhostUserBlkServer> vhostServer(final String id)
    {
        final Entry entry = exports.get(id);
        return Optional.ofNullable(entry == null ? null : entry.vhost);
    }

    /**
     * Removes an export ({@code block-export-del}); returns before its clients are gone.
     *
     * @param id the export id.
     * @param mode {@link RemoveMode#SAFE} refuses while clients are connected.
     * @return completes after {@code BLOCK_EXPORT_DELETED} was emitted.
     * @throws EngineException {@code NBD server not running}, {@code Export 'X' is not found},
     *                         {@code Export 'X' is already shutting down}, or (safe mode)
     *                         {@code export 'X' still in use}.
     */
    public synchronized CompletableFuture<Void> remove(final String id, final RemoveMode mode)
    {
        final Entry entry = exports.get(id);
        if (entry != null && entry.vhost != null)
        {
            if (entry.shuttingDown)
            {
                throw EngineException.generic("Export '" + id + "' is already shutting down");
            }
            if (mode == RemoveMode.SAFE && entry.vhost.isConnected())
            {
                throw EngineException.generic("export '" + id + "' still in use");
            }
            return beginRemoval(entry);
        }
        requireRunning();
        if (entry == null)
        {
            throw EngineException.generic("Export '" + id + "' is not found");
        }
        if (entry.shuttingDown)
        {
            throw EngineException.generic("Export '" + id + "' is already shutting down");
        }
        // A client that just disconnected may not have been noticed yet by its connection's thread; give it a
        // moment rather than refuse (qemu-storage-daemon never refuses then).
        if (mode == RemoveMode.SAFE && server.activeConnections(entry.exportName, DISCONNECT_SETTLE) > 0)
        {
            throw EngineException.generic("export '" + id + "' still in use");
        }
        return beginRemoval(entry);
    }

    /** @return every export, in the order added ({@code query-block-exports}). */
    public synchronized List<ExportInfo> query()
    {
        final List<ExportInfo> out = new ArrayList<>();
        for (final Entry entry : exports.values())
        {
            out.add(entry.info());
        }
        return out;
    }

    /**
     * @param nodeName a node.
     * @return whether an export (even one shutting down) serves it; such a node must not be deleted.
     */
    public synchronized boolean isExported(final String nodeName)
    {
        for (final Entry entry : exports.values())
        {
            if (entry.request.node().nodeName().equals(nodeName))
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Ends the NBD server's latency window and starts the next ({@link NbdServer#takeLongestModifyingRequestNanos()}).
     *
     * @return the longest time one modifying request took in the window, from its arrival to its reply on the
     *         socket, in nanoseconds; 0 when none came or the server is not running.
     */
    public synchronized long takeLongestNbdModifyingRequestNanos()
    {
        return server == null ? 0 : server.takeLongestModifyingRequestNanos();
    }

    /** @return open client connections over all exports; 0 when stopped. */
    public synchronized int connectionCount()
    {
        return server == null ? 0 : server.connectionCount();
    }

    /** Stops the server if it runs (as {@link #stop()}). */
    @Override
    public void close()
    {
        final List<CompletableFuture<Void>> removals;
        synchronized (this)
        {
            removals = beginRemovals(true);
        }
        awaitRemovals(removals);
        if (isRunning())
        {
            try
            {
                stop();
            }
            catch (final EngineException ex)
            {
                // Stopped concurrently: nothing left to do.
            }
        }
    }

    // ------------------------------------------------------------------------------------------ internals

    private void checkBitmap(final ExportNode node, final BitmapRef ref, final boolean readOnly)
    {
        final TrackedDisk holder = ref.disk() != null ? ref.disk() : node.disk();
        if (!holder.bitmaps().exists(ref.name()))
        {
            throw EngineException.generic("Bitmap '" + ref.name() + "' is not found");
        }
        final BitmapInfo info = holder.bitmaps().query(ref.name());
        if (info.busy())
        {
            throw EngineException.generic("Bitmap '" + ref.name()
                + "' is currently in use by another operation and cannot be used");
        }
        if (info.inconsistent())
        {
            throw EngineException.generic("Bitmap '" + ref.name() + "' is inconsistent and cannot be used");
        }
        // QEMU: an enabled bitmap would change under a read-only client of a node that is still written.
        if (readOnly && !holder.store().isReadOnly() && info.recording())
        {
            throw EngineException.generic("Enabled bitmap '" + ref.name() + "' incompatible with readonly export");
        }
    }

    private NbdExport exportOf(final ExportNode node, final String exportName, final String description,
        final boolean readOnly, final List<MetaContext> contexts)
    {
        if (node instanceof ExportNode.Fleecing fleecing)
        {
            return new BlockStoreExport(exportName, description, fleecing.view(), true, contexts);
        }
        return new TrackedDiskExport(exportName, description, node.disk(), readOnly, multiConn, contexts);
    }

    private CompletableFuture<Void> beginRemoval(final Entry entry)
    {
        entry.shuttingDown = true;
        final NbdServer owner = server;
        final Thread thread = new Thread(() ->
        {
            try
            {
                if (entry.vhost != null)
                {
                    entry.vhost.close();
                }
                else
                {
                    owner.removeExport(entry.exportName);
                }
            }
            finally
            {
                release(entry.bitmaps);
                synchronized (this)
                {
                    exports.remove(entry.request.id());
                }
                try
                {
                    events.onEvent("BLOCK_EXPORT_DELETED", Map.of("id", entry.request.id()));
                }
                catch (final RuntimeException ex)
                {
                    // A listener's failure is its own.
                }
                entry.deleted.complete(null);
            }
        }, "export-remove-" + entry.request.id());
        thread.setDaemon(true);
        thread.start();
        return entry.deleted;
    }

    private static void release(final List<BusyBitmap> bitmaps)
    {
        for (final BusyBitmap bitmap : bitmaps)
        {
            try
            {
                bitmap.disk.bitmaps().setBusy(bitmap.name, false);
            }
            catch (final RuntimeException ex)
            {
                // The bitmap is gone with its disk: nothing holds it any more.
            }
        }
    }

    private void requireRunning()
    {
        if (server == null)
        {
            throw EngineException.generic("NBD server not running");
        }
    }

    /** QEMU's {@code id_wellformed}: a letter, then letters, digits, '-', '.' or '_'. */
    static boolean isWellFormedId(final String id)
    {
        if (id.isEmpty() || !isAsciiLetter(id.charAt(0)))
        {
            return false;
        }
        for (int i = 1; i < id.length(); i++)
        {
            final char c = id.charAt(i);
            if (!isAsciiLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_')
            {
                return false;
            }
        }
        return true;
    }

    private static boolean isAsciiLetter(final char c)
    {
        return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z';
    }

    private static void closeQuietly(final NbdServer target)
    {
        try
        {
            target.close();
        }
        catch (final IOException ex)
        {
            // Only the Unix socket file's deletion can fail here; the next bind reports it.
        }
    }

    /** A bitmap an export holds busy. */
    private record BusyBitmap(TrackedDisk disk, String name)
    {
    }

    /** One export's state; guarded by the manager's monitor. */
    private static final class Entry
    {
        final ExportRequest request;
        final String exportName;
        final List<BusyBitmap> bitmaps;
        final VhostUserBlkServer vhost;
        final CompletableFuture<Void> deleted = new CompletableFuture<>();
        boolean shuttingDown;

        Entry(final ExportRequest request, final String exportName, final List<BusyBitmap> bitmaps)
        {
            this(request, exportName, bitmaps, null);
        }

        Entry(final ExportRequest request, final String exportName, final List<BusyBitmap> bitmaps,
            final VhostUserBlkServer vhost)
        {
            this.request = request;
            this.exportName = exportName;
            this.bitmaps = bitmaps;
            this.vhost = vhost;
        }

        ExportInfo info()
        {
            return new ExportInfo(request.id(), vhost != null ? TYPE_VHOST_USER_BLK : TYPE, request.node().nodeName(),
                shuttingDown, exportName,
                request.writable(), bitmaps.stream().map(BusyBitmap::name).toList());
        }
    }
}
