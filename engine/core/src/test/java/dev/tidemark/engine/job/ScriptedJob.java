package dev.tidemark.engine.job;

import dev.tidemark.engine.EngineEvents;

import java.io.IOException;
import java.util.concurrent.CountDownLatch;

/** A job whose work is scripted by the test; the flags are volatile, safe to set from any thread. */
final class ScriptedJob extends Job
{
    volatile boolean finish;
    volatile boolean failWrite;
    volatile boolean goReady;
    volatile boolean completed;
    /** When set, the worker ignores cancellation until the latch opens (to hold a peer in aborting). */
    volatile CountDownLatch stubborn;
    volatile OnError targetPolicy = OnError.REPORT;
    volatile int failuresLeft;

    ScriptedJob(final String id, final JobOptions options, final EngineEvents events)
    {
        super(id, "backup", options, events);
    }

    @Override
    public String device()
    {
        return "disk0";
    }

    @Override
    protected void run() throws Exception
    {
        setTotalProgress(1000);
        boolean readySent = false;
        while (true)
        {
            final CountDownLatch hold = stubborn;
            if (hold != null)
            {
                hold.await();
            }
            if (!pausePoint())
            {
                return;
            }
            if (goReady && !readySent)
            {
                transitionToReady();
                readySent = true;
            }
            if (completed || finish)
            {
                addProgress(1000 - currentProgress());
                return;
            }
            if (failWrite || failuresLeft > 0)
            {
                final IOException e = new IOException("Input/output error");
                if (failuresLeft > 0)
                {
                    failuresLeft--;
                }
                if (!handleError(targetPolicy, false, e))
                {
                    if (isCancelled())
                    {
                        return;
                    }
                    throw e;
                }
                continue;
            }
            throttle(1);
            Thread.sleep(1);
        }
    }

    @Override
    protected void onComplete()
    {
        completed = true;
    }
}
