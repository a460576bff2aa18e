package dev.tidemark.engine;

import java.util.function.BooleanSupplier;

/**
 * Waiting on an object's monitor without giving up on interrupts; stateless, any thread that holds the monitor.
 */
public final class Monitors
{
    private Monitors()
    {
    }

    /**
     * Waits on {@code monitor} until {@code done} holds; an interrupt meanwhile is kept and re-asserted on return, for
     * waits that must not be abandoned half-way (a joint cut's vote, a retirement waiting for its readers).
     *
     * @param monitor the object whose monitor the caller holds and whose {@code notifyAll} signals a change.
     * @param done checked under the monitor before every wait.
     */
    public static void awaitUninterruptibly(final Object monitor, final BooleanSupplier done)
    {
        boolean interrupted = false;
        while (!done.getAsBoolean())
        {
            try
            {
                monitor.wait();
            }
            catch (final InterruptedException ex)
            {
                interrupted = true;
            }
        }
        if (interrupted)
        {
            Thread.currentThread().interrupt();
        }
    }
}
