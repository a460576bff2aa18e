package dev.tidemark.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.engine.registry.Successor;
import dev.tidemark.io.testing.HeapStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** I2 all-or-nothing, QEMU rollback per action, successors, and the journal's view of them; under both pipelines. */
@Timeout(30)
class TransactionTest
{
    private static final long G = 65536;

    @TempDir
    Path dir;

    private TrackedDisk disk;

    private void open(final Pipeline pipeline) throws IOException
    {
        disk = TrackedDisk.open(DiskOptions.of(new HeapStore(4 << 20), dir.resolve("bm")).withPipeline(pipeline));
    }

    @AfterEach
    void close() throws IOException
    {
        if (disk != null)
        {
            disk.close();
        }
    }

    private void write(final long offset, final int length) throws IOException
    {
        disk.write(offset, ByteBuffer.allocate(length), false);
    }

    private Map<String, Journal.BitmapState> journalState()
    {
        return Journal.inspect(dir.resolve("bm").resolve(Journal.FILE_NAME)).bitmaps();
    }

    private Map<String, String> fingerprint()
    {
        return disk.bitmaps().query().stream().collect(Collectors.toMap(BitmapInfo::name,
            info -> info + " " + disk.bitmaps().sha256(info.name())));
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void oneInvalidActionChangesNothingAnywhere(final Pipeline pipeline) throws IOException
    {
        open(pipeline);
        disk.transaction(BitmapActions.add("a", G, true, false), BitmapActions.add("b", G, true, false),
            BitmapActions.add("c", G, false, true), BitmapActions.add("t", G, true, false));
        write(0, 4096);
        write(1 << 20, 70000);
        disk.transaction(BitmapActions.disable("b"));
        write(2 << 20, 512);
        final Map<String, String> before = fingerprint();
        final Map<String, Journal.BitmapState> journalBefore = journalState();
        final long filesBefore;
        try (var files = Files.list(dir.resolve("bm")))
        {
            filesBefore = files.count();
        }
        assertThatThrownBy(() -> disk.transaction(
            BitmapActions.add("new", G, true, false),
            BitmapActions.clear("a"),
            BitmapActions.enable("b"),
            BitmapActions.disable("a"),
            BitmapActions.merge("t", List.of("a", "b", "c")),
            BitmapActions.remove("c"),
            BitmapActions.merge("t", List.of("a", "missing"))))
            .isInstanceOf(EngineException.class).hasMessage("Dirty bitmap 'missing' not found");
        assertThat(fingerprint()).isEqualTo(before);
        assertThat(journalState()).isEqualTo(journalBefore);
        try (var files = Files.list(dir.resolve("bm")))
        {
            assertThat(files.count()).as("no bitmap file left behind").isEqualTo(filesBefore);
        }
        assertThatThrownBy(() -> disk.transaction(BitmapActions.clear("a"), BitmapActions.abort()))
            .hasMessage("Transaction aborted using Abort action");
        assertThat(fingerprint()).isEqualTo(before);
        // The bitmaps still record: the failed transactions left the recording set as it was.
        write(3 << 20, 1);
        assertThat(disk.bitmaps().query("a").count()).isEqualTo(5 * G);
        assertThat(disk.bitmaps().query("b").count()).isEqualTo(3 * G);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void actionsSeeEarlierActionsOfTheSameTransactionAndCommitTogether(final Pipeline pipeline) throws IOException
    {
        open(pipeline);
        disk.transaction(BitmapActions.add("a"));
        write(0, 10);
        disk.transaction(BitmapActions.add("b"), BitmapActions.merge("b", List.of("a")), BitmapActions.clear("a"),
            BitmapActions.disable("a"));
        write(G * 5, 10);
        assertThat(disk.bitmaps().query("a")).isEqualTo(new BitmapInfo("a", false, false, false, false, G, 0));
        assertThat(disk.bitmaps().query("b").count()).isEqualTo(2 * G);
        disk.transaction(BitmapActions.remove("a"), BitmapActions.add("a", 512, false, false));
        assertThat(disk.bitmaps().query("a").granularity()).isEqualTo(512);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void successorTakesWritesAfterItsCutAndAbdicatesOrIsReclaimed(final Pipeline pipeline) throws IOException
    {
        open(pipeline);
        disk.transaction(BitmapActions.add("p", G, true, false), BitmapActions.add("q", G, false, false));
        write(0, 1);
        final Successor[] successors = new Successor[2];
        disk.transaction(new SuccessorAction("p", successors, 0), new SuccessorAction("q", successors, 1));
        assertThat(disk.bitmaps().query("p").busy()).isTrue();
        assertThat(disk.bitmaps().query("p").recording()).isTrue();
        assertThat(journalState().get("p").successorFileId()).isNotZero();
        assertThatThrownBy(() -> disk.transaction(BitmapActions.clear("p")))
            .hasMessage("Bitmap 'p' is currently in use by another operation and cannot be used");
        write(G * 3, 1);
        assertThat(successors[0].frozenParent().dirtyChunkCount()).isEqualTo(1);
        assertThat(successors[0].bitmap().isDirty(G * 3)).isTrue();
        assertThat(successors[0].bitmap().isDirty(0)).isFalse();
        disk.transaction(new Resolve(successors[0], true), new Resolve(successors[1], false));
        assertThat(disk.bitmaps().query("p")).isEqualTo(new BitmapInfo("p", true, false, true, false, G, G));
        assertThat(disk.bitmaps().view("p").isDirty(G * 3)).isTrue();
        assertThat(disk.bitmaps().query("q")).isEqualTo(new BitmapInfo("q", true, false, false, false, G, 2 * G));
        assertThat(journalState().get("p").successorFileId()).isZero();
        assertThat(journalState().get("p").fileId()).isEqualTo(successors[0].fileId());
        // The replaced parent's file is deleted on the retirement thread, shortly after the cut.
        final long deadline = System.nanoTime() + 10_000_000_000L;
        List<String> names;
        do
        {
            try (var files = Files.list(dir.resolve("bm")))
            {
                names = files.map(f -> f.getFileName().toString()).sorted().toList();
            }
        }
        while (names.size() > 2 && System.nanoTime() < deadline);
        assertThat(names).containsExactly("bitmap-" + successors[0].fileId() + ".tmbm", Journal.FILE_NAME);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void interceptorSeesExactlyTheWritesAfterItsCutAndCanFailThem(final Pipeline pipeline) throws Exception
    {
        open(pipeline);
        write(0, 10);
        final List<Long> seen = new ArrayList<>();
        final AtomicReference<java.util.concurrent.CompletableFuture<Void>> before = new AtomicReference<>();
        final WriteInterceptor interceptor = (offset, length) ->
        {
            seen.add(offset);
            if (offset == 999)
            {
                throw new IOException("target full");
            }
        };
        disk.transaction(new ControlAction()
        {
            @Override
            public void prepare(final CutContext ctx)
            {
                ctx.addInterceptor(interceptor);
                before.set(ctx.writesBeforeCutDone());
            }

            @Override
            public void commit(final CutContext ctx)
            {
            }

            @Override
            public void abort(final CutContext ctx)
            {
            }
        });
        before.get().get();
        write(100, 10);
        disk.writeZeroes(200, 10, false, false);
        assertThatThrownBy(() -> write(999, 1)).isInstanceOf(IOException.class).hasMessageContaining("target full");
        disk.flush();
        assertThat(seen).containsExactly(100L, 200L, 999L);
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void writesBeforeTheCutAreCompleteWhenItsFutureCompletesAndFusedBeforeItsActionsRun(final Pipeline pipeline)
        throws Exception
    {
        final HeapStore store = new HeapStore(4 << 20);
        disk = TrackedDisk.open(DiskOptions.of(store, dir.resolve("bm")).withPipeline(pipeline));
        final CountDownLatch entered = new CountDownLatch(1);
        final CountDownLatch gate = new CountDownLatch(1);
        final AtomicInteger stored = new AtomicInteger();
        store.hook((offset, length) ->
        {
            if (offset == 0)
            {
                // Holds the ring in the first write's store call so the others and the cut form one batch.
                entered.countDown();
                try
                {
                    gate.await();
                }
                catch (final InterruptedException ex)
                {
                    throw new IOException(ex);
                }
            }
            stored.incrementAndGet();
        });
        final AtomicInteger completed = new AtomicInteger();
        final int writes = 100;
        for (int i = 0; i < writes; i++)
        {
            disk.submit(RequestKind.WRITE, i * 4096L, 512, ByteBuffer.allocate(512), false, false,
                (sequence, error) -> completed.incrementAndGet());
            if (i == 0)
            {
                entered.await();
            }
        }
        final AtomicInteger completedWhenActionRan = new AtomicInteger(-1);
        final AtomicReference<CompletableFuture<int[]>> atCutDone = new AtomicReference<>();
        final CompletableFuture<Long> cut = disk.transactionAsync(List.of(new ControlAction()
        {
            @Override
            public void prepare(final CutContext ctx)
            {
                completedWhenActionRan.set(completed.get());
                // Runs on the thread that completes the future, at that moment.
                atCutDone.set(ctx.writesBeforeCutDone().thenApply(v -> new int[] {completed.get(), stored.get()}));
            }

            @Override
            public void commit(final CutContext ctx)
            {
            }

            @Override
            public void abort(final CutContext ctx)
            {
            }
        }));
        gate.countDown();
        cut.get();
        assertThat(atCutDone.get().get()).as("completed and stored when writesBeforeCutDone completed")
            .containsExactly(writes, writes);
        if (pipeline == Pipeline.FUSED)
        {
            assertThat(completedWhenActionRan.get()).as("fused: writes before the cut done before its actions")
                .isEqualTo(writes);
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void interceptorMayWaitForTheWritesBeforeItsCutEvenInTheSameBatch(final Pipeline pipeline) throws Exception
    {
        open(pipeline);
        final List<java.util.concurrent.CompletableFuture<Void>> all = new ArrayList<>();
        for (int round = 0; round < 20; round++)
        {
            // Each round's interceptor waits for its own cut only.
            final AtomicReference<java.util.concurrent.CompletableFuture<Void>> cutDone = new AtomicReference<>();
            for (int i = 0; i < 20; i++)
            {
                all.add(disk.writeAsync(i * 4096L, ByteBuffer.allocate(4096), false));
            }
            final WriteInterceptor waiting = (offset, length) ->
            {
                try
                {
                    cutDone.get().get(10, java.util.concurrent.TimeUnit.SECONDS);
                }
                catch (final Exception ex)
                {
                    throw new IOException("writes before the cut never completed", ex);
                }
            };
            final java.util.concurrent.CompletableFuture<Long> cut = disk.transactionAsync(List.of(new ControlAction()
            {
                @Override
                public void prepare(final CutContext ctx)
                {
                    cutDone.set(ctx.writesBeforeCutDone());
                    ctx.addInterceptor(waiting);
                }

                @Override
                public void commit(final CutContext ctx)
                {
                }

                @Override
                public void abort(final CutContext ctx)
                {
                }
            }));
            for (int i = 0; i < 20; i++)
            {
                all.add(disk.writeAsync(i * 4096L, ByteBuffer.allocate(4096), false));
            }
            cut.get();
            disk.transaction(new ControlAction()
            {
                @Override
                public void prepare(final CutContext ctx)
                {
                    ctx.removeInterceptor(waiting);
                }

                @Override
                public void commit(final CutContext ctx)
                {
                }

                @Override
                public void abort(final CutContext ctx)
                {
                }
            });
        }
        for (final var future : all)
        {
            future.get();
        }
    }

    /** Creates a successor in prepare, reclaims it on abort. */
    private static final class SuccessorAction implements ControlAction
    {
        private final String name;
        private final Successor[] out;
        private final int index;

        SuccessorAction(final String name, final Successor[] out, final int index)
        {
            this.name = name;
            this.out = out;
            this.index = index;
        }

        @Override
        public void prepare(final CutContext ctx)
        {
            out[index] = ctx.registry().createSuccessor(name);
        }

        @Override
        public void commit(final CutContext ctx)
        {
        }

        @Override
        public void abort(final CutContext ctx)
        {
            ctx.registry().reclaim(out[index]);
        }
    }

    /** Abdicates or reclaims a successor at a cut. */
    private record Resolve(Successor successor, boolean abdicate) implements ControlAction
    {
        @Override
        public void prepare(final CutContext ctx)
        {
        }

        @Override
        public void commit(final CutContext ctx)
        {
            if (abdicate)
            {
                ctx.registry().abdicate(successor);
            }
            else
            {
                ctx.registry().reclaim(successor);
            }
        }

        @Override
        public void abort(final CutContext ctx)
        {
        }
    }

    @ParameterizedTest
    @EnumSource(Pipeline.class)
    void aBusySourceIsNotMergedAsInQemu(final Pipeline pipeline) throws IOException
    {
        open(pipeline);
        disk.transaction(BitmapActions.add("a"), BitmapActions.add("t", G, false, true));
        write(0, 4096);
        disk.bitmaps().setBusy("a", true);
        assertThatThrownBy(() -> disk.transaction(BitmapActions.merge("t", List.of("a"))))
            .hasMessage("Bitmap 'a' is currently in use by another operation and cannot be used");
        assertThat(disk.bitmaps().query("t").count()).isZero();
        disk.bitmaps().setBusy("a", false);
        disk.transaction(BitmapActions.merge("t", List.of("a")));
        assertThat(disk.bitmaps().query("t").count()).isEqualTo(G);
    }
}
