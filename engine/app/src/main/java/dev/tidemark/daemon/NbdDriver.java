package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.engine.EngineException;
import dev.tidemark.io.BlockStore;
import dev.tidemark.io.nbd.NbdClient;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpType;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * The {@code nbd} protocol driver, a remote export (a push-backup target); stateless and safe from any thread, its
 * nodes are confined to the QMP dispatcher thread. The connection is made when the node is added.
 */
final class NbdDriver implements BlockDriver
{
    @Override
    public String name()
    {
        return "nbd";
    }

    @Override
    public boolean protocol()
    {
        return true;
    }

    @Override
    public List<QmpField> options(final QmpType blockdevRef)
    {
        return List.of(QmpField.required("server", EngineCommands.socketAddress()),
            QmpField.optional("export", QmpType.str()), QmpField.optional("tls-creds", QmpType.str()),
            QmpField.optional("tls-hostname", QmpType.str()), QmpField.optional("x-dirty-bitmap", QmpType.str()),
            QmpField.optional("reconnect-delay", QmpType.uint32()),
            QmpField.optional("open-timeout", QmpType.uint32()));
    }

    @Override
    public State open(final BlockNode node, final ObjectNode args, final Context context)
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
            builder.tls(context.tlsCredentials(args.get("tls-creds").asText(), TlsCredentials.Endpoint.CLIENT));
            if (args.hasNonNull("tls-hostname"))
            {
                builder.tlsHostname(args.get("tls-hostname").asText());
            }
        }
        final BlockStore store;
        try
        {
            store = context.wrap(builder.connect());
        }
        catch (final IOException ex)
        {
            throw EngineException.generic("Failed to connect to '" + remote + "': " + BlockGraph.describe(ex));
        }
        if (!node.readOnly && store.isReadOnly())
        {
            BlockGraph.closeQuietly(store);
            throw new EngineException(EngineException.Reason.READ_ONLY, "Block node is read-only");
        }
        return new NbdState(remote, store);
    }

    /** A connected client. */
    private static final class NbdState extends StoreState
    {
        private final String remote;

        NbdState(final String remote, final BlockStore store)
        {
            super(store);
            this.remote = remote;
        }

        @Override
        public String filename()
        {
            return remote;
        }
    }
}
