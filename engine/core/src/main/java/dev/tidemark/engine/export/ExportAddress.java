package dev.tidemark.engine.export;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Where the NBD server listens (QMP's {@code SocketAddressLegacy}); immutable and safe to share between threads.
 */
public sealed interface ExportAddress
{
    /**
     * @param path the socket file; it must not exist yet and is deleted when the server stops.
     * @return a Unix domain socket address.
     */
    static ExportAddress unix(final Path path)
    {
        return new Unix(path);
    }

    /**
     * @param host a host name or literal address; {@code 127.0.0.1} or {@code localhost} for loopback only.
     * @param port a TCP port, 0 for any free one.
     * @return a TCP address.
     */
    static ExportAddress tcp(final String host, final int port)
    {
        return new Tcp(host, port);
    }

    /**
     * A Unix domain socket.
     *
     * @param path the socket file.
     */
    record Unix(Path path) implements ExportAddress
    {
        /** Checks the path. */
        public Unix
        {
            Objects.requireNonNull(path, "path");
        }

        @Override
        public String toString()
        {
            return "unix:" + path;
        }
    }

    /**
     * A TCP listener.
     *
     * @param host host name or literal address.
     * @param port port, 0 for any free one.
     */
    record Tcp(String host, int port) implements ExportAddress
    {
        /** Checks the values. */
        public Tcp
        {
            Objects.requireNonNull(host, "host");
            if (port < 0 || port > 65535)
            {
                throw new IllegalArgumentException("port must be in 0..65535, was " + port);
            }
        }

        @Override
        public String toString()
        {
            return "tcp:" + host + ":" + port;
        }
    }
}
