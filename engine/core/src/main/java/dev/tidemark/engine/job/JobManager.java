package dev.tidemark.engine.job;

import dev.tidemark.engine.EngineException;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The registry of jobs by id; safe for concurrent use by any number of threads.
 *
 * <p>An id is first reserved (while a transaction prepares a job start), then registered (when it commits), and
 * released when the job reaches {@code null}. Ids follow QEMU's rule: a letter first, then letters, digits,
 * {@code - . _}. Lookups by id back the QMP verbs: {@code job-*} commands report a missing job as
 * {@code DeviceNotActive "Job 'X' not found"}, legacy {@code block-job-*} ones as
 * {@code DeviceNotActive "Block job 'X' not found"}.
 */
public final class JobManager
{
    private final Object lock = new Object();
    private final Set<String> reserved = new HashSet<>();
    private final Map<String, Job> jobs = new LinkedHashMap<>();

    /** Creates an empty registry. */
    public JobManager()
    {
        // Jobs are registered as their starts commit.
    }

    /**
     * @param id a candidate job id.
     * @return whether QEMU would accept it ({@code id_wellformed}).
     */
    public static boolean isWellFormed(final String id)
    {
        if (id == null || id.isEmpty() || id.length() > 1023 || !isAsciiLetter(id.charAt(0)))
        {
            return false;
        }
        for (int i = 1; i < id.length(); i++)
        {
            final char c = id.charAt(i);
            if (!(isAsciiLetter(c) || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'))
            {
                return false;
            }
        }
        return true;
    }

    private static boolean isAsciiLetter(final char c)
    {
        return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z';
    }

    /**
     * Reserves an id for a job about to be created.
     *
     * @param id the id.
     * @throws EngineException {@code Invalid job ID 'X'} or {@code Job ID 'X' already in use}.
     */
    public void reserve(final String id)
    {
        if (!isWellFormed(id))
        {
            throw EngineException.generic("Invalid job ID '" + id + "'");
        }
        synchronized (lock)
        {
            if (reserved.contains(id) || jobs.containsKey(id))
            {
                throw EngineException.generic("Job ID '" + id + "' already in use");
            }
            reserved.add(id);
        }
    }

    /**
     * Releases a reservation that did not become a job (its transaction aborted).
     *
     * @param id the id.
     */
    public void unreserve(final String id)
    {
        synchronized (lock)
        {
            reserved.remove(id);
        }
    }

    /**
     * Registers a job whose id was reserved, puts it into {@code txn} and moves it to {@code created}. The job is
     * started by {@link #start(Job)}.
     *
     * @param job the job.
     * @param txn its transaction (a fresh one for a job started alone).
     */
    public void register(final Job job, final JobTransaction txn)
    {
        synchronized (lock)
        {
            if (!reserved.remove(job.id()))
            {
                throw new IllegalStateException("job id '" + job.id() + "' was not reserved");
            }
            jobs.put(job.id(), job);
        }
        job.attach(txn, () -> remove(job));
        txn.add(job);
        synchronized (txn)
        {
            job.create();
        }
    }

    /**
     * Starts a registered job's worker ({@code created -> running}).
     *
     * @param job the job.
     */
    public void start(final Job job)
    {
        synchronized (job.lock())
        {
            job.start();
        }
    }

    /**
     * Reserves, registers and starts a job alone in a transaction of its own.
     *
     * @param job the job.
     * @throws EngineException when the id is invalid or in use.
     */
    public void startAlone(final Job job)
    {
        reserve(job.id());
        register(job, new JobTransaction());
        start(job);
    }

    private void remove(final Job job)
    {
        synchronized (lock)
        {
            jobs.remove(job.id(), job);
        }
    }

    /**
     * @param id a job id.
     * @return the job.
     * @throws EngineException {@code DeviceNotActive} when there is none.
     */
    public Job job(final String id)
    {
        synchronized (lock)
        {
            final Job job = jobs.get(id);
            if (job == null)
            {
                throw new EngineException(EngineException.Reason.JOB_NOT_FOUND, "Job '" + id + "' not found");
            }
            return job;
        }
    }

    /**
     * @param id a job id (legacy {@code device} argument of {@code block-job-*}).
     * @return the job.
     * @throws EngineException {@code DeviceNotActive "Block job 'X' not found"} when there is none.
     */
    public Job blockJob(final String id)
    {
        synchronized (lock)
        {
            final Job job = jobs.get(id);
            if (job == null)
            {
                throw new EngineException(EngineException.Reason.JOB_NOT_FOUND,
                    "Block job '" + id + "' not found");
            }
            return job;
        }
    }

    /** @return every job not yet gone, in creation order. */
    public List<Job> jobs()
    {
        synchronized (lock)
        {
            return new ArrayList<>(jobs.values());
        }
    }

    /** @return {@code query-jobs} data. */
    public List<Map<String, Object>> queryJobs()
    {
        final List<Map<String, Object>> out = new ArrayList<>();
        for (final Job j : jobs())
        {
            out.add(j.queryJobsInfo());
        }
        return out;
    }

    /** @return {@code query-block-jobs} data. */
    public List<Map<String, Object>> queryBlockJobs()
    {
        final List<Map<String, Object>> out = new ArrayList<>();
        final List<Job> all = jobs();
        all.sort(Comparator.comparing(Job::id));
        for (final Job j : all)
        {
            out.add(j.queryBlockJobsInfo());
        }
        return out;
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void pause(final String id)
    {
        job(id).pause();
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void resume(final String id)
    {
        job(id).resume();
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void cancel(final String id)
    {
        job(id).cancel();
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void complete(final String id)
    {
        job(id).complete();
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void finalizeJob(final String id)
    {
        job(id).finalizeJob();
    }

    /** @param id job id. @throws EngineException as {@link #job} and the verb. */
    public void dismiss(final String id)
    {
        job(id).dismiss();
    }

    /**
     * @param id job id.
     * @param speed bytes per second, {@code >= 0}.
     * @throws EngineException as {@link #blockJob} and the verb.
     */
    public void setSpeed(final String id, final long speed)
    {
        blockJob(id).setSpeed(speed);
    }
}
