package dev.tidemark.io.vhost;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * The libc calls vhost-user needs and the JDK does not offer (file descriptors over a Unix socket, eventfd,
 * shared mappings of passed descriptors); stateless, so safe for any thread.
 *
 * <p>JNA direct mapping: each call is one JNI transition, no reflection. Errors come back as {@link IOException}
 * carrying the errno, with {@code EINTR} retried where a call may be interrupted.
 */
final class Libc
{
    static final int AF_UNIX = 1;
    static final int SOCK_STREAM = 1;
    static final int SOCK_CLOEXEC = 0x80000;
    static final int MSG_NOSIGNAL = 0x4000;
    static final int MSG_CMSG_CLOEXEC = 0x40000000;
    static final int SOL_SOCKET = 1;
    static final int SCM_RIGHTS = 1;
    static final int SHUT_RDWR = 2;
    static final int EFD_CLOEXEC = 0x80000;
    static final int PROT_READ = 1;
    static final int PROT_WRITE = 2;
    static final int MAP_SHARED = 1;
    static final int MFD_CLOEXEC = 1;
    static final int EINTR = 4;
    static final int EAGAIN = 11;

    /** Most descriptors one vhost-user message carries (the memory table's 8 regions). */
    static final int MAX_FDS = 8;

    private static final int SOCKADDR_UN_SIZE = 110;
    private static final int MSGHDR_SIZE = 56;
    private static final int CMSG_HEADER = 16;
    private static final int CONTROL_SIZE = CMSG_HEADER + 4 * MAX_FDS;

    static
    {
        Native.register(Libc.class, NativeLibrary.getInstance("c"));
    }

    private Libc()
    {
    }

    static native int socket(int domain, int type, int protocol) throws LastErrorException;

    static native int bind(int fd, Pointer addr, int len) throws LastErrorException;

    static native int listen(int fd, int backlog) throws LastErrorException;

    static native int accept4(int fd, Pointer addr, Pointer len, int flags) throws LastErrorException;

    static native int connect(int fd, Pointer addr, int len) throws LastErrorException;

    static native long recvmsg(int fd, Pointer msg, int flags) throws LastErrorException;

    static native long sendmsg(int fd, Pointer msg, int flags) throws LastErrorException;

    static native long read(int fd, Pointer buf, long count) throws LastErrorException;

    static native long write(int fd, Pointer buf, long count) throws LastErrorException;

    static native int close(int fd) throws LastErrorException;

    static native int shutdown(int fd, int how) throws LastErrorException;

    static native int poll(Pointer fds, long nfds, int timeout) throws LastErrorException;

    static native int eventfd(int initval, int flags) throws LastErrorException;

    static native Pointer mmap(Pointer addr, long length, int prot, int flags, int fd, long offset)
        throws LastErrorException;

    static native int munmap(Pointer addr, long length) throws LastErrorException;

    static native int memfd_create(String name, int flags) throws LastErrorException;

    static native int ftruncate(int fd, long length) throws LastErrorException;

    // ------------------------------------------------------------------------------------------ helpers

    /** @return a {@code struct sockaddr_un} for {@code path}. */
    static Memory sockaddr(final Path path) throws IOException
    {
        final byte[] raw = path.toString().getBytes(StandardCharsets.UTF_8);
        if (raw.length >= SOCKADDR_UN_SIZE - 2)
        {
            throw new IOException("socket path too long (" + raw.length + " bytes, at most 107): " + path);
        }
        final Memory addr = new Memory(SOCKADDR_UN_SIZE);
        addr.clear();
        addr.setShort(0, (short)AF_UNIX);
        addr.write(2, raw, 0, raw.length);
        return addr;
    }

    static int sockaddrSize()
    {
        return SOCKADDR_UN_SIZE;
    }

    /**
     * A zeroed msghdr with one iovec over {@code length} bytes of {@code buf} and no control buffer. The iovec
     * lives in the same allocation, after the header, so it stays reachable as long as the header does.
     */
    private static Memory messageOver(final Pointer buf, final long length)
    {
        final Memory msg = new Memory(MSGHDR_SIZE + 16);
        msg.clear();
        final Pointer iov = msg.share(MSGHDR_SIZE);
        iov.setPointer(0, buf);
        iov.setLong(8, length);
        msg.setPointer(16, iov);
        msg.setLong(24, 1);
        return msg;
    }

