package dev.tidemark.io.nbd;

import dev.tidemark.io.BlockStore;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * Immutable, so safe from any thread: the part of an export over a {@link BlockStore} that negotiation reads (name,
 * description, read-only, transmission features, and the meta contexts: {@code base:allocation} from the store first,
 * then the extra ones), for the exports over a store to extend; the data operations are theirs.
 */
public abstract class StoreExportBase implements NbdExport
{
    private final String name;
    private final String description;
    private final boolean readOnly;
    private final Set<Feature> features;
    private final List<MetaContext> contexts;

    /**
     * @param name          export name.
     * @param description   free text, may be empty.
     * @param store         where {@code base:allocation} comes from; read-only when the store is.
     * @param readOnly      refuse modifying commands even if the store accepts them.
     * @param multiConn     whether to offer {@code CAN_MULTI_CONN}.
     * @param extraContexts contexts offered after {@code base:allocation}.
     */
    protected StoreExportBase(final String name, final String description, final BlockStore store,
        final boolean readOnly, final boolean multiConn, final List<MetaContext> extraContexts)
    {
        this.name = name;
        this.description = description;
        this.readOnly = readOnly || store.isReadOnly();
        final EnumSet<Feature> offered = this.readOnly ? EnumSet.of(Feature.FLUSH, Feature.FUA, Feature.CACHE,
            Feature.MULTI_CONN) : EnumSet.allOf(Feature.class);
        if (!multiConn)
        {
            offered.remove(Feature.MULTI_CONN);
        }
        this.features = Set.copyOf(offered);
        final List<MetaContext> all = new ArrayList<>();
        all.add(new AllocationContext(store));
        all.addAll(extraContexts);
        this.contexts = List.copyOf(all);
    }

    /** @return whether a write-zeroes with {@code flags} may leave a hole: unless the client asked for NO_HOLE. */
    protected static boolean mayUnmap(final int flags)
    {
        return (flags & NbdProtocol.CMD_FLAG_NO_HOLE) == 0;
    }

    /**
     * Answers ENOTSUP to a write-zeroes with FAST_ZERO and NO_HOLE: zeroes that must stay allocated are written, not
     * punched, so they are not fast.
     *
     * @return whether the request is answered; the caller then does nothing more with it.
     */
    protected static boolean refusedAsNotFast(final int flags, final NbdCompletion done)
    {
        if (!mayUnmap(flags) && (flags & NbdProtocol.CMD_FLAG_FAST_ZERO) != 0)
        {
            done.complete(NbdProtocol.ENOTSUP);
            return true;
        }
        return false;
    }

    @Override
    public final String name()
    {
        return name;
    }

    @Override
    public final String description()
    {
        return description;
    }

    @Override
    public final boolean isReadOnly()
    {
        return readOnly;
    }

    @Override
    public final Set<Feature> features()
    {
        return features;
    }

    @Override
    public final List<MetaContext> metaContexts()
    {
        return contexts;
    }
}
