package dev.tidemark.engine.torture;

import static org.assertj.core.api.Assertions.assertThat;

import dev.tidemark.engine.DiskOptions;
import dev.tidemark.engine.ImageFingerprint;
import dev.tidemark.engine.TrackedDisk;
import dev.tidemark.engine.journal.Journal;
import dev.tidemark.engine.registry.BitmapActions;
import dev.tidemark.engine.registry.BitmapInfo;
import dev.tidemark.io.RawFileStore;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * I5, out-of-band changes: an image written while Tidemark was not running (a plain FileChannel write,
 * {@code dd conv=notrunc}, {@code qemu-io -f raw -c write}, a write whose mtime is then set back, a file copied over the
 * image) makes every persistent bitmap reopen {@code inconsistent}, with a journaled message that says why; an
 * untouched image or one only read reopens trusted.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class OutOfBandChangeTest
{
    private static final long SIZE = 4 << 20;

    @TempDir
    Path dir;

    private Path prepare() throws IOException
    {
        final Path image = dir.resolve("disk.raw");
        try (TrackedDisk disk = TrackedDisk.open(DiskOptions.of(RawFileStore.create(image, SIZE),
            DiskOptions.bitmapDirectoryFor(image))))
        {
            disk.transaction(BitmapActions.add("a", 65536, true, false), BitmapActions.add("b", 4096, true, true));
            disk.write(8192, ByteBuffer.wrap(new byte[] {1, 2, 3}), false);
        }
        return image;
    }

    private static List<BitmapInfo> reopen(final Path image, final List<String> messages) throws IOException
    {
        try (TrackedDisk disk = TrackedDisk.openImage(image))
        {
            messages.addAll(disk.openMessages());
            return disk.bitmaps().query();
        }
    }

    private void assertDetected(final Path image, final String field) throws IOException
    {
        final List<String> messages = new java.util.ArrayList<>();
        final List<BitmapInfo> infos = reopen(image, messages);
        assertThat(infos).hasSize(2).allMatch(BitmapInfo::inconsistent, "inconsistent");
        assertThat(messages).anyMatch(m -> m.contains("changed while Tidemark was not running") && m.contains(field));
        final Journal.Replay replay = Journal.inspect(DiskOptions.bitmapDirectoryFor(image).resolve(Journal.FILE_NAME));
        assertThat(replay.outOfBandChanges()).hasSize(1).allMatch(m -> m.contains(image.toString()));
        // It stays inconsistent across later clean opens: a new bitmap or a full backup is the way back.
        assertThat(reopen(image, new java.util.ArrayList<>())).allMatch(BitmapInfo::inconsistent);
    }

    @Test
    void untouchedOrOnlyReadImageReopensTrusted() throws IOException
    {
        final Path image = prepare();
        final List<String> messages = new java.util.ArrayList<>();
        assertThat(reopen(image, messages)).hasSize(2).noneMatch(BitmapInfo::inconsistent);
        assertThat(Files.readAllBytes(image)).hasSize((int) SIZE);
        assertThat(reopen(image, messages)).noneMatch(BitmapInfo::inconsistent);
        assertThat(messages).noneMatch(m -> m.contains("changed while"));
    }

    @Test
    void plainFileChannelWriteIsDetected() throws IOException
    {
        final Path image = prepare();
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE))
        {
            channel.write(ByteBuffer.wrap("out of band".getBytes(StandardCharsets.US_ASCII)), 1 << 20);
        }
        assertDetected(image, "ctime");
    }

    @Test
    void writeWithMtimeSetBackIsDetectedByCtime() throws IOException
    {
        final Path image = prepare();
        final FileTime before = Files.getLastModifiedTime(image);
        try (FileChannel channel = FileChannel.open(image, StandardOpenOption.WRITE))
        {
            channel.write(ByteBuffer.wrap(new byte[] {9}), 4096);
        }
        Files.setLastModifiedTime(image, before);
        assertThat(Files.getLastModifiedTime(image)).isEqualTo(before);
        assertDetected(image, "ctime");
    }

    @Test
    void ddConvNotruncIsDetected() throws Exception
    {
        final Path image = prepare();
        run("dd", "if=/dev/urandom", "of=" + image, "bs=4096", "count=1", "seek=7", "conv=notrunc");
        assertDetected(image, "mtime");
    }

    @Test
    void qemuIoWriteIsDetected() throws Exception
    {
        final Path image = prepare();
        run("qemu-io", "-f", "raw", "-c", "write -P 0xab 0 4k", image.toString());
        assertDetected(image, "mtime");
    }

    @Test
    void imageReplacedByACopyIsDetectedByInode() throws IOException
    {
        final Path image = prepare();
        final Path copy = dir.resolve("copy.raw");
        Files.copy(image, copy, java.nio.file.StandardCopyOption.COPY_ATTRIBUTES);
        Files.move(copy, image, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        assertDetected(image, "ino");
    }

    @Test
    void fingerprintNamesEveryField() throws IOException
    {
        final Path image = prepare();
        final String fingerprint = ImageFingerprint.of(image);
        assertThat(fingerprint).contains("size=" + SIZE, "mtime=", "ctime=", "ino=", "dev=");
        assertThat(ImageFingerprint.difference(fingerprint, fingerprint)).isNull();
        assertThat(ImageFingerprint.difference(fingerprint, fingerprint.replace("size=" + SIZE, "size=1")))
            .isEqualTo("size " + SIZE + " -> 1");
        assertThat(ImageFingerprint.difference("garbage", fingerprint)).contains("size null -> " + SIZE);
    }

    private static void run(final String... command) throws IOException, InterruptedException
    {
        final Process process;
        try
        {
            process = new ProcessBuilder(command).redirectErrorStream(true).start();
        }
        catch (final IOException ex)
        {
            throw new AssertionError(command[0] + " is required for this test and was not found: " + ex.getMessage(),
                ex);
        }
        final String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).as("%s: %s", String.join(" ", command), output).isZero();
    }
}
