package dev.tidemark.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import dev.tidemark.bitmap.BitmapView;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.qmp.QmpClient;
import dev.tidemark.qmp.QmpJson;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A real Linux guest (qemu-system-x86_64, KVM if usable, else TCG) writes a seeded plan to a Tidemark disk, through
 * a vhost-user-blk export and through QEMU's NBD driver; the host checks the image, the bitmaps, a backup chain and
 * a fleecing read taken while the guest wrote, and a kill -9 of the daemon mid-run. Each test on its own thread.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class VmGuestTest
{
    private static final long DISK = 16L << 20;
    private static final int OPS = 48;
    private static final Pattern OK = Pattern.compile("TM-OK (\\d+)");

    private Path work;
    private Process daemon;

    @BeforeEach
    void setUp() throws IOException
    {
        work = DaemonTesting.folderWithDisk("tidemark-vm", DISK);
    }

    @AfterEach
    void tearDown() throws Exception
    {
        DaemonTesting.killAndDelete(daemon, work);
    }

    // ------------------------------------------------------------------------------------------ tests

    @Test
    void aGuestOnTheVhostUserBlkExportWritesItsPlanAndTheBitmapCoversIt() throws Exception
    {
        final GuestPlan plan = new GuestPlan(11, DISK, OPS);
        daemon = serve(true, false);
        try (QmpClient qmp = connect())
        {
            qmp.execute("block-dirty-bitmap-add", args("{'node':'d0','name':'all','persistent':true}"));
            final JsonNode exports = qmp.execute("query-block-exports", QmpJson.object());
            assertThat(exports.toString()).contains("\"type\":\"vhost-user-blk\"").contains("\"id\":\"v0\"");
            final String log = runGuest(plan, vhostDisk(2, false), 2);
            assertThat(log).contains("TM-START " + DISK / 512 + " 2");
            // QEMU is gone: the export goes without an NBD server, with QEMU's event.
            qmp.execute("block-export-del", args("{'id':'v0'}"));
            assertThat(qmp.awaitEvent("BLOCK_EXPORT_DELETED", Duration.ofSeconds(30)).path("data").path("id")
                .asText()).isEqualTo("v0");
            assertThat(qmp.execute("query-block-exports", QmpJson.object())).isEmpty();
            assertThat(work.resolve("vhost.sock")).doesNotExist();
            quit(qmp);
        }
        assertPlanResult(plan, "all");
    }

    @Test
    void theSameGuestThroughQemusNbdDriver() throws Exception
    {
        final GuestPlan plan = new GuestPlan(11, DISK, OPS);
        daemon = serve(false, true);
        try (QmpClient qmp = connect())
        {
            qmp.execute("block-dirty-bitmap-add", args("{'node':'d0','name':'all','persistent':true}"));
            runGuest(plan, List.of("-blockdev", "driver=nbd,node-name=n0,server.type=unix,server.path="
                + work.resolve("nbd.sock") + ",export=d0,discard=unmap", "-device", "virtio-blk-pci,drive=n0,num-queues=2"), 2);
            quit(qmp);
        }
        assertPlanResult(plan, "all");
    }

    @Test
    void aBackupTransactionAndAFleecingReadWhileTheGuestWrites() throws Exception
    {
        final GuestPlan plan = new GuestPlan(23, DISK, 140);
        daemon = serve(true, true);
        qemuImg("create", "-f", "qcow2", work.resolve("full.qcow2").toString(), String.valueOf(DISK));
        qemuImg("create", "-f", "qcow2", "-b", work.resolve("full.qcow2").toString(), "-F", "qcow2",
            work.resolve("inc.qcow2").toString(), String.valueOf(DISK));
        qemuImg("create", "-f", "qcow2", work.resolve("fleece.qcow2").toString(), String.valueOf(DISK));
        int okAtCut;
        try (QmpClient qmp = connect())
        {
            qmp.execute("block-dirty-bitmap-add", args("{'node':'d0','name':'all','persistent':true}"));
            qmp.execute("blockdev-add", args("{'driver':'qcow2','node-name':'tfull','file':{'driver':'file',"
                + "'filename':'" + work.resolve("full.qcow2") + "'}}"));
            qmp.execute("transaction", args("{'actions':["
                + "{'type':'block-dirty-bitmap-add','data':{'node':'d0','name':'b0','persistent':true}},"
                + "{'type':'blockdev-backup','data':{'device':'d0','target':'tfull','sync':'full','job-id':'jfull'}}]}"));
            assertJobCompleted(qmp, "jfull");
            qmp.execute("blockdev-add", args("{'driver':'qcow2','node-name':'tinc','file':{'driver':'file',"
                + "'filename':'" + work.resolve("inc.qcow2") + "'}}"));
            qmp.execute("blockdev-add", args("{'driver':'qcow2','node-name':'fl','file':{'driver':'file',"
                + "'filename':'" + work.resolve("fleece.qcow2") + "'},'backing':'d0'}"));

            try (Guest guest = Guest.boot(work, initramfs(plan), 2, vhostDisk(2, false)))
            {
                guest.await("TM-OK 25", 240);
                // One cut: rotate (b1 starts, b0 is backed up incrementally) and open the fleecing view.
                qmp.execute("transaction", args("{'actions':["
                    + "{'type':'block-dirty-bitmap-add','data':{'node':'d0','name':'b1','persistent':true}},"
                    + "{'type':'blockdev-backup','data':{'device':'d0','target':'tinc','sync':'incremental',"
                    + "'bitmap':'b0','job-id':'jinc'}},"
                    + "{'type':'blockdev-backup','data':{'device':'d0','target':'fl','sync':'none','job-id':'jfl'}}]}"));
                okAtCut = oks(guest.log()).stream().mapToInt(Integer::intValue).max().orElse(-1);
                qmp.execute("block-export-add", args("{'type':'nbd','id':'fe','node-name':'fl','name':'fleece'}"));
                final Process read = new ProcessBuilder("qemu-img", "convert", "-f", "raw", "-O", "raw",
                    "nbd+unix:///fleece?socket=" + work.resolve("nbd.sock"), work.resolve("fleece.raw").toString())
                    .redirectErrorStream(true).start();
                final String readOut = new String(read.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                assertThat(read.waitFor()).as(readOut).isZero();
                final int okAfterRead = oks(guest.log()).stream().mapToInt(Integer::intValue).max().orElse(-1);
                assertJobCompleted(qmp, "jinc");
                qmp.execute("block-export-del", args("{'id':'fe'}"));
                qmp.awaitEvent("BLOCK_EXPORT_DELETED", Duration.ofSeconds(30));
                qmp.execute("job-cancel", args("{'id':'jfl'}"));
                qmp.awaitEvent("BLOCK_JOB_CANCELLED", Duration.ofSeconds(30));
                guest.await("TM-DONE", 240);
                guest.awaitExit(30);
                assertGuestCompleted(plan, guest.log());
                assertThat(okAfterRead).as("the guest kept writing during the fleecing read").isGreaterThan(okAtCut);
                assertThat(okAtCut).as("the cut came while the guest wrote").isLessThan(plan.ops.size() - 10);
            }
            quit(qmp);
        }
        // The restored chain is the disk at the cut, exactly as the fleecing view read it.
        qemuImg("convert", "-f", "qcow2", "-O", "raw", work.resolve("inc.qcow2").toString(),
            work.resolve("restored.raw").toString());
        final byte[] fleece = Files.readAllBytes(work.resolve("fleece.raw"));
        final byte[] restored = Files.readAllBytes(work.resolve("restored.raw"));
        assertThat(Arrays.mismatch(restored, fleece)).as("restored chain vs fleecing read").isEqualTo(-1);
        assertPlanResult(plan, "all");
        final byte[] image = Files.readAllBytes(work.resolve("disk.raw"));
        try (TrackedDisk disk = TrackedDisk.openImage(work.resolve("disk.raw")))
        {
            for (final String name : List.of("b0", "b1"))
            {
                final BitmapView view = disk.bitmaps().view(name);
                // Every chunk that changed after the cut, and every op that started after it, is dirty.
                for (int at = 0; at < image.length; at += (int)view.granularity())
                {
                    final int end = (int)Math.min(image.length, at + view.granularity());
                    if (Arrays.mismatch(image, at, end, fleece, at, end) >= 0)
                    {
                        assertThat(view.isDirty(at)).as(name + " chunk " + at + " changed after the cut").isTrue();
                    }
                }
                for (final GuestPlan.Op op : plan.ops)
                {
                    if (op.index() > okAtCut + 1)
                    {
                        assertCovered(view, op.offset(), op.length(), name + " op after the cut " + op);
                    }
                }
            }
        }
    }

    @Test
    void killNineWhileTheGuestWritesThenRestartAndTheGuestFinishes() throws Exception
    {
        final GuestPlan plan = new GuestPlan(37, DISK, 120);
        daemon = serve(true, false);
        try (QmpClient qmp = connect())
        {
            qmp.execute("block-dirty-bitmap-add", args("{'node':'d0','name':'all','persistent':true}"));
        }
        try (Guest guest = Guest.boot(work, initramfs(plan), 2, vhostDisk(2, true)))
        {
            guest.await("TM-OK 30", 240);
            daemon.destroyForcibly();
            assertThat(daemon.waitFor(30, TimeUnit.SECONDS)).isTrue();
            final int okAtKill = oks(guest.log()).size();
            daemon = serve(true, false);
            guest.await("TM-DONE", 240);
            guest.awaitExit(30);
            assertGuestCompleted(plan, guest.log());
            assertThat(okAtKill).as("the kill came while the guest wrote").isLessThan(plan.ops.size() - 10);
        }
        try (QmpClient qmp = connect())
        {
            quit(qmp);
        }
        assertPlanResult(plan, "all");
    }

    private void assertJobCompleted(final QmpClient qmp, final String id) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < deadline)
        {
            final JsonNode event = qmp.awaitEvent("BLOCK_JOB_COMPLETED", Duration.ofSeconds(120));
            if (id.equals(event.path("data").path("device").asText()))
            {
                assertThat(event.path("data").has("error")).as(event.toString()).isFalse();
                return;
            }
        }
        throw new AssertionError("job " + id + " did not complete");
    }

    private static void qemuImg(final String... args) throws Exception
    {
        DaemonTesting.qemuImg(args);
    }

    // ------------------------------------------------------------------------------------------ helpers

    private List<String> vhostDisk(final int queues, final boolean reconnect)
    {
        return List.of("-chardev", "socket,id=vc,path=" + work.resolve("vhost.sock") + (reconnect ? ",reconnect=1"
            : ""), "-device", "vhost-user-blk-pci,chardev=vc,num-queues=" + queues);
    }

    private Path initramfs(final GuestPlan plan) throws IOException
    {
        return Guest.initramfs(work.resolve("initrd.cpio"), plan.script(), Map.of("/pat", plan.pattern), List.of());
    }

    private String runGuest(final GuestPlan plan, final List<String> disk, final int cpus) throws Exception
    {
        try (Guest guest = Guest.boot(work, initramfs(plan), cpus, disk))
        {
            guest.await("TM-DONE", 240);
            guest.awaitExit(30);
            final String log = guest.log();
            assertGuestCompleted(plan, log);
            return log;
        }
    }

    private static void assertGuestCompleted(final GuestPlan plan, final String log)
    {
        assertThat(log).as(log).doesNotContain("TM-FAIL").doesNotContain("TM-INSMOD-FAIL").contains("TM-SYNCED");
        assertThat(oks(log)).as(log).hasSize(plan.ops.size());
    }

    private static List<Integer> oks(final String log)
    {
        final List<Integer> out = new ArrayList<>();
        final Matcher m = OK.matcher(log);
        while (m.find())
        {
            out.add(Integer.parseInt(m.group(1)));
        }
        return out;
    }

    /** The image equals the plan replayed, and {@code bitmap} covers every op's range. */
    private void assertPlanResult(final GuestPlan plan, final String bitmap) throws IOException
    {
        final byte[] image = Files.readAllBytes(work.resolve("disk.raw"));
        final byte[] expected = plan.replay();
        assertThat(firstDifference(image, expected)).as("first byte where the image differs from the plan")
            .isEqualTo(-1);
        try (TrackedDisk disk = TrackedDisk.openImage(work.resolve("disk.raw")))
        {
            final BitmapView view = disk.bitmaps().view(bitmap);
            for (final GuestPlan.Op op : plan.ops)
            {
                assertCovered(view, op.offset(), op.length(), "op " + op);
            }
        }
    }

    private static void assertCovered(final BitmapView view, final long offset, final long length, final String what)
    {
        for (long at = offset - offset % view.granularity(); at < offset + length; at += view.granularity())
        {
            assertThat(view.isDirty(at)).as(what + ": chunk at " + at + " of bitmap " + view.name()).isTrue();
        }
    }

    private static int firstDifference(final byte[] a, final byte[] b)
    {
        final int n = Arrays.mismatch(a, b);
        return n;
    }

    private Process serve(final boolean vhost, final boolean nbd) throws IOException
    {
        final List<String> args = new ArrayList<>(List.of(
            "--blockdev", "driver=file,node-name=f0,filename=" + work.resolve("disk.raw"),
            "--blockdev", "driver=raw,node-name=d0,file=f0",
            "--qmp-socket", work.resolve("qmp.sock").toString()));
        if (nbd)
        {
            args.addAll(List.of("--nbd-server", "addr.type=unix,addr.path=" + work.resolve("nbd.sock"),
                "--export", "type=nbd,id=e0,node-name=d0,writable=on"));
        }
        if (vhost)
        {
            args.addAll(List.of("--export", "type=vhost-user-blk,id=v0,node-name=d0,addr.type=unix,addr.path="
                + work.resolve("vhost.sock") + ",writable=on,num-queues=2,logical-block-size=512"));
        }
        Files.deleteIfExists(work.resolve("qmp.sock"));
        return DaemonTesting.serve(work, args);
    }

    private QmpClient connect() throws Exception
    {
        final QmpClient client = DaemonTesting.connect(work, daemon, Duration.ofSeconds(60));
        client.setTimeout(Duration.ofSeconds(120));
        return client;
    }

    private void quit(final QmpClient qmp) throws Exception
    {
        qmp.execute("quit", QmpJson.object());
        assertThat(daemon.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(daemon.exitValue()).as(Files.readString(work.resolve("serve.log"), StandardCharsets.UTF_8))
            .isZero();
    }

    private static ObjectNode args(final String singleQuoted) throws IOException
    {
        return DaemonTesting.args(singleQuoted);
    }
}
