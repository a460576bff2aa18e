package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.engine.export.BitmapRef;
import dev.tidemark.engine.export.ExportAddress;
import dev.tidemark.engine.export.ExportInfo;
import dev.tidemark.engine.export.ExportNode;
import dev.tidemark.engine.export.ExportManager;
import dev.tidemark.engine.export.ExportRequest;
import dev.tidemark.engine.export.NbdSecurity;
import dev.tidemark.engine.export.RemoveMode;
import dev.tidemark.engine.fleece.FleecingOptions;
import dev.tidemark.engine.fleece.FleecingView;
import dev.tidemark.engine.job.BackupOptions;
import dev.tidemark.engine.job.BackupStartAction;
import dev.tidemark.engine.job.BitmapMode;
import dev.tidemark.engine.job.JobOptions;
import dev.tidemark.engine.job.JobTransaction;
import dev.tidemark.engine.job.OnError;
import dev.tidemark.engine.job.SyncMode;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.ring.RingStatistics;
import dev.tidemark.io.FaultyStore;
import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.qmp.QmpCommandRegistry;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpErrorClass;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpHandler;
import dev.tidemark.qmp.QmpJson;
import dev.tidemark.qmp.QmpStruct;
import dev.tidemark.qmp.QmpType;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Registers the engine's QMP commands (QEMU's names, argument shapes, defaults and error texts) on a registry;
 * handlers run on the QMP dispatcher thread only, which confines the {@link BlockGraph} they share.
 *
 * <p>Engine failures ({@link EngineException}) become QMP errors of the same class and text; I/O failures become
 * {@code GenericError} with the cause's message. See docs/qmp.md for every command.
 */
public final class EngineCommands
{
    private static final System.Logger LOG = System.getLogger(EngineCommands.class.getName());

    static final String PREFIX = "__dev.tidemark_";
    /** {@code nbd-server-start}'s argument that allows clear text on a non-loopback address ({@code --nbd-insecure}). */
    public static final String NBD_INSECURE = ExportManager.INSECURE_ARGUMENT;

    private final BlockGraph graph;

    private EngineCommands(final BlockGraph graph)
    {
        this.graph = graph;
    }

    /**
     * Registers every engine command.
     *
     * @param registry the server's registry.
     * @param graph the nodes the commands act on.
     * @param testCommands whether to add the test-only fault injection command.
     */
    static void register(final QmpCommandRegistry registry, final BlockGraph graph, final boolean testCommands)
    {
        new EngineCommands(graph).registerAll(registry, testCommands);
    }

    // ---- schema pieces -----------------------------------------------------------------------------------------

    private static QmpField req(final String name, final QmpType type)
    {
        return QmpField.required(name, type);
    }

    private static QmpField opt(final String name, final QmpType type)
    {
        return QmpField.optional(name, type);
    }

    private static QmpType bitmapOrStr()
    {
        return QmpType.alternate("BlockDirtyBitmapOrStr", QmpType.str(),
            QmpType.struct(req("node", QmpType.str()), req("name", QmpType.str())));
    }

    private static QmpField[] nodeName()
    {
        return new QmpField[] {req("node", QmpType.str()), req("name", QmpType.str())};
    }

    private static QmpStruct bitmapAdd()
    {
        return QmpType.struct(req("node", QmpType.str()), req("name", QmpType.str()),
            opt("granularity", QmpType.uint32()), opt("persistent", QmpType.bool()),
            opt("disabled", QmpType.bool()));
    }

    private static QmpStruct bitmapMerge()
    {
        return QmpType.struct(req("node", QmpType.str()), req("target", QmpType.str()),
            req("bitmaps", QmpType.array(bitmapOrStr())));
    }

    private static final String[] ON_ERROR = {"report", "ignore", "enospc", "stop", "auto"};

    private static List<QmpField> backupFields()
    {
        return List.of(opt("job-id", QmpType.str()), req("device", QmpType.str()), req("target", QmpType.str()),
            req("sync", QmpType.enumOf("top", "full", "none", "incremental", "bitmap")),
            opt("speed", QmpType.int64()), opt("bitmap", QmpType.str()),
            opt("bitmap-mode", QmpType.enumOf("on-success", "never", "always")), opt("compress", QmpType.bool()),
            opt("on-source-error", QmpType.enumOf(ON_ERROR)), opt("on-target-error", QmpType.enumOf(ON_ERROR)),
            opt("auto-finalize", QmpType.bool()), opt("auto-dismiss", QmpType.bool()),
            opt("filter-node-name", QmpType.str()), opt("discard-source", QmpType.bool()),
            opt("x-perf", QmpType.struct(opt("use-copy-range", QmpType.bool()), opt("max-workers", QmpType.int64()),
                opt("max-chunk", QmpType.int64()), opt("min-cluster-size", QmpType.uint64()))));
    }

    private static QmpStruct backup()
    {
        return QmpType.struct(backupFields().toArray(new QmpField[0]));
    }