    /**
     * Receives up to {@code length} bytes into {@code buf} and the descriptors that came with them.
     *
     * @param fds filled with received descriptors (close-on-exec); its first {@code return[1]} entries are valid.
     * @return {bytes read (0 at end of stream), descriptors received}.
     */
    static long[] recvWithFds(final int fd, final Pointer buf, final long length, final int[] fds) throws IOException
    {
        // Control-path only: the small buffers are freed by the collector.
        final Memory msg = messageOver(buf, length);
        final Memory control = new Memory(CONTROL_SIZE);
        control.clear();
        msg.setPointer(32, control);
        msg.setLong(40, CONTROL_SIZE);
        final long n = retry(() -> recvmsg(fd, msg, MSG_CMSG_CLOEXEC), "recvmsg");
        int count = 0;
        final long controlLength = msg.getLong(40);
        long at = 0;
        while (at + CMSG_HEADER <= controlLength)
        {
            final long cmsgLen = control.getLong(at);
            final int level = control.getInt(at + 8);
            final int type = control.getInt(at + 12);
            if (cmsgLen < CMSG_HEADER)
            {
                break;
            }
            if (level == SOL_SOCKET && type == SCM_RIGHTS)
            {
                final int n2 = (int)((cmsgLen - CMSG_HEADER) / 4);
                for (int i = 0; i < n2; i++)
                {
                    final int received = control.getInt(at + CMSG_HEADER + 4L * i);
                    if (count < fds.length)
                    {
                        fds[count++] = received;
                    }
                    else
                    {
                        closeQuietly(received);
                    }
                }
            }
            at += (cmsgLen + 7) & ~7L;
        }
        return new long[] {n, count};
    }

    /** Sends {@code length} bytes of {@code buf} with {@code fds} attached (none when empty). */
    static void sendWithFds(final int fd, final Pointer buf, final long length, final int[] fds) throws IOException
    {
        // Control-path only: the small buffers are freed by the collector.
        final Memory msg = messageOver(buf, length);
        final Memory control = new Memory(CONTROL_SIZE);
        control.clear();
        if (fds.length > 0)
        {
            if (fds.length > MAX_FDS)
            {
                throw new IOException("at most " + MAX_FDS + " descriptors per message");
            }
            final long cmsgLen = CMSG_HEADER + 4L * fds.length;
            control.setLong(0, cmsgLen);
            control.setInt(8, SOL_SOCKET);
            control.setInt(12, SCM_RIGHTS);
            for (int i = 0; i < fds.length; i++)
            {
                control.setInt(CMSG_HEADER + 4L * i, fds[i]);
            }
            msg.setPointer(32, control);
            msg.setLong(40, (cmsgLen + 7) & ~7L);
        }
        final long sent = retry(() -> sendmsg(fd, msg, MSG_NOSIGNAL), "sendmsg");
        if (sent < length)
        {
            // Descriptors went with the first byte; the rest is plain data.
            writeFully(fd, buf.share(sent), length - sent);
        }
    }

    /** Reads exactly {@code length} bytes. @return false at end of stream before the first byte. */
    static boolean readFully(final int fd, final Pointer buf, final long length) throws IOException
    {
        long done = 0;
        while (done < length)
        {
            final long at = done;
            final long n = retry(() -> read(fd, buf.share(at), length - at), "read");
            if (n == 0)
            {
                if (done == 0)
                {
                    return false;
                }
                throw new IOException("connection closed inside a message");
            }
            done += n;
        }
        return true;
    }

    static void writeFully(final int fd, final Pointer buf, final long length) throws IOException
    {
        long done = 0;
        while (done < length)
        {
            final long at = done;
            done += retry(() -> write(fd, buf.share(at), length - at), "write");
        }
    }

    static void closeQuietly(final int fd)
    {
        if (fd < 0)
        {
            return;
        }
        try
        {
            close(fd);
        }
        catch (final LastErrorException ex)
        {
            // Closing is best effort: the descriptor is released either way on Linux.
        }
    }

    static void shutdownQuietly(final int fd)
    {
        try
        {
            shutdown(fd, SHUT_RDWR);
        }
        catch (final LastErrorException ex)
        {
            // Not connected any more: nothing to wake.
        }
    }

    /** A libc call that returns a count or throws with errno. */
    interface Call
    {
        long run();
    }

    static long retry(final Call call, final String what) throws IOException
    {
        while (true)
        {
            try
            {
                return call.run();
            }
            catch (final LastErrorException ex)
            {
                if (ex.getErrorCode() != EINTR)
                {
                    throw new IOException(what + " failed: errno " + ex.getErrorCode(), ex);
                }
            }
        }
    }
}
