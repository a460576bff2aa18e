package dev.tidemark.qmp;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The commands every server has, which need no engine; stateless (handlers run on the dispatcher).
 */
final class BuiltinCommands
{
    static final String CAPABILITIES = "qmp_capabilities";
    /** Test-only event source, registered when the builder asks for test commands. */
    static final String RAISE_EVENT = "__dev.tidemark_x-raise-event";

    private BuiltinCommands()
    {
    }

    static void register(final QmpCommandRegistry registry, final QmpServer server, final boolean testCommands)
    {
        registry.register(CAPABILITIES,
            QmpType.struct(QmpField.optional("enable", QmpType.array(QmpType.enumOf("oob")))),
            "Leave capabilities negotiation mode; 'enable' lists capabilities to turn on (none are offered).",
            args ->
            {
                server.negotiateCurrent();
                final JsonNode enable = args.get("enable");
                if (enable != null && !enable.isEmpty())
                {
                    throw QmpError.generic("Capability " + enable.get(0).textValue() + " not available");
                }
                return QmpJson.object();
            });
        registry.register("query-version", QmpType.struct(),
            "Report the QEMU version Tidemark is compatible with, and its own package string.",
            args -> server.versionInfo());
        registry.register("query-commands", QmpType.struct(),
            "List the commands this server accepts.",
            args ->
            {
                final ArrayNode list = QmpJson.MAPPER.createArrayNode();
                for (final QmpCommand command : registry.commands())
                {
                    list.addObject().put("name", command.name());
                }
                return list;
            });
        registry.register("quit", QmpType.struct(),
            "Reply, emit SHUTDOWN, close every disk and bitmap cleanly and stop the server.",
            args ->
            {
                server.quitAfterReply();
                return QmpJson.object();
            });
        if (testCommands)
        {
            registry.register(RAISE_EVENT,
                QmpType.struct(
                    QmpField.required("event", QmpType.str()),
                    QmpField.optional("data", QmpType.any()),
                    QmpField.optional("count", QmpType.uint32(), IntNode.valueOf(1))),
                "Tests only: publish 'count' events named 'event' (data gets a 'seq' member) before returning.",
                args ->
                {
                    final JsonNode data = args.get("data");
                    if (data != null && !data.isObject())
                    {
                        throw QmpError.generic("Invalid parameter type for 'data', expected: object");
                    }
                    final int count = args.get("count").intValue();
                    for (int i = 0; i < count; i++)
                    {
                        final ObjectNode copy = data == null ? QmpJson.object() : ((ObjectNode) data).deepCopy();
                        copy.put("seq", i);
                        server.publishEvent(args.get("event").textValue(), copy);
                    }
                    final ObjectNode result = QmpJson.object();
                    result.put("raised", count);
                    return result;
                });
        }
    }
}
