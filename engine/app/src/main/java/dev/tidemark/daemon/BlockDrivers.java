package dev.tidemark.daemon;

import dev.tidemark.qmp.QmpField;
import dev.tidemark.qmp.QmpStruct;
import dev.tidemark.qmp.QmpType;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The block drivers {@code blockdev-add} knows and the schema built from them; immutable, safe from any thread.
 */
final class BlockDrivers
{
    /** Every driver, by name; adding a driver is one line here. */
    static final Map<String, BlockDriver> ALL = of(
        new FileDriver(),
        new RawDriver(),
        new Qcow2Driver(),
        new NbdDriver());

    private BlockDrivers()
    {
    }

    /** @return the drivers by name, in the given order (tests add their own to {@link #ALL}'s). */
    static Map<String, BlockDriver> of(final BlockDriver... drivers)
    {
        final Map<String, BlockDriver> map = new LinkedHashMap<>();
        for (final BlockDriver driver : drivers)
        {
            map.put(driver.name(), driver);
        }
        return java.util.Collections.unmodifiableMap(map);
    }

    /**
     * @param drivers the drivers a graph knows.
     * @return {@code blockdev-add}'s arguments: the common members, then a driver's own by {@code driver}.
     */
    static QmpStruct blockdevAdd(final Map<String, BlockDriver> drivers)
    {
        final Map<String, List<QmpField>> inline = new LinkedHashMap<>();
        for (final BlockDriver driver : drivers.values())
        {
            if (driver.protocol())
            {
                inline.put(driver.name(), driver.options(null));
            }
        }
        final QmpType ref = QmpType.alternate("BlockdevRef", QmpType.str(),
            QmpType.union(common(drivers), "driver", inline));
        final Map<String, List<QmpField>> variants = new LinkedHashMap<>();
        for (final BlockDriver driver : drivers.values())
        {
            variants.put(driver.name(), driver.options(ref));
        }
        return QmpType.union(common(drivers), "driver", variants);
    }

    private static List<QmpField> common(final Map<String, BlockDriver> drivers)
    {
        return List.of(QmpField.required("driver", QmpType.enumOf(drivers.keySet().toArray(new String[0]))),
            QmpField.optional("node-name", QmpType.str()),
            QmpField.optional("discard", QmpType.enumOf("ignore", "unmap")),
            QmpField.optional("cache", QmpType.struct(QmpField.optional("direct", QmpType.bool()),
                QmpField.optional("no-flush", QmpType.bool()))),
            QmpField.optional("read-only", QmpType.bool()), QmpField.optional("auto-read-only", QmpType.bool()),
            QmpField.optional("force-share", QmpType.bool()),
            QmpField.optional("detect-zeroes", QmpType.enumOf("off", "on", "unmap")));
    }
}
