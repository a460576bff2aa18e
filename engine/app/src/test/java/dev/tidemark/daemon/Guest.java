package dev.tidemark.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A small Linux guest under qemu-system-x86_64 for tests: Debian's cloud kernel (unpacked by
 * {@code .ci/guest-kernel}), an initramfs built here with busybox and the virtio modules, and a serial console
 * log; confined to the test thread.
 */
final class Guest implements AutoCloseable
{
    static final Path KERNEL_DIR = Path.of(System.getenv().getOrDefault("TIDEMARK_GUEST_DIR",
        "/var/cache/tidemark-guest"));
    private static final List<String> MODULES = List.of("virtio_ring", "virtio", "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev", "virtio_pci", "virtio_blk");

    final Path console;
    private final Process process;

    private Guest(final Process process, final Path console)
    {
        this.process = process;
        this.console = console;
    }

    /** @return the kernel; fails the test if {@code .ci/guest-kernel} has not run. */
    static Path kernel()
    {
        final Path kernel = KERNEL_DIR.resolve("vmlinuz");
        if (!Files.isRegularFile(kernel))
        {
            throw new AssertionError("guest kernel missing at " + kernel + ": run .ci/guest-kernel (as root)");
        }
        return kernel;
    }

    /**
     * Builds an initramfs whose {@code /init} loads the virtio modules, waits for {@code /dev/vda}, runs
     * {@code body} and powers off.
     *
     * @param extraFiles more files (guest path to content), e.g. {@code /pat}.
     */
    static Path initramfs(final Path out, final String body, final Map<String, byte[]> extraFiles,
        final List<Path> hostBinaries) throws IOException
    {
        final Cpio cpio = new Cpio();
        for (final String dir : List.of("bin", "dev", "proc", "sys", "tmp", "lib/modules", "usr/bin"))
        {
            cpio.dir(dir);
        }
        cpio.charDevice("dev/console", 5, 1);
        final Path busybox = DaemonEndToEndTest.require("busybox");
        if (!sharedLibraries(busybox).isEmpty())
        {
            throw new AssertionError(busybox + " is dynamically linked: install busybox-static (see .ci/test)");
        }
        cpio.file("bin/busybox", busybox, true);
        final Path modules = KERNEL_DIR.resolve("modules");
        final Map<String, Path> found = new HashMap<>();
        try (Stream<Path> walk = Files.walk(modules))
        {
            walk.filter(p -> p.getFileName().toString().endsWith(".ko")).forEach(p ->
                found.put(p.getFileName().toString().replace(".ko", ""), p));
        }
        for (final String module : MODULES)
        {
            final Path p = found.get(module);
            if (p == null)
            {
                throw new AssertionError("module " + module + " missing under " + modules);
            }
            cpio.file("lib/modules/" + module + ".ko", p, false);
        }
        final Set<String> libs = new LinkedHashSet<>();
        for (final Path binary : hostBinaries)
        {
            cpio.file("usr/bin/" + binary.getFileName(), binary, true);
            libs.addAll(sharedLibraries(binary));
        }
        for (final String lib : libs)
        {
            cpio.file(lib.substring(1), Path.of(lib), true);
        }
        for (final Map.Entry<String, byte[]> e : extraFiles.entrySet())
        {
            cpio.file(e.getKey().substring(1), e.getValue(), true);
        }
        final String init = "#!/bin/busybox sh\n"
            + "/bin/busybox --install -s /bin\n"
            + "export PATH=/bin:/usr/bin\n"
            + "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n"
            + "for m in " + String.join(" ", MODULES) + "; do insmod /lib/modules/$m.ko || echo TM-INSMOD-FAIL $m;"
            + " done\n"
            + "i=0; while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\n"
            + "echo TM-START $(cat /sys/block/vda/size) $(ls /sys/block/vda/mq | wc -l)\n"
            + body
            + "\necho TM-DONE\npoweroff -f\n";
        cpio.file("init", init.getBytes(StandardCharsets.UTF_8), true);
        Files.write(out, cpio.finish());
        return out;
    }

