package standin;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.SQLTransientConnectionException;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A JDBC connection pool with HikariCP's settings and metrics, as Spring Boot configures Hikari from
 * SPRING_DATASOURCE_HIKARI_*: at most maximum-pool-size connections, minimum-idle kept open, a borrower waits
 * connection-timeout (30 s by default) and then counts a timeout (hikaricp_connections_timeout_total), the
 * first connection is retried for initialization-fail-timeout before the service gives up.
 */
final class Pool implements AutoCloseable {
    static final String NAME = "HikariPool-1";
    private static final long VALIDATE_AFTER_IDLE_MILLIS = 500;

    private final String url;
    private final Properties properties = new Properties();
    private final int maximum;
    private final int minimumIdle;
    private final long connectionTimeoutMillis;
    private final Semaphore permits;
    private final ConcurrentLinkedDeque<Idle> idle = new ConcurrentLinkedDeque<>();
    private final AtomicInteger total = new AtomicInteger();
    private final AtomicInteger pending = new AtomicInteger();
    private final Metrics.Counter timeouts;
    private final Metrics.Timer acquire;
    private final Metrics.Timer usage;
    private final Metrics.Timer creation;
    private volatile boolean closed;

    private record Idle(Connection connection, long since) {
    }

    /** A borrowed connection: close() gives it back. */
    final class Lease implements AutoCloseable {
        private final Connection connection;
        private final long borrowed = System.nanoTime();
        private boolean broken;

        private Lease(Connection connection) {
            this.connection = connection;
        }

        Connection connection() {
            return connection;
        }

        /** The connection failed: closed instead of going back to the pool. */
        void broken() {
            broken = true;
        }

        @Override
        public void close() {
            usage.record((System.nanoTime() - borrowed) / 1e9, "pool", NAME);
            giveBack(connection, broken);
        }
    }

    Pool(String url, String user, String password, int maximum, int minimumIdle, long connectionTimeoutMillis,
         String application, Metrics metrics) {
        this.url = url;
        properties.setProperty("user", user == null ? "" : user);
        if (password != null) {
            properties.setProperty("password", password);
        }
        properties.setProperty("connectTimeout", "5");
        properties.setProperty("socketTimeout", "60");
        properties.setProperty("ApplicationName", application);
        this.maximum = maximum;
        this.minimumIdle = Math.min(minimumIdle, maximum);
        this.connectionTimeoutMillis = connectionTimeoutMillis;
        this.permits = new Semaphore(maximum, true);
        timeouts = metrics.counter("hikaricp_connections_timeout_total", "Connection timeout total count");
        timeouts.add(0, "pool", NAME);
        acquire = metrics.timer("hikaricp_connections_acquire_seconds", "Connection acquire time");
        usage = metrics.timer("hikaricp_connections_usage_seconds", "Connection usage time");
        creation = metrics.timer("hikaricp_connections_creation_seconds", "Connection creation time");
        metrics.gauge("hikaricp_connections", "Total connections", s -> s.sample(total.get(), "pool", NAME));
        metrics.gauge("hikaricp_connections_active", "Active connections",
            s -> s.sample(total.get() - idle.size(), "pool", NAME));
        metrics.gauge("hikaricp_connections_idle", "Idle connections", s -> s.sample(idle.size(), "pool", NAME));
        metrics.gauge("hikaricp_connections_pending", "Pending threads",
            s -> s.sample(pending.get(), "pool", NAME));
        metrics.gauge("hikaricp_connections_max", "Max connections", s -> s.sample(maximum, "pool", NAME));
        metrics.gauge("hikaricp_connections_min", "Min connections", s -> s.sample(minimumIdle, "pool", NAME));
    }

    /** Hikari's initializationFailTimeout: keep trying the first connection this long, then fail. */
    void start(long initializationFailTimeoutMillis) throws SQLException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(initializationFailTimeoutMillis);
        while (true) {
            try {
                giveBackUnchecked(create());
                break;
            } catch (SQLException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
                Log.warn(NAME + " - waiting for the database: " + e.getMessage());
                Thread.sleep(2000);
            }
        }
        fillIdle();
    }

    /** Keeps minimum-idle connections open (Hikari's house keeper); called periodically. */
    void fillIdle() {
        while (!closed && idle.size() < minimumIdle && permits.tryAcquire()) {
            try {
                if (total.get() >= maximum) {
                    return;
                }
                giveBackUnchecked(create());
            } catch (SQLException e) {
                Log.debug(NAME + " - cannot add an idle connection: " + e.getMessage());
                return;
            } finally {
                permits.release();
            }
        }
    }

    private void giveBackUnchecked(Connection connection) {
        idle.addFirst(new Idle(connection, System.nanoTime()));
    }

    Lease borrow() throws SQLException {
        return borrow(connectionTimeoutMillis);
    }

    Lease borrow(long timeoutMillis) throws SQLException {
        long started = System.nanoTime();
        pending.incrementAndGet();
        try {
            if (!permits.tryAcquire(timeoutMillis, TimeUnit.MILLISECONDS)) {
                timeouts.increment("pool", NAME);
                throw new SQLTransientConnectionException(
                    NAME + " - Connection is not available, request timed out after " + timeoutMillis + "ms.");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new SQLTransientConnectionException(NAME + " - interrupted while waiting for a connection");
        } finally {
            pending.decrementAndGet();
        }
        try {
            Connection connection = takeIdle();
            if (connection == null) {
                connection = create();
            }
            acquire.record((System.nanoTime() - started) / 1e9, "pool", NAME);
            return new Lease(connection);
        } catch (SQLException | RuntimeException e) {
            permits.release();
            throw e;
        }
    }

    private Connection takeIdle() {
        Idle candidate;
        while ((candidate = idle.pollFirst()) != null) {
            boolean fresh = System.nanoTime() - candidate.since() < VALIDATE_AFTER_IDLE_MILLIS * 1_000_000;
            try {
                if (fresh || candidate.connection().isValid(1)) {
                    return candidate.connection();
                }
            } catch (SQLException e) {
                // Not valid: closed below.
            }
            discard(candidate.connection());
        }
        return null;
    }

    private Connection create() throws SQLException {
        long started = System.nanoTime();
        Connection connection = DriverManager.getConnection(url, properties);
        total.incrementAndGet();
        creation.record((System.nanoTime() - started) / 1e9, "pool", NAME);
        return connection;
    }

    private void giveBack(Connection connection, boolean broken) {
        try {
            if (broken || closed || connection.isClosed()) {
                discard(connection);
            } else {
                if (!connection.getAutoCommit()) {
                    connection.rollback();
                    connection.setAutoCommit(true);
                }
                idle.addFirst(new Idle(connection, System.nanoTime()));
            }
        } catch (SQLException e) {
            discard(connection);
        } finally {
            permits.release();
        }
    }

    private void discard(Connection connection) {
        total.decrementAndGet();
        try {
            connection.close();
        } catch (SQLException e) {
            // Already gone.
        }
    }

    @Override
    public void close() {
        closed = true;
        Idle each;
        while ((each = idle.pollFirst()) != null) {
            discard(each.connection());
        }
    }
}
