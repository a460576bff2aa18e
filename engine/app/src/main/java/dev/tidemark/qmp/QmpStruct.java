package dev.tidemark.qmp;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * An object type with declared members, optionally a flat union; immutable and safe to share between threads.
 *
 * <p>Validation order is QEMU's: declared members in order (a missing required member is reported
 * before any unexpected one), then the variant's members when this is a union, then members that
 * were not declared.
 */
public final class QmpStruct extends QmpType
{
    private final List<QmpField> fields;
    private final String discriminator;
    private final Map<String, List<QmpField>> variants;

    QmpStruct(final List<QmpField> fields, final String discriminator, final Map<String, List<QmpField>> variants)
    {
        this.fields = List.copyOf(fields);
        this.discriminator = discriminator;
        this.variants = copyVariants(variants);
        final Set<String> seen = new HashSet<>();
        for (final QmpField field : this.fields)
        {
            if (!seen.add(field.name()))
            {
                throw new IllegalArgumentException("duplicate member '" + field.name() + "'");
            }
        }
        if (discriminator != null)
        {
            final QmpField tag = this.fields.stream().filter(f -> f.name().equals(discriminator)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("discriminator '" + discriminator + "' is not a member"));
            if (!tag.isRequired() || tag.type().kind() != Kind.STRING)
            {
                throw new IllegalArgumentException("discriminator '" + discriminator + "' must be a required enum");
            }
            for (final List<QmpField> variant : this.variants.values())
            {
                for (final QmpField field : variant)
                {
                    if (seen.contains(field.name()))
                    {
                        throw new IllegalArgumentException("variant member '" + field.name() + "' clashes with a common member");
                    }
                }
            }
        }
    }

    /** @return the common members in order. */
    public List<QmpField> fields()
    {
        return fields;
    }

    /** @return the discriminator member name, or null when this is not a union. */
    public String discriminator()
    {
        return discriminator;
    }

    /** @return variant members per discriminator value (empty when not a union). */
    public Map<String, List<QmpField>> variants()
    {
        return variants;
    }

    /**
     * Validates a command's whole argument object.
     *
     * @param arguments the {@code arguments} member (an object).
     * @return a new object with members in declaration order and defaults filled in.
     * @throws QmpError the first problem, in QEMU's words.
     */
    public ObjectNode validate(final ObjectNode arguments) throws QmpError
    {
        return (ObjectNode) check(arguments, QmpPath.ROOT);
    }

    @Override
    JsonNode check(final JsonNode value, final QmpPath path) throws QmpError
    {
        if (!value.isObject())
        {
            throw invalidType(path, "object");
        }
        final ObjectNode out = newObject();
        final Set<String> known = new HashSet<>();
        checkMembers(fields, value, path, out, known);
        if (discriminator != null)
        {
            final List<QmpField> variant = variants.get(out.get(discriminator).textValue());
            if (variant != null)
            {
                checkMembers(variant, value, path, out, known);
            }
        }
        final Iterator<String> names = value.fieldNames();
        while (names.hasNext())
        {
            final String name = names.next();
            if (!known.contains(name))
            {
                throw QmpError.generic("Parameter '" + path.member(name).full() + "' is unexpected");
            }
        }
        return out;
    }

    private static void checkMembers(final List<QmpField> members, final JsonNode value, final QmpPath path,
        final ObjectNode out, final Set<String> known) throws QmpError
    {
        for (final QmpField field : members)
        {
            known.add(field.name());
            final JsonNode member = value.get(field.name());
            final QmpPath memberPath = path.member(field.name());
            if (member == null)
            {
                if (field.isRequired())
                {
                    throw QmpError.generic("Parameter '" + memberPath.full() + "' is missing");
                }
                if (field.defaultValueShared() != null)
                {
                    out.set(field.name(), field.defaultValueShared().deepCopy());
                }
                continue;
            }
            out.set(field.name(), field.type().check(member, memberPath));
        }
    }

    @Override
    Kind kind()
    {
        return Kind.OBJECT;
    }

    @Override
    public String describe()
    {
        final List<String> parts = new ArrayList<>();
        for (final QmpField field : fields)
        {
            parts.add(field.toString());
        }
        String text = "{" + String.join(", ", parts) + "}";
        if (discriminator != null)
        {
            final List<String> cases = new ArrayList<>();
            for (final Map.Entry<String, List<QmpField>> entry : variants.entrySet())
            {
                final List<String> members = new ArrayList<>();
                entry.getValue().forEach(f -> members.add(f.toString()));
                cases.add(discriminator + "=" + entry.getKey() + ": {" + String.join(", ", members) + "}");
            }
            text += " + " + String.join("; ", Collections.unmodifiableList(cases));
        }
        return text;
    }
}