    private static List<String> sharedLibraries(final Path binary) throws IOException
    {
        final Process ldd = new ProcessBuilder("ldd", binary.toString()).redirectErrorStream(true).start();
        final String text = new String(ldd.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        final List<String> out = new ArrayList<>();
        for (final String line : text.split("\n"))
        {
            for (final String word : line.trim().split("\\s+"))
            {
                if (word.startsWith("/"))
                {
                    out.add(word);
                }
            }
        }
        return out;
    }

    private static String accel;

    /** The guests' machine: the probe boots the same one, since KVM may fail with it and work with a smaller one. */
    private static List<String> machine(final int cpus)
    {
        return List.of("-M", "pc", "-cpu", "max", "-smp", String.valueOf(cpus), "-m", "256M",
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
            "-nodefaults", "-display", "none", "-no-reboot");
    }

    /**
     * KVM when it works, else TCG. {@code /dev/kvm} can exist and open while vCPUs still fail (QEMU then aborts
     * setting MSRs, or the guest hangs or stops with "emulation failure"), and QEMU's own fallback
     * ({@code -accel kvm -accel tcg}) only covers a failing open: so boot the kernel once, on the guests' own
     * machine, without a root file system under KVM; it panics and, with {@code -no-reboot}, QEMU exits 0 within
     * seconds. On this project's reference VM a 64 MiB single-CPU probe passed that way while the guests' 256 MiB
     * machine hung, so the probe must be the real machine.
     */
    static synchronized String accelerator() throws IOException
    {
        if (accel == null)
        {
            accel = "tcg";
            if (Files.isReadable(Path.of("/dev/kvm")))
            {
                final List<String> cmd = new ArrayList<>(List.of(
                    DaemonEndToEndTest.require("qemu-system-x86_64").toString(), "-accel", "kvm"));
                cmd.addAll(machine(2));
                cmd.addAll(List.of("-kernel", kernel().toString(), "-append", "panic=-1 console=ttyS0",
                    "-serial", "null"));
                final Process probe = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                try
                {
                    if (probe.waitFor(30, TimeUnit.SECONDS) && probe.exitValue() == 0)
                    {
                        accel = "kvm";
                    }
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
                probe.destroyForcibly();
            }
        }
        return accel;
    }

    /**
     * Boots the guest.
     *
     * @param disk QEMU arguments that give the guest its disk as {@code /dev/vda}.
     */
    static Guest boot(final Path work, final Path initramfs, final int cpus, final List<String> disk)
        throws IOException
    {
        final Path console = work.resolve("console-" + System.nanoTime() + ".log");
        final List<String> cmd = new ArrayList<>(List.of(DaemonEndToEndTest.require("qemu-system-x86_64").toString(),
            "-accel", accelerator()));
        cmd.addAll(machine(cpus));
        cmd.addAll(List.of("-serial", "file:" + console, "-kernel", kernel().toString(), "-initrd",
            initramfs.toString(), "-append", "console=ttyS0 quiet panic=-1"));
        cmd.addAll(disk);
        final Process process = new ProcessBuilder(cmd).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(work.resolve("qemu.log").toFile())).start();
        return new Guest(process, console);
    }

    String log() throws IOException
    {
        return Files.exists(console) ? Files.readString(console, StandardCharsets.ISO_8859_1) : "";
    }

    /** Waits until the console shows {@code text}. */
    void await(final String text, final long seconds) throws IOException, InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!log().contains(text))
        {
            if (System.nanoTime() > deadline || !process.isAlive() && !log().contains(text))
            {
                throw new AssertionError("guest console never showed '" + text + "' (qemu "
                    + (process.isAlive() ? "running" : "exited " + process.exitValue()) + "):\n" + log()
                    + "\nqemu: " + Files.readString(console.resolveSibling("qemu.log")));
            }
            Thread.sleep(50);
        }
    }

    /** Waits for the guest to power off. @return its exit code. */
    int awaitExit(final long seconds) throws InterruptedException
    {
        if (!process.waitFor(seconds, TimeUnit.SECONDS))
        {
            throw new AssertionError("guest still running after " + seconds + " s");
        }
        return process.exitValue();
    }

    @Override
    public void close()
    {
        if (process.isAlive())
        {
            try
            {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
            }
        }
    }
}
