package dev.tidemark.qmp;

import java.util.Objects;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * One member of a QMP argument object: name, type, whether it is required and its default; immutable.
 */
public final class QmpField
{
    private final String name;
    private final QmpType type;
    private final boolean required;
    private final JsonNode defaultValue;

    private QmpField(final String name, final QmpType type, final boolean required, final JsonNode defaultValue)
    {
        if (name.isEmpty())
        {
            throw new IllegalArgumentException("field name must not be empty");
        }
        this.name = name;
        this.type = Objects.requireNonNull(type, "type");
        this.required = required;
        this.defaultValue = defaultValue == null ? null : defaultValue.deepCopy();
    }

    /**
     * @param name member name.
     * @param type member type.
     * @return a member that must be present.
     */
    public static QmpField required(final String name, final QmpType type)
    {
        return new QmpField(name, type, true, null);
    }

    /**
     * @param name member name.
     * @param type member type.
     * @return a member that may be absent; absent stays absent in the validated arguments.
     */
    public static QmpField optional(final String name, final QmpType type)
    {
        return new QmpField(name, type, false, null);
    }

    /**
     * @param name         member name.
     * @param type         member type.
     * @param defaultValue filled into the validated arguments when the member is absent; it must
     *                     itself be valid for {@code type}.
     * @return a member with a default.
     */
    public static QmpField optional(final String name, final QmpType type, final JsonNode defaultValue)
    {
        Objects.requireNonNull(defaultValue, "defaultValue");
        try
        {
            type.check(defaultValue, QmpPath.ROOT.member(name));
        }
        catch (final QmpError ex)
        {
            throw new IllegalArgumentException("default of '" + name + "' does not fit its type: " + ex.desc(), ex);
        }
        return new QmpField(name, type, false, defaultValue);
    }

    /** @return the member name. */
    public String name()
    {
        return name;
    }

    /** @return the member type. */
    public QmpType type()
    {
        return type;
    }

    /** @return whether the member must be present. */
    public boolean isRequired()
    {
        return required;
    }

    /** @return the default (a copy), or null when there is none. */
    public JsonNode defaultValue()
    {
        return defaultValue == null ? null : defaultValue.deepCopy();
    }

    JsonNode defaultValueShared()
    {
        return defaultValue;
    }

    @Override
    public String toString()
    {
        return name + (required ? "" : "?") + ": " + type.describe()
            + (defaultValue == null ? "" : " (default " + defaultValue + ")");
    }
}
