package dev.tidemark.daemon;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.tidemark.engine.EngineException;
import dev.tidemark.io.tls.TlsAuthorizer;
import dev.tidemark.io.tls.TlsCredentials;
import dev.tidemark.io.tls.TlsException;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * QEMU's user-creatable objects that Tidemark knows ({@code tls-creds-x509}, {@code tls-creds-psk},
 * {@code authz-simple}, {@code authz-list}), as {@code object-add}/{@code --object} make them; confined to the
 * QMP dispatcher thread like the {@link BlockGraph} that owns it. The objects themselves are immutable, so a
 * server or client that took one keeps working after {@code object-del}.
 */
final class ObjectRegistry
{
    /** The qom-types {@code object-add} accepts. */
    static final List<String> TYPES = List.of("tls-creds-x509", "tls-creds-psk", "authz-simple", "authz-list");

    private final Map<String, Object> objects = new LinkedHashMap<>();

    /** Makes and registers an object from {@code object-add}'s arguments (already checked against the schema). */
    void add(final ObjectNode args)
    {
        final String id = args.get("id").asText();
        if (objects.containsKey(id))
        {
            throw EngineException.generic("attempt to add duplicate property '" + id + "' to object (type 'container')");
        }
        final String type = args.get("qom-type").asText();
        final Object made;
        switch (type)
        {
            case "tls-creds-x509":
            case "tls-creds-psk":
                made = credentials(type, args);
                break;
            case "authz-simple":
                final String identity = args.get("identity").asText();
                made = (TlsAuthorizer)identity::equals;
                break;
            case "authz-list":
                made = authzList(args);
                break;
            default:
                throw EngineException.generic("Object type '" + type + "' is not supported by Tidemark");
        }
        objects.put(id, made);
    }

    /** Removes an object ({@code object-del}). */
    void delete(final String id)
    {
        if (objects.remove(id) == null)
        {
            throw EngineException.generic("object '" + id + "' not found");
        }
    }

    /**
     * @param id       a {@code tls-creds} argument.
     * @param endpoint the side the caller is on.
     * @return the credentials.
     */
    TlsCredentials tlsCredentials(final String id, final TlsCredentials.Endpoint endpoint)
    {
        final Object found = objects.get(id);
        if (!(found instanceof TlsCredentials))
        {
            throw EngineException.generic("No TLS credentials with id '" + id + "'");
        }
        final TlsCredentials credentials = (TlsCredentials)found;
        if (credentials.endpoint() != endpoint)
        {
            throw EngineException.generic("Expecting TLS credentials with a "
                + (endpoint == TlsCredentials.Endpoint.SERVER ? "server" : "client") + " endpoint");
        }
        return credentials;
    }

    /** @return the authorizer named by a {@code tls-authz} argument. */
    TlsAuthorizer authorizer(final String id)
    {
        final Object found = objects.get(id);
        if (!(found instanceof TlsAuthorizer))
        {
            throw EngineException.generic("No authorization object with id '" + id + "'");
        }
        return (TlsAuthorizer)found;
    }

    private static TlsCredentials credentials(final String type, final ObjectNode args)
    {
        if (!args.hasNonNull("dir"))
        {
            throw EngineException.generic("Parameter 'dir' is missing");
        }
        final Path dir = Path.of(args.get("dir").asText());
        final TlsCredentials.Endpoint endpoint = "client".equals(args.path("endpoint").asText("server"))
            ? TlsCredentials.Endpoint.CLIENT : TlsCredentials.Endpoint.SERVER;
        try
        {
            if ("tls-creds-x509".equals(type))
            {
                // QEMU's default: verify the peer.
                return TlsCredentials.x509(dir, endpoint, args.path("verify-peer").asBoolean(true));
            }
            final String username = args.hasNonNull("username") ? args.get("username").asText() : null;
            return TlsCredentials.psk(dir, endpoint, username);
        }
        catch (final TlsException ex)
        {
            throw EngineException.generic(ex.getMessage());
        }
    }

    /** QEMU's authz-list: the first rule whose match fits decides; no rule fits, the list's policy decides. */
    private static TlsAuthorizer authzList(final ObjectNode args)
    {
        final boolean fallback = "allow".equals(args.path("policy").asText("deny"));
        final List<Pattern> patterns = new ArrayList<>();
        final List<Boolean> allows = new ArrayList<>();
        for (final JsonNode rule : args.path("rules"))
        {
            final String match = rule.get("match").asText();
            patterns.add("glob".equals(rule.path("format").asText("exact")) ? glob(match)
                : Pattern.compile(Pattern.quote(match)));
            allows.add("allow".equals(rule.get("policy").asText()));
        }
        return identity ->
        {
            for (int i = 0; i < patterns.size(); i++)
            {
                if (patterns.get(i).matcher(identity).matches())
                {
                    return allows.get(i);
                }
            }
            return fallback;
        };
    }

    /** fnmatch-style: {@code *} any run, {@code ?} one character, everything else literal. */
    private static Pattern glob(final String glob)
    {
        final StringBuilder regex = new StringBuilder();
        for (final char c : glob.toCharArray())
        {
            if (c == '*')
            {
                regex.append(".*");
            }
            else if (c == '?')
            {
                regex.append('.');
            }
            else
            {
                regex.append(Pattern.quote(String.valueOf(c)));
            }
        }
        return Pattern.compile(regex.toString(), Pattern.DOTALL);
    }
}
