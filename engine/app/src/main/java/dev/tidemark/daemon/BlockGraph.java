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
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.FaultyStore;
import dev.tidemark.io.RawFileStore;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.qmp.QmpJson;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
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
 * What a node is, its driver decides ({@link BlockDrivers}); the graph keeps names, parents and owners. Events of
 * every disk, job and export go to one {@link EngineEvents}.
 */
final class BlockGraph implements AutoCloseable, BlockDriver.Context
{
    private static final System.Logger LOG = System.getLogger(BlockGraph.class.getName());
    private static final Pattern NODE_NAME = Pattern.compile("[A-Za-z][A-Za-z0-9._-]*");
    private static final int MAX_NODE_NAME = 31;

    private final Map<String, BlockDriver> drivers;
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
    /** Nodes created by the {@code blockdev-add} in progress, removed again if it fails. */
    private List<BlockNode> adding;

    /**
     * @param events receives every engine event (jobs, exports, fleecing).
     * @param bitmapRoot directory under which each file node keeps its bitmaps ({@code ROOT/<node-name>}), or
     *                   {@code null} for {@code <image>.bitmaps} beside each image.
     * @param durable whether new disks start in durable mode.
     * @param drivers the block drivers {@code blockdev-add} knows, by name ({@link BlockDrivers#ALL}).
     */
    BlockGraph(final EngineEvents events, final Path bitmapRoot, final boolean durable,
        final Map<String, BlockDriver> drivers)
    {
        this.drivers = drivers;
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

    @Override
    public BlockStore wrap(final BlockStore store)
    {
        return faultInjection ? new FaultyStore(store) : store;
    }

    Map<String, BlockDriver> drivers()
    {
        return drivers;
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
        return node.state.disk(node);
    }

    /** @return the top node of the disk (its raw parent when there is one), where bitmaps are reported. */
    BlockNode topOf(final BlockNode fileNode)
    {
        for (final BlockNode n : nodes.values())
        {
            if (n != fileNode && n.state.trackedFile() == fileNode)
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
            if (n.state.ownDisk() == disk)
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
        final String named = bitmapNodes.get(fileNode.state.ownDisk().name() + "\u0000" + bitmap);
        return named != null && nodes.containsKey(named) ? named : topOf(fileNode).name;
    }

    @Override
    public TrackedDisk openDisk(final String nodeName, final Path image, final boolean readOnly,
        final Path bitmapDirectory)
    {
        try
        {
            final RawFileStore store = readOnly ? RawFileStore.open(image, RawFileStore.Option.READ_ONLY)
                : RawFileStore.open(image);
            final TrackedDisk disk;
            try
            {
                disk = TrackedDisk.open(DiskOptions.of(store, bitmapDirectory).withName(nodeName)
                    .withDurable(durable).withCloseStore(true));
            }
            catch (final IOException | RuntimeException ex)
            {
                store.close();
                throw ex;
            }
            disk.addListener(events);
            for (final String message : disk.openMessages())
            {
                LOG.log(System.Logger.Level.INFO, () -> "disk " + nodeName + ": " + message);
            }
            return disk;
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Could not open '" + image + "': " + describe(ex));
        }
    }

    @Override
    public Path bitmapDirectory(final String nodeName, final Path image)
    {
        return bitmapRoot != null ? bitmapRoot.resolve(nodeName) : DiskOptions.bitmapDirectoryFor(image);
    }

    @Override
    public TlsCredentials tlsCredentials(final String id, final TlsCredentials.Endpoint endpoint)
    {
        return objects.tlsCredentials(id, endpoint);
    }

    /**
     * @param node a backup target.
     * @return the store a backup writes into.
     */
    BlockStore targetStore(final BlockNode node)
    {
        return node.state.backupTarget(node);
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
        adding = created;
        try
        {
            return addNode(args, topLevel);
        }
        catch (final RuntimeException ex)
        {
            for (int i = created.size() - 1; i >= 0; i--)
            {
                discard(created.get(i));
            }
            throw ex;
        }
        finally
        {
            adding = null;
        }
    }

    private BlockNode addNode(final ObjectNode args, final boolean topLevel)
    {
        final String driverName = args.path("driver").asText();
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
        final BlockDriver driver = drivers.get(driverName);
        if (driver == null)
        {
            throw EngineException.generic("Unknown driver '" + driverName + "'");
        }
        final BlockNode node = new BlockNode(name, driverName, readOnly, !topLevel);
        node.state = driver.open(node, args, this);
        nodes.put(name, node);
        adding.add(node);
        for (final BlockNode child : node.state.children())
        {
            child.parents++;
        }
        return node;
    }

    @Override
    public BlockNode child(final JsonNode ref, final String role)
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
        return addNode((ObjectNode)ref, false);
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
        if (node.state.ownDisk() != null && diskInUse(node.state.ownDisk()))
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
            if (n.state.fleecedDisk() == disk)
            {
                return true;
            }
            if (n.state.ownDisk() == disk && exports.isExported(n.name))
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
        node.close();
        for (final BlockNode child : node.state.children())
        {
            child.parents--;
            if (child.implicit && child.parents == 0)
            {
                discard(child);
            }
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
        info.put("file", node.state.filename());
        image.put("virtual-size", node.state.size());
        image.put("filename", node.state.filename());
        image.put("format", node.driver);
        node.state.describe(info, image);
        final BlockNode fileNode = node.state.trackedFile();
        if (fileNode != null && fileNode.state.ownDisk() != null)
        {
            final ArrayNode bitmaps = QmpJson.MAPPER.createArrayNode();
            for (final BitmapInfo b : fileNode.state.ownDisk().bitmaps().query())
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
        return info;
    }

    /** Adds {@code actual-size} (the bytes the file takes) to an {@code ImageInfo} when the file exists. */
    static void putActualSize(final ObjectNode image, final Path file)
    {
        if (Files.exists(file))
        {
            try
            {
                image.put("actual-size", Files.size(file));
            }
            catch (final IOException ex)
            {
                LOG.log(System.Logger.Level.DEBUG, "size of " + file, ex);
            }
        }
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
        return node.state.size();
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
            // Targets and views first, while the disks they copy from are still open.
            final BlockNode node = all.get(i);
            if (node.state.ownDisk() == null)
            {
                node.close();
            }
        }
        for (int i = all.size() - 1; i >= 0; i--)
        {
            all.get(i).close();
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
