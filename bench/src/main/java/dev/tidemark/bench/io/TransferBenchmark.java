package dev.tidemark.bench.io;

import dev.tidemark.io.Transfer;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

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
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Not thread-safe: one benchmark thread per state. Copies a 256 MiB file to another file and to a
 * loopback socket with each {@link Transfer.Method}; the time per operation gives the throughput
 * (256 MiB / time). The socket's peer is a thread that reads into a direct buffer and drops the bytes.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class TransferBenchmark
{
    /** Bytes moved per operation. */
    public static final int SIZE = 256 << 20;

    @Param({"TRANSFER_TO", "DIRECT_BUFFER"})
    public Transfer.Method method;

    /** Where the files live: tmpfs or the root file system (ext4 here). */
    @Param({"/dev/shm", "/tmp"})
    public String directory;

    private Path source;
    private Path target;
    private FileChannel src;
    private FileChannel dst;
    private ServerSocketChannel server;
    private SocketChannel socket;
    private Thread drain;

    /** Creates the source file, the target file and the loopback connection. */
    @Setup(Level.Trial)
    public void setUp() throws IOException
    {
        source = Files.createTempFile(Path.of(directory), "tidemark-transfer-src", ".raw");
        target = Files.createTempFile(Path.of(directory), "tidemark-transfer-dst", ".raw");
        final byte[] chunk = new byte[1 << 20];
        new SplittableRandom(42).nextBytes(chunk);
        try (FileChannel out = FileChannel.open(source, StandardOpenOption.WRITE))
        {
            for (long at = 0; at < SIZE; at += chunk.length)
            {
                final ByteBuffer buffer = ByteBuffer.wrap(chunk);
                while (buffer.hasRemaining())
                {
                    out.write(buffer, at + buffer.position());
                }
            }
        }
        src = FileChannel.open(source, StandardOpenOption.READ);
        dst = FileChannel.open(target, StandardOpenOption.READ, StandardOpenOption.WRITE);
        server = ServerSocketChannel.open().bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        socket = SocketChannel.open(server.getLocalAddress());
        final SocketChannel peer = server.accept();
        drain = new Thread(() ->
        {
            final ByteBuffer sink = ByteBuffer.allocateDirect(1 << 20);
            try (peer)
            {
                while (peer.read(sink.clear()) >= 0)
                {
                    Thread.onSpinWait();
                }
            }
            catch (final IOException ex)
            {
                // The benchmark closed the connection.
            }
        }, "transfer-drain");
        drain.setDaemon(true);
        drain.start();
    }

    /** Closes everything and deletes the files. */
    @TearDown(Level.Trial)
    public void tearDown() throws IOException, InterruptedException
    {
        socket.close();
        drain.join(5000);
        server.close();
        src.close();
        dst.close();
        Files.deleteIfExists(source);
        Files.deleteIfExists(target);
    }

    /** File to file, 256 MiB. */
    @Benchmark
    public void fileToFile() throws IOException
    {
        Transfer.copy(src, 0, dst, 0, SIZE, method);
    }

    /** File to a loopback TCP socket, 256 MiB. */
    @Benchmark
    public void fileToSocket() throws IOException
    {
        Transfer.send(src, 0, SIZE, socket, method);
    }
}
