package dev.tidemark.io.nbd;

import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Platform;
import com.sun.jna.Pointer;

import java.lang.reflect.Method;
import java.nio.channels.SocketChannel;

/**
 * The one socket call the NBD server needs beyond the JDK, a send that never blocks, and the descriptor of a
 * {@link SocketChannel} to make it on; stateless, so safe for any thread.
 *
 * <p>Linux only (the flag values are Linux's). JNA direct mapping: one JNI transition, no reflection, no
 * allocation; errno is not read (every failure falls back to the JDK's blocking write, which reports it).
 */
final class NonBlockingSend
{
    private static final int MSG_DONTWAIT = 0x40;
    private static final int MSG_NOSIGNAL = 0x4000;

    /** Whether {@link #send} can be called: on Linux, with libc bound. */
    static final boolean AVAILABLE = bind();

    /** {@code sun.nio.ch.SelChImpl#getFDVal}, or null when the JDK hides it (flags missing, other JDK). */
    private static final Method FD_VAL = fdValMethod();

    private NonBlockingSend()
    {
    }

    private static native long send(int fd, Pointer buf, long length, int flags);

    /**
     * Sends up to {@code length} bytes without blocking and without SIGPIPE.
     *
     * @return bytes sent, or -1 when none were (the socket buffer is full, or any error).
     */
    static long sendNow(final int fd, final Pointer buf, final int length)
    {
        return send(fd, buf, length, MSG_DONTWAIT | MSG_NOSIGNAL);
    }

    /** @return the channel's descriptor, or -1 when the JDK does not let us read it. */
    static int descriptor(final SocketChannel channel)
    {
        if (FD_VAL == null || !FD_VAL.getDeclaringClass().isInstance(channel))
        {
            return -1;
        }
        try
        {
            return (Integer)FD_VAL.invoke(channel);
        }
        catch (final ReflectiveOperationException | RuntimeException ex)
        {
            return -1;
        }
    }

    private static boolean bind()
    {
        if (!Platform.isLinux())
        {
            return false;
        }
        try
        {
            Native.register(NonBlockingSend.class, NativeLibrary.getInstance("c"));
            return true;
        }
        catch (final LinkageError | RuntimeException ex)
        {
            // No native support here: replies take the reply thread, as they would with the feature off.
            return false;
        }
    }

    private static Method fdValMethod()
    {
        try
        {
            final Method method = Class.forName("sun.nio.ch.SelChImpl").getMethod("getFDVal");
            // Fails unless java.base exports sun.nio.ch to us (--add-exports, as the launcher and tests pass).
            method.setAccessible(true);
            return method;
        }
        catch (final ReflectiveOperationException | RuntimeException ex)
        {
            return null;
        }
    }
}
