package dev.tidemark.qmp;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A QAPI-like type for validating command arguments; immutable and safe to share between threads.
 *
 * <p>{@link #check} validates a value and returns it normalised (defaults filled into nested
 * objects), throwing {@link QmpError} with QEMU's wording on the first problem, in QEMU's order:
 * members in declaration order, then unexpected members. It never has side effects, so a command's
 * arguments are entirely validated before its handler runs.
 */
public abstract class QmpType
{
    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final BigInteger UINT64_MAX = BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);

    /** What JSON kind a value is, for alternates. */
    enum Kind
    {
        STRING, NUMBER, BOOLEAN, OBJECT, ARRAY, ANY
    }

    QmpType()
    {
    }

    abstract JsonNode check(JsonNode value, QmpPath path) throws QmpError;

    abstract Kind kind();

    /** @return a short description for documentation and help text. */
    public abstract String describe();

    @Override
    public String toString()
    {
        return describe();
    }

    // ---- factories -------------------------------------------------------------------------------

    /** @return a JSON string. */
    public static QmpType str()
    {
        return Scalar.STR;
    }

    /** @return a JSON boolean. */
    public static QmpType bool()
    {
        return Scalar.BOOL;
    }

    /** @return a signed 64-bit integer ({@code int} in QAPI). */
    public static QmpType int64()
    {
        return Scalar.INT64;
    }

    /** @return an unsigned 64-bit integer. */
    public static QmpType uint64()
    {
        return Scalar.UINT64;
    }

    /** @return an unsigned 32-bit integer. */
    public static QmpType uint32()
    {
        return Scalar.UINT32;
    }

    /** @return any JSON number. */
    public static QmpType number()
    {
        return Scalar.NUMBER;
    }

    /** @return any JSON value, unchecked. */
    public static QmpType any()
    {
        return Scalar.ANY;
    }

    /**
     * @param values the accepted strings.
     * @return an enumeration, sent as a string.
     */
    public static QmpType enumOf(final String... values)
    {
        return new EnumType(List.of(values));
    }

    /**
     * @param element element type.
     * @return a JSON array of {@code element}.
     */
    public static QmpType array(final QmpType element)
    {
        return new ArrayType(element);
    }

    /**
     * @param fields members in order.
     * @return an object type with exactly these members.
     */
    public static QmpStruct struct(final QmpField... fields)
    {
        return new QmpStruct(List.of(fields), null, Map.of());
    }

    /**
     * A flat union: common members, one of them an enum discriminator, plus members that depend on
     * the discriminator's value. QEMU's legacy "simple" unions such as SocketAddressLegacy
     * ({@code {"type":"inet","data":{...}}}) are flat unions whose variants have one {@code data} member.
     *
     * @param base          common members, including the discriminator.
     * @param discriminator name of the enum member that selects the variant.
     * @param variants      for each discriminator value with extra members, those members.
     * @return the union type.
     */
    public static QmpStruct union(final List<QmpField> base, final String discriminator,
        final Map<String, List<QmpField>> variants)
    {
        return new QmpStruct(base, discriminator, variants);
    }

    /**
     * An alternate: the value's JSON kind picks one of the branches (for example a string naming
     * a bitmap, or an object {@code {"node","name"}}).
     *
     * @param typeName the QAPI type name used in errors ({@code expected: NAME}).
     * @param branches the branches, each of a different JSON kind.
     * @return the alternate type.
     */
    public static QmpType alternate(final String typeName, final QmpType... branches)
    {
        return new Alternate(typeName, List.of(branches));
    }

    // ---- shared error texts ----------------------------------------------------------------------

    static QmpError invalidType(final QmpPath path, final String expected)
    {
        return QmpError.generic("Invalid parameter type for '" + path.full() + "', expected: " + expected);
    }

    static QmpError invalidValue(final String name, final String expects)
    {
        return QmpError.generic("Parameter '" + name + "' expects " + expects);
    }

    // ---- implementations -------------------------------------------------------------------------

    /** Scalar types; immutable singletons. */
    private static final class Scalar extends QmpType
    {
        static final Scalar STR = new Scalar("str", Kind.STRING);
        static final Scalar BOOL = new Scalar("bool", Kind.BOOLEAN);
        static final Scalar INT64 = new Scalar("int", Kind.NUMBER);
        static final Scalar UINT64 = new Scalar("uint64", Kind.NUMBER);
        static final Scalar UINT32 = new Scalar("uint32", Kind.NUMBER);
        static final Scalar NUMBER = new Scalar("number", Kind.NUMBER);
        static final Scalar ANY = new Scalar("any", Kind.ANY);

        private final String name;
        private final Kind kind;

        private Scalar(final String name, final Kind kind)
        {
            this.name = name;
            this.kind = kind;
        }

        @Override
        JsonNode check(final JsonNode value, final QmpPath path) throws QmpError
        {
            switch (name)
            {
                case "str":
                    if (!value.isTextual())
                    {
                        throw invalidType(path, "string");
                    }
                    return value;
                case "bool":
                    if (!value.isBoolean())
                    {
                        throw invalidType(path, "boolean");
                    }
                    return value;
                case "int":
                    if (!value.isIntegralNumber() || !value.canConvertToLong())
                    {
                        throw invalidType(path, "integer");
                    }
                    return NODES.numberNode(value.longValue());
                case "uint64":
                    return NODES.numberNode(unsigned(value, path));
                case "uint32":
                    final BigInteger v = unsigned32(value, path);
                    return NODES.numberNode(v.longValueExact());
                case "number":
                    if (!value.isNumber())
                    {
                        throw invalidType(path, "number");
                    }
                    return value;
                default:
                    return value;
            }
        }

        private static BigInteger unsigned(final JsonNode value, final QmpPath path) throws QmpError
        {
            if (!value.isIntegralNumber() || value.bigIntegerValue().signum() < 0
                || value.bigIntegerValue().compareTo(UINT64_MAX) > 0)
            {
                throw invalidValue(path.full(), "uint64");
            }
            return value.bigIntegerValue();
        }

        private static BigInteger unsigned32(final JsonNode value, final QmpPath path) throws QmpError
        {
            if (!value.isIntegralNumber())
            {
                throw invalidValue(path.full(), "uint64");
            }
            final BigInteger v = value.bigIntegerValue();
            // QEMU reads the value as 64 bits first, then range-checks it by the member's own name.
            if (v.compareTo(UINT64_MAX) > 0 || v.compareTo(BigInteger.valueOf(Long.MIN_VALUE)) < 0)
            {
                throw invalidValue(path.full(), "uint64");
            }
            if (v.signum() < 0 || v.bitLength() > 32)
            {
                throw invalidValue(path.local(), "uint32_t");
            }
            return v;
        }

        @Override
        Kind kind()
        {
            return kind;
        }

        @Override
        public String describe()
        {
            return name;
        }
    }

    /** A string enumeration; immutable. */
    private static final class EnumType extends QmpType
    {
        private final Set<String> values;

        EnumType(final List<String> values)
        {
            if (values.isEmpty())
            {
                throw new IllegalArgumentException("an enum needs at least one value");
            }
            this.values = Collections.unmodifiableSet(new LinkedHashSet<>(values));
        }

        @Override
        JsonNode check(final JsonNode value, final QmpPath path) throws QmpError
        {
            if (!value.isTextual())
            {
                throw invalidType(path, "string");
            }
            if (!values.contains(value.textValue()))
            {
                throw QmpError.generic("Parameter '" + path.local() + "' does not accept value '" + value.textValue() + "'");
            }
            return value;
        }

        @Override
        Kind kind()
        {
            return Kind.STRING;
        }

        @Override
        public String describe()
        {
            return String.join("|", values);
        }
    }

    /** A homogeneous array; immutable. */
    private static final class ArrayType extends QmpType
    {
        private final QmpType element;

        ArrayType(final QmpType element)
        {
            this.element = Objects.requireNonNull(element, "element");
        }

        @Override
        JsonNode check(final JsonNode value, final QmpPath path) throws QmpError
        {
            if (!value.isArray())
            {
                throw invalidType(path, "array");
            }
            final ArrayNode out = NODES.arrayNode(value.size());
            for (int i = 0; i < value.size(); i++)
            {
                out.add(element.check(value.get(i), path.element(i)));
            }
            return out;
        }

        @Override
        Kind kind()
        {
            return Kind.ARRAY;
        }

        @Override
        public String describe()
        {
            return "[" + element.describe() + "]";
        }
    }

    /** A choice by JSON kind; immutable. */
    private static final class Alternate extends QmpType
    {
        private final String typeName;
        private final List<QmpType> branches;

        Alternate(final String typeName, final List<QmpType> branches)
        {
            this.typeName = Objects.requireNonNull(typeName, "typeName");
            if (branches.size() < 2)
            {
                throw new IllegalArgumentException("an alternate needs at least two branches");
            }
            final Set<Kind> kinds = new LinkedHashSet<>();
            for (final QmpType branch : branches)
            {
                if (branch.kind() == Kind.ANY || !kinds.add(branch.kind()))
                {
                    throw new IllegalArgumentException("alternate " + typeName + " has ambiguous branches " + branches);
                }
            }
            this.branches = List.copyOf(branches);
        }

        @Override
        JsonNode check(final JsonNode value, final QmpPath path) throws QmpError
        {
            final Kind kind = kindOf(value);
            for (final QmpType branch : branches)
            {
                if (branch.kind() == kind)
                {
                    return branch.check(value, path);
                }
            }
            throw QmpError.generic("Invalid parameter type for '" + path.local() + "', expected: " + typeName);
        }

        private static Kind kindOf(final JsonNode value)
        {
            if (value.isTextual())
            {
                return Kind.STRING;
            }
            if (value.isNumber())
            {
                return Kind.NUMBER;
            }
            if (value.isBoolean())
            {
                return Kind.BOOLEAN;
            }
            if (value.isObject())
            {
                return Kind.OBJECT;
            }
            if (value.isArray())
            {
                return Kind.ARRAY;
            }
            return Kind.ANY;
        }

        @Override
        Kind kind()
        {
            return Kind.ANY;
        }

        @Override
        public String describe()
        {
            final List<String> names = new ArrayList<>();
            for (final QmpType branch : branches)
            {
                names.add(branch.describe());
            }
            return typeName + "(" + String.join(" or ", names) + ")";
        }
    }

    static ObjectNode newObject()
    {
        return NODES.objectNode();
    }

    static Map<String, List<QmpField>> copyVariants(final Map<String, List<QmpField>> variants)
    {
        final Map<String, List<QmpField>> copy = new LinkedHashMap<>();
        for (final Map.Entry<String, List<QmpField>> entry : variants.entrySet())
        {
            copy.put(entry.getKey(), List.copyOf(entry.getValue()));
        }
        return Collections.unmodifiableMap(copy);
    }
}
