package dev.tidemark.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class TransferTest
{
    @TempDir
    Path dir;

    private Path randomFile(final String name, final int size, final long seed) throws IOException
    {
        final byte[] bytes = new byte[size];
        new SplittableRandom(seed).nextBytes(bytes);
        return Files.write(dir.resolve(name), bytes);
    }

    @ParameterizedTest
    @EnumSource(Transfer.Method.class)
    void copiesARangeFileToFile(final Transfer.Method method) throws IOException
    {
        final int size = 5 * 1024 * 1024 + 333;
        final Path source = randomFile("src", size, 1);
        final Path target = dir.resolve("dst");
        try (FileChannel src = FileChannel.open(source);
             FileChannel dst = FileChannel.open(target, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                 StandardOpenOption.WRITE))
        {
            Transfer.copy(src, 1000, dst, 77, size - 2000, method);
            Transfer.copy(src, 0, dst, 0, 0, method);
            assertThat(src.position()).isZero();
        }
        final byte[] expected = Files.readAllBytes(source);
        final byte[] actual = Files.readAllBytes(target);
        assertThat(actual.length).isEqualTo(77 + size - 2000);
        assertThat(Arrays.copyOfRange(actual, 77, actual.length)).isEqualTo(Arrays.copyOfRange(expected, 1000,
            size - 1000));
    }

    @ParameterizedTest
    @EnumSource(Transfer.Method.class)
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void sendsAFileRangeToASocket(final Transfer.Method method) throws Exception
    {
        final int size = 3 * 1024 * 1024 + 17;
        final Path source = randomFile("src", size, 2);
        try (ServerSocketChannel server = ServerSocketChannel.open()
            .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0)))
        {
            final CompletableFuture<byte[]> received = CompletableFuture.supplyAsync(() ->
            {
                try (SocketChannel peer = server.accept())
                {
                    final ByteArrayOutputStream out = new ByteArrayOutputStream();
                    final ByteBuffer buffer = ByteBuffer.allocate(65536);
                    while (peer.read(buffer.clear()) >= 0)
                    {
                        out.write(buffer.array(), 0, buffer.position());
                    }
                    return out.toByteArray();
                }
                catch (final IOException ex)
                {
                    throw new IllegalStateException(ex);
                }
            });
            try (FileChannel src = FileChannel.open(source);
                 SocketChannel socket = SocketChannel.open(server.getLocalAddress()))
            {
                Transfer.send(src, 5, size - 10, socket, method);
            }
            final byte[] expected = Files.readAllBytes(source);
            assertThat(received.get(20, TimeUnit.SECONDS)).isEqualTo(Arrays.copyOfRange(expected, 5, size - 5));
        }
    }

    @Test
    void copiesBetweenRawStoresWithTheMethodOfTheDestinationFileSystem() throws IOException
    {
        assertThat(Transfer.fileToFileMethod("tmpfs")).isEqualTo(Transfer.Method.TRANSFER_TO);
        assertThat(Transfer.fileToFileMethod("ext4")).isEqualTo(Transfer.FILE_TO_FILE_DEFAULT);
        final int size = 3 * 1024 * 1024;
        final byte[] data = Files.readAllBytes(randomFile("src.raw", size, 9));
        final Path shmFile = Files.createTempFile(Path.of("/dev/shm"), "tidemark-transfer", ".raw");
        Files.delete(shmFile);
        try (RawFileStore src = RawFileStore.open(dir.resolve("src.raw"), RawFileStore.Option.READ_ONLY);
             RawFileStore onDisk = RawFileStore.create(dir.resolve("dst.raw"), size);
             RawFileStore onTmpfs = RawFileStore.create(shmFile, size);
             RawFileStore direct = RawFileStore.create(dir.resolve("direct.raw"), size, RawFileStore.Option.DIRECT))
        {
            assertThat(onTmpfs.fileSystemType()).isEqualTo("tmpfs");
            for (final RawFileStore dst : List.of(onDisk, onTmpfs, direct))
            {
                Transfer.copy(src, 4096, dst, 8192, size - 16384);
                final ByteBuffer back = ByteBuffer.allocate(size - 16384);
                dst.read(8192, back);
                assertThat(back.array()).as("%s", dst).isEqualTo(Arrays.copyOfRange(data, 4096, size - 12288));
            }
            assertThatThrownBy(() -> Transfer.copy(src, 0, onDisk, 1, size)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("leaves a store's range");
            assertThatThrownBy(() -> Transfer.copy(onDisk, 0, src, 0, 10)).isInstanceOf(IllegalStateException.class);
        }
        finally
        {
            Files.deleteIfExists(shmFile);
        }
    }

    @Test
    void shortSourceAndBadArgumentsAreClearErrors() throws Exception
    {
        final Path source = randomFile("src", 10_000, 3);
        try (FileChannel src = FileChannel.open(source);
             FileChannel dst = FileChannel.open(dir.resolve("dst"), StandardOpenOption.CREATE_NEW,
                 StandardOpenOption.WRITE))
        {
            for (final Transfer.Method method : Transfer.Method.values())
            {
                assertThatThrownBy(() -> Transfer.copy(src, 5000, dst, 0, 6000, method)).isInstanceOf(IOException.class)
                    .hasMessageContaining("source ended at offset 10000").hasMessageContaining("1000 bytes short");
                assertThatThrownBy(() -> Transfer.copy(src, -1, dst, 0, 10, method))
                    .isInstanceOf(IllegalArgumentException.class);
                assertThatThrownBy(() -> Transfer.copy(src, 0, dst, -1, 10, method))
                    .isInstanceOf(IllegalArgumentException.class);
                assertThatThrownBy(() -> Transfer.send(src, 0, -1, dst, method))
                    .isInstanceOf(IllegalArgumentException.class);
                assertThatThrownBy(() -> Transfer.send(src, 9000, 2000, dst, method)).isInstanceOf(IOException.class)
                    .hasMessageContaining("source ended");
            }
        }
        try (ServerSocketChannel server = ServerSocketChannel.open()
            .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
             SocketChannel socket = SocketChannel.open(server.getLocalAddress());
             FileChannel src = FileChannel.open(source))
        {
            socket.configureBlocking(false);
            assertThatThrownBy(() -> Transfer.send(src, 0, 10, socket)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("non-blocking");
        }
    }

    @Test
    @Timeout(value = 30, unit = TimeUnit.SECONDS)
    void concurrentCopiesIntoOneFileLandInTheirRanges() throws Exception
    {
        final int slice = 1024 * 1024 + 5;
        final int threads = 6;
        final Path source = randomFile("src", slice * threads, 4);
        final Path target = dir.resolve("dst");
        try (FileChannel src = FileChannel.open(source);
             FileChannel dst = FileChannel.open(target, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
        {
            final List<CompletableFuture<Void>> copies = new ArrayList<>();
            for (int t = 0; t < threads; t++)
            {
                final int index = t;
                final Transfer.Method method = Transfer.Method.values()[t % 2];
                copies.add(CompletableFuture.runAsync(() ->
                {
                    try
                    {
                        for (int round = 0; round < 3; round++)
                        {
                            Transfer.copy(src, (long)index * slice, dst, (long)(threads - 1 - index) * slice, slice,
                                method);
                        }
                    }
                    catch (final IOException ex)
                    {
                        throw new IllegalStateException(ex);
                    }
                }));
            }
            CompletableFuture.allOf(copies.toArray(new CompletableFuture<?>[0])).get(25, TimeUnit.SECONDS);
        }
        final byte[] expected = Files.readAllBytes(source);
        final byte[] actual = Files.readAllBytes(target);
        for (int t = 0; t < threads; t++)
        {
            assertThat(Arrays.copyOfRange(actual, (threads - 1 - t) * slice, (threads - t) * slice))
                .as("slice %d", t).isEqualTo(Arrays.copyOfRange(expected, t * slice, (t + 1) * slice));
        }
    }
}
