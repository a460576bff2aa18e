package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.EngineEvents;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.export.ExportManager;
import dev.tidemark.engine.job.Job;
import dev.tidemark.engine.job.JobManager;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.io.qcow2.ClusterState;
import dev.tidemark.io.qcow2.Qcow2Reader;
import dev.tidemark.io.qcow2.Qcow2Writer;
import dev.tidemark.qmp.QmpJson;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The daemon's named block nodes, tracked disks, jobs and exports; not thread-safe: confine to the QMP
 * dispatcher thread (every QMP command runs there), except {@link #close()} which runs once after the server
 * stopped dispatching.
 *
 * <p>Node names follow QEMU: a letter first, then letters, digits, {@code - . _}, at most 31 characters, unique.
 * A {@code file} node becomes a {@link TrackedDisk} when something needs its writes tracked (a bitmap command, an
 * export, a backup from it) or at once when its bitmap directory already holds a journal (persistent bitmaps of an
 * earlier run are reloaded and repaired). Events of every disk, job and export go to one {@link EngineEvents}.
 */
final class BlockGraph implements AutoCloseable
{
    private static final System.Logger LOG = System.getLogger(BlockGraph.class.getName());
    private static final Pattern NODE_NAME = Pattern.compile("[A-Za-z][A-Za-z0-9._-]*");
    private static final int MAX_NODE_NAME = 31;

    private final Map<String, BlockNode> nodes = new LinkedHashMap<>();
    private final Map<String, String> bitmapNodes = new HashMap<>();
    private final EngineEvents events;
    private final JobManager jobs = new JobManager();
    private final ExportManager exports;
    private final ObjectRegistry objects = new ObjectRegistry();
    private final Path bitmapRoot;
    private final boolean durable;
    private boolean faultInjection;
    private int implicitCounter;

    /**
     * @param events receives every engine event (jobs, exports, fleecing).
     * @param bitmapRoot directory under which each file node keeps its bitmaps ({@code ROOT/<node-name>}), or
     *                   {@code null} for {@code <image>.bitmaps} beside each image.
     * @param durable whether new disks start in durable mode.
     */
    BlockGraph(final EngineEvents events, final Path bitmapRoot, final boolean durable)
    {
        this.events = events;
        this.exports = new ExportManager(events);
        this.bitmapRoot = bitmapRoot;
        this.durable = durable;
    }

    /** Wraps every target store added from now on in a {@link FaultyStore} (test daemons only). */
    void enableFaultInjection()
    {
        faultInjection = true;
    }

    private BlockStore wrap(final BlockStore store)
    {
        return faultInjection ? new FaultyStore(store) : store;
    }

    JobManager jobs()
    {
        return jobs;
    }

    ExportManager exports()
    {
        return exports;
    }

    ObjectRegistry objects()
    {
        return objects;
    }

    List<BlockNode> nodes()
    {
        return new ArrayList<>(nodes.values());
    }

    // ---- lookups with QEMU's texts ---------------------------------------------------------------------------

    /** @return the node, or {@code null}. */
    BlockNode find(final String name)
    {
        return nodes.get(name);
    }

    /** Lookup for commands that say {@code Cannot find device='X' nor node-name='X'} (add, backup, export). */
    BlockNode device(final String name)
    {
        final BlockNode node = nodes.get(name);
        if (node == null)
        {
            throw new EngineException(EngineException.Reason.GENERIC,
                "Cannot find device='" + name + "' nor node-name='" + name + "'");
        }
        return node;
    }

    /** Lookup for bitmap commands other than add: {@code Node 'X' not found}. */
    BlockNode bitmapNode(final String name)
    {
        final BlockNode node = nodes.get(name);
        if (node == null)
        {
            throw EngineException.generic("Node '" + name + "' not found");
        }
        return node;
    }

    /**
     * @param node a node.
     * @return the tracked disk whose writes the node's data goes through; opened now if needed.
     * @throws EngineException when the node's driver cannot carry bitmaps.
     */
    TrackedDisk disk(final BlockNode node)
    {
        if ("raw".equals(node.driver))
        {
            return disk(node.file);
        }
        if (!"file".equals(node.driver))
        {
            throw EngineException.generic("Node '" + node.name + "' is a " + node.driver
                + " node; Tidemark tracks writes of raw disks (file and raw nodes) only");
        }
        if (node.disk == null)
        {
            openDisk(node);
        }
        return node.disk;
    }

    /** @return the top node of the disk (its raw parent when there is one), where bitmaps are reported. */
    BlockNode topOf(final BlockNode fileNode)
    {
        for (final BlockNode n : nodes.values())
        {
            if ("raw".equals(n.driver) && n.file == fileNode)
            {
                return n;
            }
        }
        return fileNode;
    }

    /** @return the file node of a disk. */
    BlockNode fileNodeOf(final TrackedDisk disk)
    {
        for (final BlockNode n : nodes.values())
        {
            if (n.disk == disk)
            {
                return n;
            }
        }
        throw new IllegalStateException("no node for disk " + disk.name());
    }

    void noteBitmapNode(final TrackedDisk disk, final String bitmap, final String nodeName)
    {
        bitmapNodes.put(disk.name() + "\u0000" + bitmap, nodeName);
    }

    void forgetBitmapNode(final TrackedDisk disk, final String bitmap)
    {
        bitmapNodes.remove(disk.name() + "\u0000" + bitmap);
    }

    /** @return the node a bitmap was added through (its disk's top node for bitmaps of an earlier run). */
    String bitmapNodeName(final BlockNode fileNode, final String bitmap)
    {
        final String named = bitmapNodes.get(fileNode.disk.name() + "\u0000" + bitmap);
        return named != null && nodes.containsKey(named) ? named : topOf(fileNode).name;
    }

    private void openDisk(final BlockNode node)
    {
        try
        {
            final RawFileStore store = node.readOnly
                ? RawFileStore.open(node.filename, RawFileStore.Option.READ_ONLY)
                : RawFileStore.open(node.filename);
            final TrackedDisk disk;
            try
            {
                disk = TrackedDisk.open(DiskOptions.of(store, node.bitmapDirectory).withName(node.name)
                    .withDurable(durable).withCloseStore(true));
            }
            catch (final IOException | RuntimeException ex)
            {
                store.close();
                throw ex;
            }
            disk.addListener(events);
            node.disk = disk;
            for (final String message : disk.openMessages())
            {
                LOG.log(System.Logger.Level.INFO, () -> "disk " + node.name + ": " + message);
            }
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Could not open '" + node.filename + "': " + describe(ex));
        }
    }

    /**
     * @param node a backup target.
     * @return the store a backup writes into.
     */
    BlockStore targetStore(final BlockNode node)
    {
        switch (node.driver)
        {
            case "raw":
                return targetStore(node.file);
            case "file":
                if (node.disk != null)
                {
                    return node.disk.store();
                }
                if (node.store == null)
                {
                    try
                    {
                        node.store = wrap(node.readOnly
                            ? RawFileStore.open(node.filename, RawFileStore.Option.READ_ONLY)
                            : RawFileStore.open(node.filename));
                    }
                    catch (final IOException ex)
                    {
                        throw EngineException.generic("Could not open '" + node.filename + "': " + describe(ex));
                    }
                }
                return node.store;
            default:
                if (node.view != null)
                {
                    throw EngineException.generic("Node '" + node.name + "' is busy: it is a fleecing view");
                }
                return node.store;
        }
    }

    // ---- blockdev-add / blockdev-del -------------------------------------------------------------------------

    /**
     * Adds a node from validated {@code blockdev-add} arguments; inline children are added as implicit nodes.
     *
     * @throws EngineException with QEMU's text; nothing is added then.
     */
    BlockNode add(final ObjectNode args, final boolean topLevel)
    {
        final List<BlockNode> created = new ArrayList<>();
        try
        {
            return add(args, topLevel, created);
        }
        catch (final RuntimeException ex)
        {
            for (int i = created.size() - 1; i >= 0; i--)
            {
                discard(created.get(i));
            }
            throw ex;
        }
    }

    private BlockNode add(final ObjectNode args, final boolean topLevel, final List<BlockNode> created)
    {
        final String driver = args.path("driver").asText();
        String name = args.hasNonNull("node-name") ? args.get("node-name").asText() : null;
        if (name == null)
        {
            if (topLevel)
            {
                throw EngineException.generic("'node-name' must be specified for the root node");
            }
            name = "#block" + String.format("%03d", implicitCounter++);
        }
        else
        {
            if (name.length() > MAX_NODE_NAME)
            {
                throw EngineException.generic("Node name too long");
            }
            if (!NODE_NAME.matcher(name).matches())
            {
                throw EngineException.generic("Invalid node-name: '" + name + "'");
            }
        }
        if (nodes.containsKey(name))
        {
            throw EngineException.generic("Duplicate nodes with node-name='" + name + "'");
        }
        final boolean readOnly = args.path("read-only").asBoolean(false);
        if (args.path("force-share").asBoolean(false) && !readOnly)
        {
            throw EngineException.generic("force-share=on can only be used with read-only images");
        }
        final BlockNode node;
        switch (driver)
        {
            case "file":
                node = addFile(name, args, readOnly, !topLevel);
                break;
            case "raw":
                node = addRaw(name, args, readOnly, !topLevel, created);
                break;
            case "qcow2":
                node = addQcow2(name, args, readOnly, !topLevel, created);
                break;
            case "nbd":
                node = addNbd(name, args, readOnly, !topLevel);
                break;
            default:
                throw EngineException.generic("Unknown driver '" + driver + "'");
        }
        nodes.put(name, node);
        created.add(node);
        if (node.file != null)
        {
            node.file.parents++;
        }
        if (node.backing != null)
        {
            node.backing.parents++;
        }
        return node;
    }

    private BlockNode addFile(final String name, final ObjectNode args, final boolean readOnly,
        final boolean implicit)
    {
        final Path path = Path.of(args.get("filename").asText());
        if (!Files.exists(path))
        {
            throw EngineException.generic("Could not open '" + path + "': No such file or directory");
        }
        if (!Files.isRegularFile(path))
        {
            throw EngineException.generic("Could not open '" + path + "': not a regular file");
        }
        if (!readOnly && !Files.isWritable(path))
        {
            throw EngineException.generic("Could not open '" + path + "': Permission denied");
        }
        final Path bitmaps = bitmapRoot != null ? bitmapRoot.resolve(name) : DiskOptions.bitmapDirectoryFor(path);
        final BlockNode node = new BlockNode(name, "file", readOnly, path, null, null, implicit, null, bitmaps);
        if (Files.exists(bitmaps.resolve(Journal.FILE_NAME)))
        {
            // Persistent bitmaps of an earlier run: reload (and repair) them now, before any write.
            openDisk(node);
        }
        return node;
    }

    private BlockNode child(final JsonNode ref, final String role, final List<BlockNode> created)
    {
        if (ref.isTextual())
        {
            final BlockNode named = nodes.get(ref.asText());
            if (named == null)
            {
                throw EngineException.generic("Cannot find device='" + ref.asText() + "' nor node-name='"
                    + ref.asText() + "'");
            }
            return named;
        }
        if (!ref.isObject())
        {
            throw EngineException.generic("Invalid parameter type for '" + role + "', expected: BlockdevRef");
        }
        return add((ObjectNode)ref, false, created);
    }

    private BlockNode addRaw(final String name, final ObjectNode args, final boolean readOnly, final boolean implicit,
        final List<BlockNode> created)
    {
        if (args.has("offset") && args.get("offset").asLong() != 0 || args.has("size"))
        {
            throw EngineException.generic("raw nodes with 'offset' or 'size' are not supported by Tidemark");
        }
        final BlockNode file = child(args.get("file"), "file", created);
        if (!"file".equals(file.driver))
        {
            throw EngineException.generic("A raw node's file must be a 'file' node (Tidemark tracks raw disk"
                + " files), not '" + file.driver + "'");
        }
        if (!readOnly && file.readOnly)
        {
            throw new EngineException(EngineException.Reason.READ_ONLY, "Block node is read-only");
        }
        return new BlockNode(name, "raw", readOnly, null, file, null, implicit, null, null);
    }

    private BlockNode addNbd(final String name, final ObjectNode args, final boolean readOnly,
        final boolean implicit)
    {
        final JsonNode server = args.get("server");
        final String export = args.path("export").asText("");
        final NbdClient.Builder builder = NbdClient.builder().exportName(export).connections(1)
            .replyTimeout(Duration.ofSeconds(60));
        final boolean tls = args.hasNonNull("tls-creds");
        final String remote;
        if ("unix".equals(server.path("type").asText()))
        {
            builder.unix(Path.of(server.path("path").asText()));
            remote = "nbd+unix:///" + export + "?socket=" + server.path("path").asText();
        }
        else
        {
            final String host = server.path("host").asText();
            final int port;
            try
            {
                port = Integer.parseInt(server.path("port").asText("10809"));
            }
            catch (final NumberFormatException ex)
            {
                throw EngineException.generic("Parameter 'server.port' is not a port number: '"
                    + server.path("port").asText() + "'");
            }
            builder.tcp(host, port);
            remote = (tls ? "nbds://" : "nbd://") + host + ":" + port + "/" + export;
        }
        if (tls)
        {
            builder.tls(objects.tlsCredentials(args.get("tls-creds").asText(), TlsCredentials.Endpoint.CLIENT));
            if (args.hasNonNull("tls-hostname"))
            {
                builder.tlsHostname(args.get("tls-hostname").asText());
            }
        }
        final BlockNode node = new BlockNode(name, "nbd", readOnly, null, null, null, implicit, remote, null);
        try
        {
            node.store = wrap(builder.connect());
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Failed to connect to '" + remote + "': " + describe(ex));
        }
        if (!readOnly && node.store.isReadOnly())
        {
            closeQuietly(node.store);
            throw new EngineException(EngineException.Reason.READ_ONLY, "Block node is read-only");
        }
        return node;
    }

    private BlockNode addQcow2(final String name, final ObjectNode args, final boolean readOnly,
        final boolean implicit, final List<BlockNode> created)
    {
        final BlockNode file = child(args.get("file"), "file", created);
        if (!"file".equals(file.driver))
        {
            throw EngineException.generic("A qcow2 node's file must be a 'file' node, not '" + file.driver + "'");
        }
        if (file.disk != null)
        {
            throw EngineException.generic("Node '" + file.name + "' is a tracked disk and cannot hold a qcow2 image");
        }
        final JsonNode backingRef = args.get("backing");
        BlockNode backing = null;
        if (backingRef != null && !backingRef.isNull())
        {
            backing = child(backingRef, "backing", created);
        }
        final Path path = file.filename;
        final BlockNode node = new BlockNode(name, "qcow2", readOnly, path, file, backing, implicit, null, null);
        try
        {
            node.store = wrap(openQcow2(path, readOnly));
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Could not open '" + path + "': " + describe(ex));
        }
        return node;
    }

    /**
     * Opens a qcow2 image. A writable node over an image that holds no data yet (made by {@code qemu-img create}
     * or {@code blockdev-create} for a backup) becomes a {@link Qcow2Writer}: the empty image is written again
     * with the same size, cluster size and backing file. An image with data is opened read-only.
     */
    private static BlockStore openQcow2(final Path path, final boolean readOnly) throws IOException
    {
        final Qcow2Reader reader = Qcow2Reader.open(path);
        if (readOnly)
        {
            return reader;
        }
        final long size = reader.size();
        final int cluster = reader.clusterSize();
        final String backingFile = reader.backingFile();
        final String backingFormat = reader.backingFormat();
        boolean empty = true;
        for (long at = 0; at < size && empty; at += cluster)
        {
            empty = reader.clusterState(at) != ClusterState.DATA;
        }
        if (!empty)
        {
            reader.close();
            throw new IOException("image already holds data; Tidemark writes backups only into new, empty qcow2"
                + " images (open it with read-only=true to read it)");
        }
        reader.close();
        Qcow2Writer.Options options = Qcow2Writer.Options.defaults().withClusterSize(cluster);
        if (backingFile != null)
        {
            options = options.withBacking(backingFile, backingFormat == null ? "qcow2" : backingFormat);
        }
        // Qcow2Writer creates its own file: the empty image is replaced by an equal one this process writes.
        Files.delete(path);
        return Qcow2Writer.create(path, size, options);
    }

    /**
     * Deletes a monitor-owned node ({@code blockdev-del}) and the implicit children only it used.
     *
     * @throws EngineException with QEMU's text when it does not exist, is implicit or in use.
     */
    void delete(final String name)
    {
        final BlockNode node = nodes.get(name);
        if (node == null)
        {
            throw EngineException.generic("Failed to find node with node-name='" + name + "'");
        }
        if (node.implicit)
        {
            throw EngineException.generic("Node " + name + " is not owned by the monitor");
        }
        if (node.parents > 0 || exports.isExported(name) || node.jobId != null && jobAlive(node.jobId))
        {
            throw EngineException.generic("Block device " + name + " is in use");
        }
        if (node.disk != null && (diskInUse(node.disk)))
        {
            throw EngineException.generic("Block device " + name + " is in use");
        }
        discard(node);
    }

    private boolean jobAlive(final String id)
    {
        for (final Job j : jobs.jobs())
        {
            // A job that reached null is gone even if the registry has not dropped it yet (it does so right
            // after the event a client waits for).
            if (j.id().equals(id) && j.settledStatus() != dev.tidemark.engine.job.JobStatus.NULL)
            {
                return true;
            }
        }
        return false;
    }

    private boolean diskInUse(final TrackedDisk disk)
    {
        for (final BlockNode n : nodes.values())
        {
            if (n.viewDisk == disk)
            {
                return true;
            }
            if (n.disk == disk && exports.isExported(n.name))
            {
                return true;
            }
        }
        for (final BitmapInfo info : disk.bitmaps().query())
        {
            if (info.busy())
            {
                return true;
            }
        }
        return false;
    }

    private void discard(final BlockNode node)
    {
        nodes.remove(node.name, node);
        closeNode(node);
        if (node.file != null)
        {
            node.file.parents--;
            if (node.file.implicit && node.file.parents == 0)
            {
                discard(node.file);
            }
        }
        if (node.backing != null)
        {
            node.backing.parents--;
            if (node.backing.implicit && node.backing.parents == 0)
            {
                discard(node.backing);
            }
        }
    }

    private static void closeNode(final BlockNode node)
    {
        if (node.view != null)
        {
            closeQuietly(node.view);
            node.view = null;
            node.viewDisk = null;
        }
        if (node.store != null)
        {
            closeQuietly(node.store);
            node.store = null;
        }
        if (node.disk != null)
        {
            closeQuietly(node.disk);
            node.disk = null;
        }
    }

    // ---- queries -----------------------------------------------------------------------------------------------

    /** @return {@code query-named-block-nodes}: every node, bitmaps on the node they were added through. */
    ArrayNode queryNamedBlockNodes(final boolean flat)
    {
        final ArrayNode out = QmpJson.MAPPER.createArrayNode();
        for (final BlockNode node : nodes.values())
        {
            out.add(deviceInfo(node, flat));
        }
        return out;
    }

    /** @return {@code query-block}: one entry per root node (a node no other node uses). */
    ArrayNode queryBlock()
    {
        final ArrayNode out = QmpJson.MAPPER.createArrayNode();
        for (final BlockNode node : nodes.values())
        {
            if (node.parents > 0 || node.implicit)
            {
                continue;
            }
            final ObjectNode info = out.addObject();
            info.put("device", "");
            info.put("qdev", node.name);
            info.put("locked", false);
            info.put("removable", false);
            info.set("inserted", deviceInfo(node, false));
            info.put("type", "unknown");
        }
        return out;
    }

    private ObjectNode deviceInfo(final BlockNode node, final boolean flat)
    {
        final ObjectNode info = QmpJson.object();
        info.put("iops_rd", 0);
        info.put("detect_zeroes", "off");
        final ObjectNode image = info.putObject("image");
        info.put("iops_wr", 0);
        info.put("ro", node.readOnly);
        info.put("node-name", node.name);
        info.put("backing_file_depth", 0);
        info.put("drv", node.driver);
        info.put("iops", 0);
        info.put("bps_wr", 0);
        info.put("write_threshold", 0);
        info.put("encrypted", false);
        info.put("bps", 0);
        info.put("bps_rd", 0);
        final ObjectNode cache = info.putObject("cache");
        cache.put("no-flush", false);
        cache.put("direct", false);
        cache.put("writeback", true);
        info.put("file", node.imageFilename());
        final long size = sizeOf(node);
        image.put("virtual-size", size);
        image.put("filename", node.imageFilename());
        image.put("format", node.format());
        if (node.filename != null && Files.exists(node.filename))
        {
            try
            {
                image.put("actual-size", Files.size(node.filename));
            }
            catch (final IOException ex)
            {
                LOG.log(System.Logger.Level.DEBUG, "size of " + node.filename, ex);
            }
        }
        final BlockStore own = node.store instanceof FaultyStore faulty ? faulty.delegate() : node.store;
        if (own instanceof Qcow2Reader reader && reader.backingFile() != null)
        {
            info.put("backing_file", reader.backingFile());
            info.put("backing_file_depth", reader.chainLength() - 1);
            image.put("backing-filename", reader.backingFile());
        }
        else if (own instanceof Qcow2Writer writer && writer.backing() != null)
        {
            info.put("backing_file_depth", 1);
        }
        final BlockNode fileNode = "raw".equals(node.driver) ? node.file : "file".equals(node.driver) ? node : null;
        if (fileNode != null && fileNode.disk != null)
        {
            final ArrayNode bitmaps = QmpJson.MAPPER.createArrayNode();
            for (final BitmapInfo b : fileNode.disk.bitmaps().query())
            {
                if (b.name() != null && bitmapNodeName(fileNode, b.name()).equals(node.name))
                {
                    bitmaps.add(bitmapInfo(b));
                }
            }
            if (!bitmaps.isEmpty())
            {
                info.set("dirty-bitmaps", bitmaps);
            }
        }
        if (node.view != null)
        {
            info.put("drv", "qcow2");
        }
        return info;
    }

    static ObjectNode bitmapInfo(final BitmapInfo b)
    {
        final ObjectNode o = QmpJson.object();
        o.put("name", b.name());
        o.put("recording", b.recording());
        o.put("persistent", b.persistent());
        o.put("busy", b.busy());
        o.put("count", b.count());
        o.put("granularity", b.granularity());
        if (b.inconsistent())
        {
            o.put("inconsistent", true);
        }
        return o;
    }

    long sizeOf(final BlockNode node)
    {
        if (node.view != null)
        {
            return node.view.size();
        }
        if (node.disk != null)
        {
            return node.disk.size();
        }
        if (node.store != null)
        {
            return node.store.size();
        }
        if (node.file != null)
        {
            return sizeOf(node.file);
        }
        if (node.filename != null)
        {
            try
            {
                return Files.size(node.filename);
            }
            catch (final IOException ex)
            {
                return 0;
            }
        }
        return 0;
    }

    // ---- shutdown ----------------------------------------------------------------------------------------------

    /**
     * Cancels running jobs, stops the NBD server, closes views, stores and disks (every bitmap file closed
     * cleanly, the journals' clean-close records written). Runs once, after dispatching stopped.
     */
    @Override
    public void close()
    {
        for (final Job job : jobs.jobs())
        {
            try
            {
                job.cancel();
            }
            catch (final RuntimeException ex)
            {
                LOG.log(System.Logger.Level.DEBUG, "cancel " + job.id() + " at shutdown", ex);
            }
        }
        for (final Job job : jobs.jobs())
        {
            try
            {
                job.awaitWorker(10_000);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                break;
            }
        }
        try
        {
            exports.close();
        }
        catch (final RuntimeException ex)
        {
            LOG.log(System.Logger.Level.WARNING, "stopping the NBD server", ex);
        }
        final List<BlockNode> all = new ArrayList<>(nodes.values());
        for (int i = all.size() - 1; i >= 0; i--)
        {
            final BlockNode node = all.get(i);
            if (node.view != null || node.store != null)
            {
                closeNode(node);
            }
        }
        for (int i = all.size() - 1; i >= 0; i--)
        {
            closeNode(all.get(i));
        }
        nodes.clear();
    }

    static void closeQuietly(final AutoCloseable closeable)
    {
        try
        {
            closeable.close();
        }
        catch (final Exception ex)
        {
            LOG.log(System.Logger.Level.WARNING, "closing " + closeable, ex);
        }
    }

    static String describe(final IOException ex)
    {
        if (ex instanceof NoSuchFileException)
        {
            return "No such file or directory";
        }
        return ex.getMessage() == null ? ex.getClass().getSimpleName() : ex.getMessage();
    }
}