    private static QmpStruct transaction()
    {
        final Map<String, List<QmpField>> variants = new LinkedHashMap<>();
        variants.put("abort", List.of(req("data", QmpType.struct())));
        variants.put("block-dirty-bitmap-add", List.of(req("data", bitmapAdd())));
        for (final String verb : List.of("remove", "clear", "enable", "disable"))
        {
            variants.put("block-dirty-bitmap-" + verb, List.of(req("data", QmpType.struct(nodeName()))));
        }
        variants.put("block-dirty-bitmap-merge", List.of(req("data", bitmapMerge())));
        variants.put("blockdev-backup", List.of(req("data", backup())));
        variants.put(CheckpointActions.ADD, List.of(req("data", CheckpointCommands.addSchema())));
        variants.put(CheckpointActions.BITMAP_FROM, List.of(req("data", CheckpointCommands.bitmapFromSchema())));
        final QmpStruct action = QmpType.union(
            List.of(req("type", QmpType.enumOf(variants.keySet().toArray(new String[0])))), "type", variants);
        return QmpType.struct(req("actions", QmpType.array(action)),
            opt("properties", QmpType.struct(opt("completion-mode", QmpType.enumOf("individual", "grouped")))));
    }

    /** @return QAPI's {@code SocketAddress} (flat union on {@code type}); the nbd driver's {@code server} too. */
    static QmpType socketAddress()
    {
        final Map<String, List<QmpField>> variants = new LinkedHashMap<>();
        variants.put("inet", List.of(req("host", QmpType.str()), req("port", QmpType.str()),
            opt("numeric", QmpType.bool()), opt("to", QmpType.uint32()), opt("ipv4", QmpType.bool()),
            opt("ipv6", QmpType.bool()), opt("keep-alive", QmpType.bool())));
        variants.put("unix", List.of(req("path", QmpType.str()), opt("abstract", QmpType.bool()),
            opt("tight", QmpType.bool())));
        variants.put("fd", List.of(req("str", QmpType.str())));
        return QmpType.union(List.of(req("type", QmpType.enumOf("inet", "unix", "vsock", "fd"))), "type", variants);
    }

    private static QmpType legacySocketAddress()
    {
        final Map<String, List<QmpField>> variants = new LinkedHashMap<>();
        variants.put("inet", List.of(req("data", QmpType.struct(req("host", QmpType.str()),
            req("port", QmpType.str()), opt("numeric", QmpType.bool()), opt("to", QmpType.uint32()),
            opt("ipv4", QmpType.bool()), opt("ipv6", QmpType.bool()), opt("keep-alive", QmpType.bool())))));
        variants.put("unix", List.of(req("data", QmpType.struct(req("path", QmpType.str()),
            opt("abstract", QmpType.bool()), opt("tight", QmpType.bool())))));
        variants.put("fd", List.of(req("data", QmpType.struct(req("str", QmpType.str())))));
        variants.put("vsock", List.of(req("data", QmpType.struct(req("cid", QmpType.str()),
            req("port", QmpType.str())))));
        return QmpType.union(List.of(req("type", QmpType.enumOf("inet", "unix", "vsock", "fd"))), "type", variants);
    }

    // ---- handler plumbing ----------------------------------------------------------------------------------------

    /** A handler body that may throw engine or I/O failures. */
    @FunctionalInterface
    private interface Body
    {
        JsonNode run(ObjectNode args) throws IOException, QmpError;
    }

    private static QmpHandler handler(final Body body)
    {
        return args ->
        {
            try
            {
                return body.run(args);
            }
            catch (final EngineException ex)
            {
                throw toQmp(ex);
            }
            catch (final IOException ex)
            {
                throw QmpError.generic(ex.getMessage() == null ? ex.toString() : ex.getMessage());
            }
            catch (final IllegalArgumentException ex)
            {
                throw QmpError.generic(ex.getMessage());
            }
        };
    }

    static QmpError toQmp(final EngineException ex)
    {
        QmpErrorClass errorClass;
        try
        {
            errorClass = QmpErrorClass.valueOf(ex.errorClass().name());
        }
        catch (final IllegalArgumentException unknown)
        {
            errorClass = QmpErrorClass.GenericError;
        }
        return new QmpError(errorClass, ex.getMessage());
    }

    private static ObjectNode empty()
    {
        return QmpJson.object();
    }

    private static String text(final ObjectNode args, final String name)
    {
        final JsonNode v = args.get(name);
        return v == null || v.isNull() ? null : v.asText();
    }

    // ---- registration --------------------------------------------------------------------------------------------

    private void registerAll(final QmpCommandRegistry r, final boolean testCommands)
    {
        registerBitmaps(r);
        registerJobs(r);
        registerNodes(r);
        registerExports(r);
        registerObjects(r);
        registerDownstream(r, testCommands);
    }

    // ---- objects -------------------------------------------------------------------------------------------------

    private static QmpStruct objectAdd()
    {
        final Map<String, List<QmpField>> variants = new LinkedHashMap<>();
        final QmpType endpoint = QmpType.enumOf("server", "client");
        variants.put("tls-creds-x509", List.of(opt("dir", QmpType.str()), opt("endpoint", endpoint),
            opt("verify-peer", QmpType.bool()), opt("priority", QmpType.str()), opt("sanity-check", QmpType.bool()),
            opt("loaded", QmpType.bool())));
        variants.put("tls-creds-psk", List.of(opt("dir", QmpType.str()), opt("endpoint", endpoint),
            opt("username", QmpType.str()), opt("verify-peer", QmpType.bool()), opt("priority", QmpType.str()),
            opt("loaded", QmpType.bool())));
        variants.put("authz-simple", List.of(req("identity", QmpType.str())));
        final QmpType policy = QmpType.enumOf("deny", "allow");
        variants.put("authz-list", List.of(opt("policy", policy), opt("rules", QmpType.array(QmpType.struct(
            req("match", QmpType.str()), req("policy", policy), opt("format", QmpType.enumOf("exact", "glob")))))));
        return QmpType.union(List.of(req("qom-type", QmpType.enumOf(ObjectRegistry.TYPES.toArray(new String[0]))),
            req("id", QmpType.str())), "qom-type", variants);
    }

