package standin;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The application's tables and the job flow through PostgreSQL: api-gateway stores a job, a worker claims it
 * (FOR UPDATE SKIP LOCKED, so workers never take the same job), runs it and stores the outcome. The real
 * platform hands jobs over through Kafka; that part is not imitated.
 */
final class Jobs {
    /** Key of the advisory lock that lets one service at a time create the tables. */
    private static final long SCHEMA_LOCK = 0x706c6174666f726dL;
    /** The seed's admin row, locked: no well-known password ever logs in. The stack's postgres_app_admin.sql
     *  sets the real bcrypt once this table exists. */
    static final String LOCKED_PASSWORD = "!locked";
    private static final int MAX_SLEEP_SECONDS = 60;

    private final Pool pool;
    private final ObjectMapper json;

    Jobs(Pool pool, ObjectMapper json) {
        this.pool = pool;
        this.json = json;
    }

    /** Creates what is missing, in the schema the app role owns (postgres_roles.sql: public). */
    void createSchema() throws SQLException {
        try (Pool.Lease lease = pool.borrow(); Statement statement = lease.connection().createStatement()) {
            Connection connection = lease.connection();
            connection.setAutoCommit(false);
            statement.execute("SELECT pg_advisory_xact_lock(" + SCHEMA_LOCK + ")");
            statement.execute("""
                CREATE TABLE IF NOT EXISTS public.users (
                    username text PRIMARY KEY,
                    password text NOT NULL)""");
            statement.execute("INSERT INTO public.users (username, password) VALUES ('admin', '" + LOCKED_PASSWORD
                + "') ON CONFLICT (username) DO NOTHING");
            statement.execute("""
                CREATE TABLE IF NOT EXISTS public.jobs (
                    id bigserial PRIMARY KEY,
                    type text NOT NULL,
                    payload jsonb NOT NULL DEFAULT '{}',
                    status text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
                    submitted_by text NOT NULL,
                    worker_id text,
                    result jsonb,
                    error text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    started_at timestamptz,
                    finished_at timestamptz)""");
            statement.execute("CREATE INDEX IF NOT EXISTS jobs_pending ON public.jobs (id) WHERE status = 'pending'");
            connection.commit();
        }
    }

    /** The stored bcrypt of a user, or null. */
    String passwordHash(String username) throws SQLException {
        try (Pool.Lease lease = pool.borrow();
             PreparedStatement query = lease.connection().prepareStatement(
                 "SELECT password FROM public.users WHERE username = ?")) {
            query.setString(1, username);
            try (ResultSet rows = query.executeQuery()) {
                return rows.next() ? rows.getString(1) : null;
            }
        }
    }

    long submit(String type, JsonNode payload, String user) throws SQLException {
        try (Pool.Lease lease = pool.borrow();
             PreparedStatement insert = lease.connection().prepareStatement(
                 "INSERT INTO public.jobs (type, payload, submitted_by) VALUES (?, ?::jsonb, ?) RETURNING id")) {
            insert.setString(1, type);
            insert.setString(2, payload.toString());
            insert.setString(3, user);
            try (ResultSet rows = insert.executeQuery()) {
                rows.next();
                return rows.getLong(1);
            }
        }
    }

    private static final String COLUMNS = "id, type, status, payload::text, result::text, error, worker_id, "
        + "created_at, started_at, finished_at";

    /** The job as JSON, when `user` submitted it; null otherwise. */
    ObjectNode find(long id, String user) throws SQLException {
        try (Pool.Lease lease = pool.borrow();
             PreparedStatement query = lease.connection().prepareStatement(
                 "SELECT " + COLUMNS + " FROM public.jobs WHERE id = ? AND submitted_by = ?")) {
            query.setLong(1, id);
            query.setString(2, user);
            try (ResultSet rows = query.executeQuery()) {
                return rows.next() ? row(rows) : null;
            }
        }
    }

    List<ObjectNode> recent(String user, int limit) throws SQLException {
        try (Pool.Lease lease = pool.borrow();
             PreparedStatement query = lease.connection().prepareStatement(
                 "SELECT " + COLUMNS + " FROM public.jobs WHERE submitted_by = ? ORDER BY id DESC LIMIT ?")) {
            query.setString(1, user);
            query.setInt(2, limit);
            List<ObjectNode> jobs = new ArrayList<>();
            try (ResultSet rows = query.executeQuery()) {
                while (rows.next()) {
                    jobs.add(row(rows));
                }
            }
            return jobs;
        }
    }

    private ObjectNode row(ResultSet rows) throws SQLException {
        ObjectNode job = json.createObjectNode().put("id", rows.getLong(1)).put("type", rows.getString(2))
            .put("status", rows.getString(3));
        try {
            job.set("payload", json.readTree(rows.getString(4)));
            job.set("result", rows.getString(5) == null ? null : json.readTree(rows.getString(5)));
        } catch (java.io.IOException e) {
            throw new SQLException("stored JSON does not parse", e);
        }
        job.put("error", rows.getString(6)).put("workerId", rows.getString(7));
        String[] times = {"createdAt", "startedAt", "finishedAt"};
        for (int i = 0; i < times.length; i++) {
            Timestamp time = rows.getTimestamp(8 + i);
            job.put(times[i], time == null ? null : time.toInstant().toString());
        }
        return job;
    }

