package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.engine.ControlAction;
import dev.tidemark.engine.EngineException;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.checkpoint.CheckpointActions;
import dev.tidemark.engine.checkpoint.CheckpointInfo;
import dev.tidemark.qmp.QmpCommandRegistry;
import dev.tidemark.qmp.QmpError;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpHandler;
import dev.tidemark.qmp.QmpJson;
import dev.tidemark.qmp.QmpStruct;
import dev.tidemark.qmp.QmpType;
import java.util.ArrayList;
import java.util.List;

/**
 * The checkpoint commands (downstream extensions, docs/checkpoints.md); handlers run on the QMP dispatcher thread,
 * as every command does, and reach the disks only through their transactions and thread-safe queries.
 *
 * <p>Kept apart from {@code EngineCommands}, which registers only the {@code transaction} action of
 * {@value CheckpointActions#ADD} through {@link #addSchema()} and {@link #addAction}.
 */
final class CheckpointCommands
{
    private final BlockGraph graph;

    private CheckpointCommands(final BlockGraph graph)
    {
        this.graph = graph;
    }

    /**
     * Registers the checkpoint commands.
     *
     * @param registry the server's registry.
     * @param graph the nodes the commands act on.
     */
    static void register(final QmpCommandRegistry registry, final BlockGraph graph)
    {
        new CheckpointCommands(graph).registerAll(registry);
    }

    /** @return the arguments of checkpoint-add (and the data of its transaction action). */
    static QmpStruct addSchema()
    {
        return QmpType.struct(QmpField.required("node", QmpType.str()), QmpField.required("name", QmpType.str()),
            QmpField.optional("granularity", QmpType.uint32()));
    }

    /** @return the arguments of bitmap-from-checkpoint (and the data of its transaction action). */
    static QmpStruct bitmapFromSchema()
    {
        return QmpType.struct(QmpField.required("node", QmpType.str()),
            QmpField.required("checkpoint", QmpType.str()), QmpField.required("name", QmpType.str()),
            QmpField.optional("persistent", QmpType.bool()), QmpField.optional("granularity", QmpType.uint32()));
    }

    /**
     * @param data the arguments (command) or data (transaction action).
     * @return the action of {@value CheckpointActions#BITMAP_FROM}.
     */
    static ControlAction bitmapFromAction(final JsonNode data)
    {
        return CheckpointActions.bitmapFrom(data.get("checkpoint").asText(), data.get("name").asText(),
            data.path("granularity").asLong(0), data.path("persistent").asBoolean(false));
    }

    /**
     * The action of a {@value CheckpointActions#ADD} in a {@code transaction}.
     *
     * @param data the action's data.
     * @param node the node it names.
     * @param disk that node's disk.
     * @param members the node names of every checkpoint-add of the transaction; filled while the transaction is
     *                parsed, read when the action prepares.
     * @return the action.
     */
    static ControlAction addAction(final JsonNode data, final BlockNode node, final TrackedDisk disk,
        final List<String> members)
    {
        if (data.has("granularity"))
        {
            disk.checkpoints().configure(data.get("granularity").asLong(), disk.checkpoints().epochPeriod());
        }
        members.add(node.name);
        return CheckpointActions.add(data.get("name").asText(), members);
    }

    private void registerAll(final QmpCommandRegistry r)
    {
        r.register(CheckpointActions.ADD, addSchema(),
            "Add a checkpoint to a node's disk: 'changed since NAME' is answered from its epoch map from now on;"
                + " granularity (default 65536) applies only to the disk's first checkpoint.",
            handler(args ->
            {
                final BlockNode node = graph.device(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                disk.transaction(List.of(addAction(args, node, disk, new ArrayList<>())));
                return QmpJson.object();
            }));
        r.register(CheckpointActions.REMOVE, QmpType.struct(QmpField.required("node", QmpType.str()),
                QmpField.required("name", QmpType.str())),
            "Remove a checkpoint; the write path is not touched.",
            handler(args ->
            {
                final TrackedDisk disk = graph.disk(graph.bitmapNode(args.get("node").asText()));
                disk.transaction(List.of(CheckpointActions.remove(args.get("name").asText())));
                return QmpJson.object();
            }));
        r.register("__dev.tidemark_query-checkpoints", QmpType.struct(QmpField.required("node", QmpType.str())),
            "List a node's checkpoints: name, epoch, creation time, bytes changed since each.",
            handler(args ->
            {
                final TrackedDisk disk = graph.disk(graph.bitmapNode(args.get("node").asText()));
                final ArrayNode out = QmpJson.MAPPER.createArrayNode();
                for (final CheckpointInfo info : disk.checkpoints().list())
                {
                    final ObjectNode o = out.addObject();
                    o.put("name", info.name());
                    o.put("epoch", info.epoch());
                    o.put("created", info.createdMillis() / 1000);
                    o.put("created-ms", info.createdMillis());
                    o.put("changed-bytes", info.changedBytes());
                    o.put("granularity", disk.checkpoints().granularity());
                    o.put("exact", info.exact());
                    final ArrayNode disks = o.putArray("disks");
                    info.disks().forEach(disks::add);
                }
                return out;
            }));
        r.register(CheckpointActions.BITMAP_FROM, bitmapFromSchema(),
            "Create a disabled bitmap holding the chunks changed since a checkpoint.",
            handler(args ->
            {
                final BlockNode node = graph.device(args.get("node").asText());
                final TrackedDisk disk = graph.disk(node);
                final String name = args.get("name").asText();
                disk.transaction(List.of(bitmapFromAction(args)));
                graph.noteBitmapNode(disk, name, node.name);
                return QmpJson.object();
            }));
    }

    /** A handler body that may throw engine failures. */
    @FunctionalInterface
    private interface Body
    {
        JsonNode run(ObjectNode args) throws QmpError;
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
                throw EngineCommands.toQmp(ex);
            }
            catch (final IllegalArgumentException ex)
            {
                throw QmpError.generic(ex.getMessage());
            }
        };
    }
}