    private void registerObjects(final QmpCommandRegistry r)
    {
        r.register("object-add", objectAdd(),
            "Create TLS credentials (tls-creds-x509, tls-creds-psk) or a client authorisation list (authz-simple,"
                + " authz-list).",
            handler(args ->
            {
                graph.objects().add(args);
                return empty();
            }));
        r.register("object-del", QmpType.struct(req("id", QmpType.str())), "Delete an object.",
            handler(args ->
            {
                graph.objects().delete(args.get("id").asText());
                return empty();
            }));
    }

    /** Logs refused NBD clients; called on connection threads. */
    private static void logRefusal(final dev.tidemark.io.nbd.NbdRefusal refusal, final String remote,
        final String detail)
    {
        LOG.log(System.Logger.Level.WARNING, () ->
            "event=nbd-client-refused reason=" + refusal + " remote=" + remote + " detail=\"" + detail + "\"");
    }

    private void registerBitmaps(final QmpCommandRegistry r)
    {
        r.register("block-dirty-bitmap-add", bitmapAdd(),
            "Add a dirty bitmap to a node; it records every write from now on unless disabled.",
            handler(args ->
            {
                final BlockNode node = graph.device(args.get("node").asText());
                transact(node, List.of(bitmapAddAction(args)));
                graph.noteBitmapNode(graph.disk(node), args.get("name").asText(), node.name);
                return empty();
            }));
        r.register("block-dirty-bitmap-remove", QmpType.struct(nodeName()), "Remove a dirty bitmap.",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final String name = args.get("name").asText();
                transact(node, List.of(BitmapActions.remove(name)));
                graph.forgetBitmapNode(graph.disk(node), name);
                return empty();
            }));
        r.register("block-dirty-bitmap-clear", QmpType.struct(nodeName()), "Clear every bit of a dirty bitmap.",
            handler(args -> simpleBitmap(args, BitmapActions.clear(args.get("name").asText()))));
        r.register("block-dirty-bitmap-enable", QmpType.struct(nodeName()), "Start recording writes.",
            handler(args -> simpleBitmap(args, BitmapActions.enable(args.get("name").asText()))));
        r.register("block-dirty-bitmap-disable", QmpType.struct(nodeName()), "Stop recording writes.",
            handler(args -> simpleBitmap(args, BitmapActions.disable(args.get("name").asText()))));
        r.register("block-dirty-bitmap-merge", bitmapMerge(), "OR bitmaps into a target bitmap.",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                transact(node, List.of(mergeAction(node, args)));
                return empty();
            }));
        r.register("x-debug-block-dirty-bitmap-sha256", QmpType.struct(nodeName()),
            "SHA-256 of a bitmap's level-0 words, as QEMU computes it.",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final ObjectNode out = QmpJson.object();
                out.put("sha256", graph.disk(node).bitmaps().sha256(args.get("name").asText()));
                return out;
            }));
    }

    private JsonNode simpleBitmap(final ObjectNode args, final ControlAction action)
    {
        final BlockNode node = graph.bitmapNode(args.get("node").asText());
        transact(node, List.of(action));
        return empty();
    }

    private void transact(final BlockNode node, final List<ControlAction> actions)
    {
        graph.disk(node).transaction(actions);
    }

    private static ControlAction bitmapAddAction(final JsonNode args)
    {
        final long granularity = args.has("granularity") ? args.get("granularity").asLong() : 65536;
        return BitmapActions.add(args.get("name").asText(), granularity, args.path("persistent").asBoolean(false),
            args.path("disabled").asBoolean(false));
    }

    private ControlAction mergeAction(final BlockNode node, final JsonNode args)
    {
        final TrackedDisk disk = graph.disk(node);
        final List<String> sources = new ArrayList<>();
        for (final JsonNode source : args.get("bitmaps"))
        {
            if (source.isTextual())
            {
                sources.add(source.asText());
            }
            else
            {
                final BlockNode other = graph.bitmapNode(source.get("node").asText());
                if (graph.disk(other) != disk)
                {
                    throw EngineException.generic("Merging bitmap '" + source.get("name").asText() + "' of node '"
                        + other.name + "' into a bitmap of another disk is not supported");
                }
                sources.add(source.get("name").asText());
            }
        }
        return BitmapActions.merge(args.get("target").asText(), sources);
    }

    // ---- jobs -------------------------------------------------------------------------------------------------

    /** One prepared {@code blockdev-backup}: its actions, and what to bind after the transaction committed. */
    private final class PreparedBackup
    {
        final TrackedDisk disk;
        final List<ControlAction> actions = new ArrayList<>();
        final BlockNode target;
        final String jobId;
        FleecingView view;

        PreparedBackup(final TrackedDisk disk, final BlockNode target, final String jobId)
        {
            this.disk = disk;
            this.target = target;
            this.jobId = jobId;
        }

        void committed()
        {
            target.jobId = jobId;
            if (view != null)
            {
                target.state = new FleecingNode(target.state, view, disk);
            }
        }

        void failed()
        {
            if (view != null)
            {
                BlockGraph.closeQuietly(view);
            }
        }
    }

    private PreparedBackup prepareBackup(final JsonNode a, final JobTransaction txn) throws IOException
    {
        final BlockNode device = graph.device(a.get("device").asText());
        final TrackedDisk disk = graph.disk(device);
        final BlockNode target = graph.device(a.get("target").asText());
        final SyncMode sync = SyncMode.fromQmpName(a.get("sync").asText());
        final long speed = a.path("speed").asLong(0);
        if (speed < 0)
        {
            throw EngineException.generic("Invalid parameter 'speed'");
        }
        if (a.path("compress").asBoolean(false))
        {
            throw EngineException.generic("Compression is not supported for this drive " + target.name);
        }
        if (a.path("discard-source").asBoolean(false))
        {
            throw EngineException.generic("discard-source is not supported by Tidemark");
        }
        final String jobId = a.has("job-id") ? a.get("job-id").asText() : device.name;
        final JobOptions jobOptions = new JobOptions(a.path("auto-finalize").asBoolean(true),
            a.path("auto-dismiss").asBoolean(true), speed);
        final String bitmap = a.has("bitmap") ? a.get("bitmap").asText() : null;
        final BitmapMode mode = a.has("bitmap-mode") ? BitmapMode.fromQmpName(a.get("bitmap-mode").asText()) : null;
        final PreparedBackup prepared = new PreparedBackup(disk, target, jobId);
        if (sync == SyncMode.NONE)
        {
            if (bitmap != null)
            {
                if (!disk.bitmaps().exists(bitmap))
                {
                    throw EngineException.generic("Bitmap '" + bitmap + "' could not be found");
                }
                throw EngineException.generic("sync mode 'none' does not produce meaningful bitmap outputs");
            }
            if (mode != null)
            {
                throw EngineException.generic("Cannot specify bitmap sync mode without a bitmap");
            }
            if (graph.sizeOf(target) != disk.size())
            {
                throw EngineException.generic("Source and target image have different sizes");
            }
            if (target.state.fleecedDisk() != null || target.state.ownDisk() != null)
            {
                throw EngineException.generic("Node '" + target.name + "' is busy: block device is in use by"
                    + " another operation");
            }
            prepared.view = FleecingView.create(disk, FleecingOptions.of(cbwDirectory(target, disk), disk.size()));
            prepared.actions.add(prepared.view.openAction());
            prepared.actions.add(new FleecingJob.StartAction(graph.jobs(), jobId, device.name, jobOptions, txn));
            return prepared;
        }
        final BackupOptions options = BackupOptions.of(device.name, sync).withJobId(jobId).withBitmap(bitmap, mode)
            .withErrorPolicies(OnError.fromQmpName(a.path("on-source-error").asText("report")),
                OnError.fromQmpName(a.path("on-target-error").asText("report")))
            .withJob(jobOptions);
        prepared.actions.add(new BackupStartAction(graph.jobs(), options, graph.targetStore(target), txn));
        return prepared;
    }

    /** Copy-before-write data goes beside the fleecing target's image (or the disk's) where the admin put it. */
    private static Path cbwDirectory(final BlockNode target, final TrackedDisk disk)
    {
        if (target.state.localFile() != null)
        {
            return target.state.localFile().toAbsolutePath().getParent();
        }
        if (disk.store() instanceof dev.tidemark.io.RawFileStore raw)
        {
            return raw.path().toAbsolutePath().getParent();
        }
        return Path.of(System.getProperty("java.io.tmpdir"));
    }

    private JsonNode runBackups(final List<PreparedBackup> backups,
        final Map<TrackedDisk, List<ControlAction>> actions)
    {
        try
        {
            TrackedDisk.transaction(actions);
        }
        catch (final RuntimeException ex)
        {
            backups.forEach(PreparedBackup::failed);
            throw ex;
        }
        backups.forEach(PreparedBackup::committed);
        return empty();
    }

    private void registerJobs(final QmpCommandRegistry r)
    {
        r.register("blockdev-backup", backup(), "Start a backup job from a node to a target node.",
            handler(args ->
            {
                final PreparedBackup b = prepareBackup(args, null);
                return runBackups(List.of(b), Map.of(b.disk, b.actions));
            }));
        r.register("transaction", transaction(),
            "Run bitmap actions and backup starts atomically at one point in the disk's write order.",
            handler(this::transactionHandler));
        r.register("query-jobs", QmpType.struct(), "List every job.",
            handler(args -> QmpJson.MAPPER.valueToTree(graph.jobs().queryJobs())));
        r.register("query-block-jobs", QmpType.struct(), "List every block job.",
            handler(args -> QmpJson.MAPPER.valueToTree(graph.jobs().queryBlockJobs())));
        final QmpStruct id = QmpType.struct(req("id", QmpType.str()));
        final QmpStruct device = QmpType.struct(req("device", QmpType.str()));
        r.register("job-pause", id, "Pause a job.", handler(args -> verb(() -> graph.jobs().pause(idOf(args)))));
        r.register("job-resume", id, "Resume a paused job.",
            handler(args -> verb(() -> graph.jobs().resume(idOf(args)))));
        r.register("job-cancel", id, "Cancel a job.", handler(args -> verb(() -> graph.jobs().cancel(idOf(args)))));
        r.register("job-complete", id, "Complete a ready job.",
            handler(args -> verb(() -> graph.jobs().complete(idOf(args)))));
        r.register("job-finalize", id, "Finalize a pending job (auto-finalize=false).",
            handler(args -> verb(() -> graph.jobs().finalizeJob(idOf(args)))));
        r.register("job-dismiss", id, "Dismiss a concluded job (auto-dismiss=false).",
            handler(args -> verb(() -> graph.jobs().dismiss(idOf(args)))));
        r.register("block-job-pause", device, "Pause a block job.",
            handler(args -> verb(() -> graph.jobs().blockJob(deviceOf(args)).pause())));
        r.register("block-job-resume", device, "Resume a block job.",
            handler(args -> verb(() -> graph.jobs().blockJob(deviceOf(args)).resume())));
        r.register("block-job-complete", device, "Complete a block job.",
            handler(args -> verb(() -> graph.jobs().blockJob(deviceOf(args)).complete())));
        r.register("block-job-cancel", QmpType.struct(req("device", QmpType.str()), opt("force", QmpType.bool())),
            "Cancel a block job.", handler(args -> verb(() -> graph.jobs().blockJob(deviceOf(args)).cancel())));
        r.register("block-job-finalize", id, "Finalize a block job.",
            handler(args -> verb(() -> graph.jobs().blockJob(idOf(args)).finalizeJob())));
        r.register("block-job-dismiss", id, "Dismiss a block job.",
            handler(args -> verb(() -> graph.jobs().blockJob(idOf(args)).dismiss())));
        r.register("block-job-set-speed", QmpType.struct(req("device", QmpType.str()), req("speed", QmpType.int64())),
            "Set a block job's speed limit in bytes per second (0: unlimited).",
            handler(args -> verb(() -> graph.jobs().setSpeed(deviceOf(args), args.get("speed").asLong()))));
    }

    private String idOf(final ObjectNode args)
    {
        final String id = args.get("id").asText();
        try
        {
            graph.jobs().job(id);
        }
        catch (final EngineException missing)
        {
            // QEMU's job-* commands (find_job_locked) say exactly this, as a GenericError.
            throw EngineException.generic("Job not found");
        }
        return id;
    }

    private static String deviceOf(final ObjectNode args)
    {
        return args.get("device").asText();
    }

    private static JsonNode verb(final Runnable action)
    {
        action.run();
        return empty();
    }

    private JsonNode transactionHandler(final ObjectNode args) throws IOException
    {
        final boolean grouped = "grouped".equals(args.path("properties").path("completion-mode").asText());
        final ArrayNode list = (ArrayNode)args.get("actions");
        if (grouped)
        {
            for (final JsonNode action : list)
            {
                final String type = action.get("type").asText();
                if (!"blockdev-backup".equals(type))
                {
                    throw EngineException.generic("Action '" + type
                        + "' does not support Transaction property completion-mode = grouped");
                }
            }
        }
        final JobTransaction txn = grouped ? new JobTransaction() : null;
        // Each disk's actions in the order given; the map's order is the order in which disks first appear.
        final Map<TrackedDisk, List<ControlAction>> actions = new LinkedHashMap<>();
        final List<PreparedBackup> backups = new ArrayList<>();
        final List<Object[]> added = new ArrayList<>();
        final List<Object[]> removed = new ArrayList<>();
        int leadingAborts = 0;
        final List<String> checkpointNodes = new ArrayList<>();
        TrackedDisk lastDisk = null;
        try
        {
            for (final JsonNode action : list)
            {
                final String type = action.get("type").asText();
                final JsonNode data = action.get("data");
                if ("abort".equals(type))
                {
                    // Fails at prepare wherever it stands: it goes with the disk of the action before it.
                    if (lastDisk == null)
                    {
                        leadingAborts++;
                    }
                    else
                    {
                        actions.get(lastDisk).add(BitmapActions.abort());
                    }
                    continue;
                }
                if ("blockdev-backup".equals(type))
                {
                    final PreparedBackup b = prepareBackup(data, txn);
                    backups.add(b);
                    lastDisk = b.disk;
                    actions.computeIfAbsent(b.disk, d -> new ArrayList<>()).addAll(b.actions);
                    continue;
                }
                final BlockNode node = "block-dirty-bitmap-add".equals(type) || type.startsWith(PREFIX)
                    ? graph.device(data.get("node").asText()) : graph.bitmapNode(data.get("node").asText());
                final TrackedDisk d = graph.disk(node);
                lastDisk = d;
                final List<ControlAction> mine = actions.computeIfAbsent(d, k -> new ArrayList<>());
                final String name = data.get("name") == null ? null : data.get("name").asText();
                switch (type)
                {
                    case "block-dirty-bitmap-add" ->
                    {
                        mine.add(bitmapAddAction(data));
                        added.add(new Object[] {d, name, node.name});
                    }
                    case "block-dirty-bitmap-remove" ->
                    {
                        mine.add(BitmapActions.remove(name));
                        removed.add(new Object[] {d, name});
                    }
                    case "block-dirty-bitmap-clear" -> mine.add(BitmapActions.clear(name));
                    case "block-dirty-bitmap-enable" -> mine.add(BitmapActions.enable(name));
                    case "block-dirty-bitmap-disable" -> mine.add(BitmapActions.disable(name));
                    case "block-dirty-bitmap-merge" -> mine.add(mergeAction(node, data));
                    case CheckpointActions.ADD ->
                        mine.add(CheckpointCommands.addAction(data, node, d, checkpointNodes));
                    case CheckpointActions.BITMAP_FROM ->
                    {
                        mine.add(CheckpointCommands.bitmapFromAction(data));
                        added.add(new Object[] {d, name, node.name});
                    }
                    default -> throw EngineException.generic("Unknown action type '" + type + "'");
                }
            }
        }
        catch (final RuntimeException | IOException ex)
        {
            backups.forEach(PreparedBackup::failed);
            throw ex;
        }
        if (actions.isEmpty())
        {
            if (leadingAborts == 0)
            {
                return empty();
            }
            throw EngineException.generic("Transaction aborted using Abort action");
        }
        for (int i = 0; i < leadingAborts; i++)
        {
            actions.values().iterator().next().add(0, BitmapActions.abort());
        }
        runBackups(backups, actions);
        for (final Object[] a : added)
        {
            graph.noteBitmapNode((TrackedDisk)a[0], (String)a[1], (String)a[2]);
        }
        for (final Object[] r : removed)
        {
            graph.forgetBitmapNode((TrackedDisk)r[0], (String)r[1]);
        }
        return empty();
    }

    // ---- nodes --------------------------------------------------------------------------------------------------

    private void registerNodes(final QmpCommandRegistry r)
    {
        r.register("blockdev-add", BlockDrivers.blockdevAdd(graph.drivers()),
            "Add a block node: file (a raw image file), raw (over a file node), qcow2 (a backup target or image),"
                + " nbd (a remote export).",
            handler(args ->
            {
                graph.add(args, true);
                return empty();
            }));
        r.register("blockdev-del", QmpType.struct(req("node-name", QmpType.str())), "Delete a block node.",
            handler(args ->
            {
                graph.delete(args.get("node-name").asText());
                return empty();
            }));
        r.register("query-named-block-nodes", QmpType.struct(opt("flat", QmpType.bool())),
            "List every named block node with its dirty bitmaps.",
            handler(args -> graph.queryNamedBlockNodes(args.path("flat").asBoolean(false))));
        r.register("query-block", QmpType.struct(), "List the root block nodes with their dirty bitmaps.",
            handler(args -> graph.queryBlock()));
    }

    // ---- exports -------------------------------------------------------------------------------------------------

    private void registerExports(final QmpCommandRegistry r)
    {
        r.register("nbd-server-start", QmpType.struct(req("addr", legacySocketAddress()),
            opt("tls-creds", QmpType.str()), opt("tls-authz", QmpType.str()),
            QmpField.optional("max-connections", QmpType.uint32(), IntNode.valueOf(100)),
            opt("handshake-max-seconds", QmpType.uint32()), opt(ExportManager.INSECURE_ARGUMENT, QmpType.bool())),
            "Start the NBD server.",
            handler(args ->
            {
                final TlsCredentials credentials = args.hasNonNull("tls-creds")
                    ? graph.objects().tlsCredentials(args.get("tls-creds").asText(), TlsCredentials.Endpoint.SERVER)
                    : null;
                if (args.hasNonNull("tls-authz") && credentials == null)
                {
                    throw QmpError.generic("tls-authz is not supported without tls-creds");
                }
                final TlsAuthorizer authz = args.hasNonNull("tls-authz")
                    ? graph.objects().authorizer(args.get("tls-authz").asText()) : null;
                final boolean insecure = args.path(ExportManager.INSECURE_ARGUMENT).asBoolean(false);
                final java.time.Duration handshake = args.hasNonNull("handshake-max-seconds")
                    ? java.time.Duration.ofSeconds(Math.max(1, args.get("handshake-max-seconds").asLong()))
                    : dev.tidemark.io.nbd.NbdServer.DEFAULT_HANDSHAKE_TIMEOUT;
                final JsonNode addr = args.get("addr");
                final ExportAddress where = address(addr.get("type").asText(), addr.get("data"));
                graph.exports().start(where, args.get("max-connections").asInt(), handshake,
                    new NbdSecurity(credentials, authz, insecure, EngineCommands::logRefusal));
                if (insecure && credentials == null)
                {
                    LOG.log(System.Logger.Level.WARNING, () ->
                        "event=nbd-insecure address=" + where + " detail=\"NBD is served in clear text without"
                            + " client authentication (--nbd-insecure): anyone who can reach it can read and write"
                            + " the exports\"");
                }
                return empty();
            }));
        r.register("nbd-server-stop", QmpType.struct(), "Stop the NBD server and remove every export.",
            handler(args ->
            {
                graph.exports().stop();
                return empty();
            }));
        final Map<String, List<QmpField>> exportVariants = new LinkedHashMap<>();
        exportVariants.put("nbd", List.of(opt("name", QmpType.str()), opt("description", QmpType.str()),
            opt("bitmaps", QmpType.array(bitmapOrStr())), opt("allocation-depth", QmpType.bool()),
            opt("x-tidemark-checkpoints", QmpType.bool())));
        exportVariants.put("vhost-user-blk", List.of(req("addr", socketAddress()),
            opt("logical-block-size", QmpType.uint64()), opt("num-queues", QmpType.uint32())));
        r.register("block-export-add", QmpType.union(List.of(
            req("type", QmpType.enumOf("nbd", "vhost-user-blk", "fuse", "vduse-blk")), req("id", QmpType.str()),
            opt("fixed-iothread", QmpType.bool()), opt("iothread", QmpType.str()), req("node-name", QmpType.str()),
            opt("writable", QmpType.bool()), opt("writethrough", QmpType.bool()),
            opt("allow-inactive", QmpType.bool())), "type", exportVariants),
            "Export a node over NBD, or to a VM as a vhost-user-blk device.",
            handler(args ->
            {
                final String type = args.get("type").asText();
                if ("vhost-user-blk".equals(type))
                {
                    addVhostUserBlk(args);
                    return empty();
                }
                if (!"nbd".equals(type))
                {
                    throw QmpError.generic("Export type '" + type + "' is not supported by Tidemark");
                }
                final List<BitmapRef> bitmaps = new ArrayList<>();
                for (final JsonNode b : args.path("bitmaps"))
                {
                    bitmaps.add(b.isTextual() ? BitmapRef.of(b.asText())
                        : new BitmapRef(graph.disk(graph.bitmapNode(b.get("node").asText())), b.get("name").asText()));
                }
                addExport(args.get("id").asText(), args.get("node-name").asText(), text(args, "name"),
                    text(args, "description"), args.path("writable").asBoolean(false), bitmaps,
                    args.path("x-tidemark-checkpoints").asBoolean(false));
                return empty();
            }));
        r.register("nbd-server-add", QmpType.struct(req("device", QmpType.str()), opt("name", QmpType.str()),
            opt("description", QmpType.str()), opt("writable", QmpType.bool()), opt("bitmap", QmpType.str())),
            "Export a node over NBD (deprecated form of block-export-add).",
            handler(args ->
            {
                final String device = args.get("device").asText();
                final String name = text(args, "name") != null ? text(args, "name") : device;
                final List<BitmapRef> bitmaps = args.has("bitmap") ? List.of(BitmapRef.of(text(args, "bitmap")))
                    : List.of();
                addExport(name, device, name, text(args, "description"), args.path("writable").asBoolean(false),
                    bitmaps, false);
                return empty();
            }));
        final QmpStruct remove = QmpType.struct(req("id", QmpType.str()), opt("mode", QmpType.enumOf("safe", "hard")));
        r.register("block-export-del", remove, "Remove an export; BLOCK_EXPORT_DELETED follows.",
            handler(args ->
            {
                if (!graph.exports().isRunning() && graph.exports().vhostServer(args.get("id").asText()).isEmpty())
                {
                    throw QmpError.generic("Export '" + args.get("id").asText() + "' is not found");
                }
                graph.exports().remove(args.get("id").asText(), RemoveMode.fromQmpName(
                    args.path("mode").asText("safe")));
                return empty();
            }));
        r.register("nbd-server-remove", QmpType.struct(req("name", QmpType.str()),
            opt("mode", QmpType.enumOf("safe", "hard"))), "Remove an NBD export (deprecated form).",
            handler(args ->
            {
                graph.exports().remove(args.get("name").asText(), RemoveMode.fromQmpName(
                    args.path("mode").asText("safe")));
                return empty();
            }));
        r.register("query-block-exports", QmpType.struct(), "List the exports.",
            handler(args ->
            {
                final ArrayNode out = QmpJson.MAPPER.createArrayNode();
                for (final ExportInfo info : graph.exports().query())
                {
                    final ObjectNode o = out.addObject();
                    o.put("type", info.type());
                    o.put("node-name", info.nodeName());
                    o.put("shutting-down", info.shuttingDown());
                    o.put("id", info.id());
                }
                return out;
            }));
    }

    private void addVhostUserBlk(final JsonNode args)
    {
        final JsonNode addr = args.get("addr");
        if (!"unix".equals(addr.get("type").asText()))
        {
            throw EngineException.generic("vhost-user-blk exports need a unix socket address (addr.type=unix), not "
                + addr.get("type").asText());
        }
        final long blockSize = args.path("logical-block-size").asLong(512);
        final long queues = args.path("num-queues").asLong(1);
        final boolean writable = args.path("writable").asBoolean(false);
        final ExportNode exportNode = exportNode(args.get("node-name").asText(), writable);
        graph.exports().addVhostUserBlk(ExportRequest.of(args.get("id").asText(), exportNode).withWritable(writable),
            Path.of(addr.get("path").asText()), (int)Math.min(Integer.MAX_VALUE, queues),
            (int)Math.min(Integer.MAX_VALUE, blockSize));
    }

    private void addExport(final String id, final String nodeName, final String name, final String description,
        final boolean writable, final List<BitmapRef> bitmaps, final boolean checkpoints)
    {
        if (!graph.exports().isRunning())
        {
            throw EngineException.generic("NBD server not running");
        }
        graph.exports().add(ExportRequest.of(id, exportNode(nodeName, writable)).withWritable(writable).withName(name)
            .withDescription(description).withBitmapRefs(bitmaps).withCheckpoints(checkpoints));
    }

    private ExportNode exportNode(final String nodeName, final boolean writable)
    {
        final BlockNode node = graph.find(nodeName);
        if (node == null)
        {
            throw EngineException.generic("Cannot find device='' nor node-name='" + nodeName + "'");
        }
        return node.state.export(node, writable);
    }

    private static ExportAddress address(final String type, final JsonNode data)
    {
        switch (type)
        {
            case "unix":
                return ExportAddress.unix(Path.of(data.get("path").asText()));
            case "inet":
                final int port;
                try
                {
                    port = Integer.parseInt(data.get("port").asText());
                }
                catch (final NumberFormatException ex)
                {
                    throw EngineException.generic("Port '" + data.get("port").asText() + "' is not a number");
                }
                return ExportAddress.tcp(data.get("host").asText(), port);
            default:
                throw EngineException.generic("Socket address type '" + type + "' is not supported by Tidemark");
        }
    }

    // ---- downstream -----------------------------------------------------------------------------------------------

    private void registerDownstream(final QmpCommandRegistry r, final boolean testCommands)
    {
        r.register(PREFIX + "durable", QmpType.struct(req("node", QmpType.str()), opt("enable", QmpType.bool())),
            "Get, or set with 'enable', a disk's durable mode (bits forced to the bitmap file before each write).",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                if (args.has("enable"))
                {
                    disk.durable(args.get("enable").asBoolean());
                }
                final ObjectNode out = QmpJson.object();
                out.put("node", node.name);
                out.put("durable", disk.isDurable());
                return out;
            }));
        r.register(PREFIX + "ring-statistics", QmpType.struct(req("node", QmpType.str())),
            "A disk's write-ring counters, the time each kind of control request held the ring thread, and the "
                + "longest holds since the previous call of this command for the node (the call starts a new window).",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                final RingStatistics.HoldWindow window = disk.takeRingHoldWindow();
                final RingStatistics statistics = disk.ringStatistics();
                final ObjectNode out = QmpJson.object();
                out.put("node", node.name);
                out.put("epoch", statistics.epoch());
                out.put("batches", statistics.batches());
                out.put("group-commits", statistics.groupCommits());
                out.put("forced-pages", statistics.forcedPages());
                final ArrayNode control = out.putArray("control");
                statistics.controlTimes().forEach((kind, time) ->
                {
                    final ObjectNode entry = control.addObject();
                    entry.put("kind", kind);
                    entry.put("count", time.count());
                    entry.put("total-ns", time.totalNanos());
                    entry.put("max-ns", time.maxNanos());
                    entry.put("total-cpu-ns", time.totalCpuNanos());
                    entry.put("max-cpu-ns", time.maxCpuNanos());
                });
                final ObjectNode since = out.putObject("window");
                since.put("longest-batch-ns", window.longestBatchNanos());
                since.put("longest-batch-requests", window.longestBatchRequests());
                since.put("longest-control-ns", window.longestControlNanos());
                since.put("longest-control-cpu-ns", window.longestControlCpuNanos());
                since.put("longest-control-kind", window.longestControlKind());
                return out;
            }));
        r.register(PREFIX + "nbd-statistics", QmpType.struct(),
            "The NBD server's longest modifying request (write, write zeroes, trim, flush) from its arrival to its "
                + "reply on the socket since the previous call of this command (the call starts a new window).",
            handler(args ->
            {
                final ObjectNode out = QmpJson.object();
                out.put("running", graph.exports().isRunning());
                out.put("connections", graph.exports().connectionCount());
                out.putObject("window").put("longest-modifying-request-ns",
                    graph.exports().takeLongestNbdModifyingRequestNanos());
                return out;
            }));
        r.register(PREFIX + "verify-bitmap", QmpType.struct(nodeName()),
            "Recount a bitmap's dirty chunks from its bits and compare with its reported count.",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                final String name = args.get("name").asText();
                final BitmapInfo info = disk.bitmaps().query(name);
                final long[] recount = {0, 0};
                disk.bitmaps().view(name).forEachDirtyExtent(0, disk.size(), (offset, length) ->
                {
                    recount[0] += roundUpToChunks(length, granularityOf(disk, name));
                    recount[1]++;
                    return true;
                });
                final long granularity = info.granularity();
                final long expected = info.count();
                final long chunkBytes = recount[0];
                final ObjectNode out = BlockGraph.bitmapInfo(info);
                out.put("extents", recount[1]);
                out.put("recounted", chunkBytes);
                out.put("sha256", disk.bitmaps().sha256(name));
                out.put("ok", !info.inconsistent() && chunkBytes == expected && chunkBytes % granularity == 0);
                return out;
            }));
        r.register(PREFIX + "journal", QmpType.struct(req("node", QmpType.str())),
            "Inspect a disk's metadata journal: bitmaps, unfinished jobs, repairs made at open, clean close.",
            handler(args ->
            {
                final BlockNode node = graph.bitmapNode(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                final Journal.Replay replay = Journal.inspect(disk.journal().file());
                final ObjectNode out = QmpJson.object();
                out.put("file", disk.journal().file().toString());
                out.put("length", disk.journal().length());
                out.put("valid-length", replay.validLength());
                out.put("opens", replay.opens());
                out.put("clean-close", replay.cleanClose());
                final ArrayNode bitmaps = out.putArray("bitmaps");
                for (final Journal.BitmapState state : replay.bitmaps().values())
                {
                    final ObjectNode b = bitmaps.addObject();
                    b.put("name", state.name());
                    b.put("file-id", state.fileId());
                    b.put("granularity", state.granularity());
                    b.put("flags", state.flags());
                    b.put("successor-file-id", state.successorFileId());
                }
                final ObjectNode jobs = out.putObject("jobs");
                replay.jobs().forEach(jobs::put);
                final ArrayNode messages = out.putArray("messages");
                replay.messages().forEach(messages::add);
                final ArrayNode repairs = out.putArray("repairs-at-open");
                disk.openMessages().forEach(repairs::add);
                final ArrayNode torn = out.putArray("inconsistent-by-tail");
                replay.inconsistentByTail().forEach(torn::add);
                return out;
            }));
        if (testCommands)
        {
            r.register(PREFIX + "x-inject-error", QmpType.struct(req("node", QmpType.str()),
                QmpField.optional("writes", QmpType.bool(), BooleanNode.TRUE)),
                "Tests only: make writes to a target node fail with EIO from now on (or stop failing).",
                handler(args ->
                {
                    final BlockNode node = graph.device(args.get("node").asText());
                    final dev.tidemark.io.BlockStore store = graph.targetStore(node);
                    if (!(store instanceof FaultyStore faulty))
                    {
                        throw QmpError.generic("Node '" + node.name + "' was not added with fault injection");
                    }
                    faulty.failWrites(args.get("writes").asBoolean());
                    return empty();
                }));
        }
    }

    private static long granularityOf(final TrackedDisk disk, final String name)
    {
        return disk.bitmaps().query(name).granularity();
    }

    private static long roundUpToChunks(final long bytes, final long granularity)
    {
        return (bytes + granularity - 1) / granularity * granularity;
    }
}