    /** The orchestrator's job meters, counted from the table (so they survive restarts and replicas). */
    void registerOrchestratorMetrics(Metrics metrics) {
        metrics.gauge("orchestrator_jobs_submitted_total", "Jobs submitted",
            s -> s.sample(count("SELECT count(*) FROM public.jobs")));
        metrics.gauge("orchestrator_jobs_completed_total", "Jobs completed, by outcome", s -> {
            s.sample(count("SELECT count(*) FROM public.jobs WHERE status = 'succeeded'"), "status", "succeeded");
            s.sample(count("SELECT count(*) FROM public.jobs WHERE status = 'failed'"), "status", "failed");
        });
        metrics.gauge("orchestrator_queue_depth", "Jobs waiting for a worker",
            s -> s.sample(count("SELECT count(*) FROM public.jobs WHERE status = 'pending'"), "queue", "jobs"));
    }

    private long count(String sql) {
        try (Pool.Lease lease = pool.borrow(1000); Statement statement = lease.connection().createStatement();
             ResultSet rows = statement.executeQuery(sql)) {
            rows.next();
            return rows.getLong(1);
        } catch (SQLException e) {
            throw new IllegalStateException(e.getMessage(), e);
        }
    }

    /** A worker: `slots` threads claiming and running jobs until stop(). */
    final class Worker {
        private final String workerId;
        private final int slots;
        private final AtomicInteger active = new AtomicInteger();
        private final CountDownLatch stopped;
        private final Metrics.Timer duration;
        private volatile boolean running = true;

        Worker(String workerId, int slots, Metrics metrics) {
            this.workerId = workerId;
            this.slots = slots;
            this.stopped = new CountDownLatch(slots);
            this.duration = metrics.timer("orchestrator_job_duration_seconds", "Time a worker took to run a job");
            metrics.gauge("worker_jobs_active", "Jobs this worker is running", s -> s.sample(active.get()));
            metrics.gauge("worker_job_slots", "Jobs this worker can run at once", s -> s.sample(slots));
        }

        void start() throws SQLException {
            // Jobs this worker held when it died go back to the queue.
            try (Pool.Lease lease = pool.borrow();
                 PreparedStatement requeue = lease.connection().prepareStatement(
                     "UPDATE public.jobs SET status = 'pending', worker_id = NULL, started_at = NULL "
                         + "WHERE status = 'running' AND worker_id = ?")) {
                requeue.setString(1, workerId);
                int count = requeue.executeUpdate();
                if (count > 0) {
                    Log.warn("requeued " + count + " jobs " + workerId + " held before its restart");
                }
            }
            for (int slot = 0; slot < slots; slot++) {
                Thread.ofPlatform().name("worker-slot-" + slot).daemon().start(this::loop);
            }
            Log.info("worker " + workerId + " polling for jobs with " + slots + " slots");
        }

        private void loop() {
            try {
                while (running) {
                    try {
                        if (!runOne()) {
                            Thread.sleep(500);
                        }
                    } catch (SQLException e) {
                        Log.warn("worker: " + e.getMessage());
                        Thread.sleep(2000);
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                stopped.countDown();
            }
        }

        private boolean runOne() throws SQLException, InterruptedException {
            long id;
            String type;
            JsonNode payload;
            try (Pool.Lease lease = pool.borrow();
                 PreparedStatement claim = lease.connection().prepareStatement("""
                     UPDATE public.jobs SET status = 'running', worker_id = ?, started_at = now()
                      WHERE id = (SELECT id FROM public.jobs WHERE status = 'pending'
                                   ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
                     RETURNING id, type, payload::text""")) {
                claim.setString(1, workerId);
                try (ResultSet rows = claim.executeQuery()) {
                    if (!rows.next()) {
                        return false;
                    }
                    id = rows.getLong(1);
                    type = rows.getString(2);
                    payload = json.readTree(rows.getString(3));
                } catch (java.io.IOException e) {
                    throw new SQLException("stored payload does not parse", e);
                }
            }
            active.incrementAndGet();
            long started = System.nanoTime();
            String status = "succeeded";
            JsonNode result = null;
            String error = null;
            try {
                result = run(type, payload);
            } catch (IllegalArgumentException e) {
                status = "failed";
                error = e.getMessage();
            } finally {
                active.decrementAndGet();
            }
            duration.record((System.nanoTime() - started) / 1e9, "status", status);
            try (Pool.Lease lease = pool.borrow();
                 PreparedStatement done = lease.connection().prepareStatement(
                     "UPDATE public.jobs SET status = ?, result = ?::jsonb, error = ?, finished_at = now() "
                         + "WHERE id = ? AND worker_id = ?")) {
                done.setString(1, status);
                done.setString(2, result == null ? null : result.toString());
                done.setString(3, error);
                done.setLong(4, id);
                done.setString(5, workerId);
                done.executeUpdate();
            }
            Log.info("job " + id + " (" + type + ") " + status);
            return true;
        }

        /** The job types this reference worker knows; any other fails, as a job without a handler does. */
        private JsonNode run(String type, JsonNode payload) throws InterruptedException {
            switch (type) {
                case "echo":
                    return payload;
                case "sleep":
                    int seconds = payload.path("seconds").asInt(-1);
                    if (seconds < 0 || seconds > MAX_SLEEP_SECONDS) {
                        throw new IllegalArgumentException("sleep: seconds must be 0.." + MAX_SLEEP_SECONDS);
                    }
                    Thread.sleep(seconds * 1000L);
                    return json.createObjectNode().put("slept", seconds);
                default:
                    throw new IllegalArgumentException("no handler for job type '" + type + "'");
            }
        }

        /** Stops claiming; waits for the running jobs up to `graceMillis`. */
        void stop(long graceMillis) throws InterruptedException {
            running = false;
            if (!stopped.await(graceMillis, TimeUnit.MILLISECONDS)) {
                Log.warn("worker stopped with " + active.get() + " jobs still running; they are requeued at its restart");
            }
        }
    }
}
