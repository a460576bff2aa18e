package dev.tidemark.engine.journal;

import java.nio.file.Path;
import java.util.function.Consumer;

/** Test access to {@link Journal}'s force observer; set it from one test thread at a time. */
public final class JournalSyncSeam
{
    private JournalSyncSeam()
    {
    }

    /** @param observer sees each journal file right after it was forced; {@code null} restores the no-op. */
    public static void observe(final Consumer<Path> observer)
    {
        Journal.syncObserver = observer == null ? file -> { } : observer;
    }
}
