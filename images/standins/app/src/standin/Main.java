package standin;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.sql.SQLException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bouncycastle.crypto.generators.OpenBSDBCrypt;

/**
 * The reference service: one jar for every Spring service of the platform, configured as Spring Boot would be
 * by the environment the stack sets (components/apps.py) and its config tree of credentials.
 */
public final class Main {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** The edge forwards at most 1 MiB (components/edge); the service refuses more too. */
    private static final int MAX_BODY_BYTES = 1 << 20;
    private static final long TOKEN_TTL_SECONDS = 3600;
    private static final int STORE_CHECK_MILLIS = 2000;
    /** Spring Boot's graceful shutdown waits for requests in flight; the stack gives 30 s before SIGKILL. */
    private static final int SHUTDOWN_GRACE_SECONDS = 20;
    private static final Pattern JOB_PATH = Pattern.compile("/api/v1/jobs/([0-9]{1,18})");
    private static final Pattern JOB_TYPE = Pattern.compile("[a-z0-9][a-z0-9_-]{0,63}");
    /** Compared against when the user does not exist, so an unknown name costs as long as a wrong password. */
    private static final String DUMMY_HASH = OpenBSDBCrypt.generate("2a", new char[] {'x'}, new byte[16], 10);

    private final Config config;
    private final String service;
    private final Metrics metrics;
    private final Set<String> exposed;
    private final boolean showDetails;
    private final Pool pool;
    private final Jobs jobs;
    private final Jwt jwt;
    private final boolean gateway;
    private final Metrics.Timer requests;
    private final Metrics.Counter logins;
    /** Expiry (epoch seconds) of each token this replica issued, for auth_active_sessions. */
    private final ConcurrentSkipListMap<String, Long> sessions = new ConcurrentSkipListMap<>();
    private final AtomicLong sessionIds = new AtomicLong();
    private final ExecutorService checks = Executors.newVirtualThreadPerTaskExecutor();
    private volatile boolean accepting = true;

    /** HTTP status and JSON body of an answer. */
    private record Answer(int status, String body, String contentType, String uriTemplate) {
        static Answer json(int status, Object body, String uri) {
            try {
                return new Answer(status, JSON.writeValueAsString(body), "application/json", uri);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }

        static Answer error(int status, String message, String uri) {
            return json(status, Map.of("status", status, "error", message), uri);
        }
    }

    private Main(Config config) {
        this.config = config;
        this.service = config.get("spring.application.name", "application");
        this.metrics = new Metrics(config.get("management.metrics.tags.application", service));
        this.exposed = Set.of(config.get("management.endpoints.web.exposure.include", "health").split(","));
        this.showDetails = "always".equals(config.get("management.endpoint.health.show-details"));
        this.gateway = "api-gateway".equals(service);
        JvmMetrics.register(metrics);
        requests = metrics.timer("http_server_requests_seconds", "Duration of HTTP server request handling",
            Metrics.REQUEST_BUCKETS);
        logins = gateway ? metrics.counter("auth_login_attempts_total", "Login attempts, by outcome") : null;
        String url = config.get("spring.datasource.url");
        if (url != null) {
            pool = new Pool(url, config.get("spring.datasource.username"), config.get("spring.datasource.password"),
                config.getInt("spring.datasource.hikari.maximum-pool-size", 10),
                config.getInt("spring.datasource.hikari.minimum-idle", 10),
                config.getInt("spring.datasource.hikari.connection-timeout", 30_000), service, metrics);
            jobs = new Jobs(pool, JSON);
        } else {
            pool = null;
            jobs = null;
        }
        String secret = config.get("jwt.secret");
        jwt = secret == null ? null : new Jwt(secret, service, JSON);
        if (gateway && (jwt == null || jobs == null)) {
            throw new IllegalStateException("api-gateway needs jwt.secret and spring.datasource.url");
        }
        if (gateway) {
            logins.add(0, "outcome", "success");
            logins.add(0, "outcome", "failure");
            metrics.gauge("auth_active_sessions", "Unexpired tokens this replica issued", s -> {
                long now = System.currentTimeMillis() / 1000;
                sessions.values().removeIf(expiry -> expiry <= now);
                s.sample(sessions.size());
            });
        }
    }

    public static void main(String[] args) throws Exception {
        Config config = new Config(System.getenv());
        Log.level(config.get("logging.level.root"));
        Main main = new Main(config);
        main.run();
    }

    private void run() throws Exception {
        Jobs.Worker worker = null;
        if (pool != null) {
            pool.start(config.getInt("spring.datasource.hikari.initialization-fail-timeout", 1000));
            jobs.createSchema();
            if ("orchestrator".equals(service)) {
                jobs.registerOrchestratorMetrics(metrics);
            }
            String workerId = config.env("WORKER_ID");
            if (workerId != null || "worker".equals(service)) {
                int size = config.getInt("spring.datasource.hikari.maximum-pool-size", 10);
                worker = jobs.new Worker(workerId != null ? workerId : service, Math.max(1, Math.min(4, size - 1)),
                    metrics);
                worker.start();
            }
            Thread.ofPlatform().name("pool-housekeeper").daemon().start(() -> {
                while (true) {
                    try {
                        Thread.sleep(30_000);
                    } catch (InterruptedException e) {
                        return;
                    }
                    pool.fillIdle();
                }
            });
        }
        int port = config.getInt("server.port", 8080);
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 128);
        server.setExecutor(Executors.newVirtualThreadPerTaskExecutor());
        server.createContext("/", this::handle);
        server.start();
        Log.info(service + " started on port " + port + " (java " + Runtime.version() + ", max heap "
            + Runtime.getRuntime().maxMemory() / (1024 * 1024) + " MiB, java.io.tmpdir "
            + System.getProperty("java.io.tmpdir") + ")");
        Jobs.Worker running = worker;
        // SIGTERM (docker stop): refuse new work, finish what is in flight, then close the pool.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            Log.info("shutting down gracefully");
            accepting = false;
            try {
                if (running != null) {
                    running.stop(SHUTDOWN_GRACE_SECONDS * 1000L);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            server.stop(SHUTDOWN_GRACE_SECONDS);
            if (pool != null) {
                pool.close();
            }
            Log.info("shutdown complete");
        }, "shutdown"));
    }

    private void handle(HttpExchange exchange) throws IOException {
        long started = System.nanoTime();
        Answer answer;
        try {
            answer = route(exchange);
        } catch (SQLException e) {
            Log.error(exchange.getRequestMethod() + " " + exchange.getRequestURI().getPath() + ": " + e.getMessage());
            answer = Answer.error(503, "Service Unavailable", "UNKNOWN");
        } catch (BodyTooLarge e) {
            answer = Answer.error(413, "Payload Too Large", "UNKNOWN");
        } catch (RuntimeException e) {
            Log.error(exchange.getRequestMethod() + " " + exchange.getRequestURI().getPath() + ": " + e);
            answer = Answer.error(500, "Internal Server Error", "UNKNOWN");
        }
        try (exchange) {
            byte[] body = answer.body().getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", answer.contentType());
            exchange.getResponseHeaders().set("Cache-Control", "no-store");
            boolean head = "HEAD".equals(exchange.getRequestMethod());
            exchange.sendResponseHeaders(answer.status(), head ? -1 : body.length);
            if (!head) {
                try (OutputStream out = exchange.getResponseBody()) {
                    out.write(body);
                }
            }
        } finally {
            int status = answer.status();
            requests.record((System.nanoTime() - started) / 1e9, "error", "none", "exception", "none",
                "method", exchange.getRequestMethod(), "outcome", outcome(status), "status", Integer.toString(status),
                "uri", answer.uriTemplate());
        }
    }

    /** Micrometer's HTTP outcome tag. */
    private static String outcome(int status) {
        return switch (status / 100) {
            case 1 -> "INFORMATIONAL";
            case 2 -> "SUCCESS";
            case 3 -> "REDIRECTION";
            case 4 -> "CLIENT_ERROR";
            case 5 -> "SERVER_ERROR";
            default -> "UNKNOWN";
        };
    }

    private Answer route(HttpExchange exchange) throws IOException, SQLException {
        String method = exchange.getRequestMethod();
        String path = URI.create(exchange.getRequestURI().getRawPath()).normalize().getPath();
        boolean read = "GET".equals(method) || "HEAD".equals(method);
        if (path.startsWith("/actuator")) {
            return actuator(path, read);
        }
        if (!path.startsWith("/api/")) {
            return Answer.error(404, "Not Found", "NOT_FOUND");
        }
        if (gateway && "/api/v1/auth/login".equals(path)) {
            return "POST".equals(method) ? login(exchange)
                : Answer.error(405, "Method Not Allowed", "/api/v1/auth/login");
        }
        if (jwt == null) {
            return Answer.error(404, "Not Found", "NOT_FOUND");
        }
        String user = bearer(exchange);
        if (user == null) {
            return Answer.error(401, "Unauthorized", "UNKNOWN");
        }
        if (!accepting) {
            return Answer.error(503, "Service Unavailable", "UNKNOWN");
        }
        if (gateway && "/api/v1/jobs".equals(path)) {
            if ("POST".equals(method)) {
                return submit(exchange, user);
            }
            return read ? Answer.json(200, Map.of("jobs", jobs.recent(user, 50)), "/api/v1/jobs")
                : Answer.error(405, "Method Not Allowed", "/api/v1/jobs");
        }
        Matcher job = JOB_PATH.matcher(path);
        if (gateway && job.matches()) {
            if (!read) {
                return Answer.error(405, "Method Not Allowed", "/api/v1/jobs/{id}");
            }
            ObjectNode found = jobs.find(Long.parseLong(job.group(1)), user);
            return found == null ? Answer.error(404, "Not Found", "/api/v1/jobs/{id}")
                : Answer.json(200, found, "/api/v1/jobs/{id}");
        }
        return Answer.error(404, "Not Found", "NOT_FOUND");
    }

    private String bearer(HttpExchange exchange) {
        String header = exchange.getRequestHeaders().getFirst("Authorization");
        if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return null;
        }
        return jwt.verify(header.substring(7).strip());
    }

    private Answer actuator(String path, boolean read) {
        String endpoint = path.equals("/actuator") ? "" : path.substring("/actuator/".length()).split("/", 2)[0];
        if (!read || !exposed.contains(endpoint)) {
            return Answer.error(404, "Not Found", "NOT_FOUND");
        }
        String uri = "/actuator/" + endpoint;
        return switch (path) {
            case "/actuator/health" -> health();
            // Probes (MANAGEMENT_ENDPOINT_HEALTH_PROBES_ENABLED): the process lives; it is ready until SIGTERM.
            case "/actuator/health/liveness" -> Answer.json(200, Map.of("status", "UP"), uri + "/liveness");
            case "/actuator/health/readiness" -> accepting ? Answer.json(200, Map.of("status", "UP"), uri + "/readiness")
                : Answer.json(503, Map.of("status", "OUT_OF_SERVICE"), uri + "/readiness");
            case "/actuator/prometheus" -> new Answer(200, metrics.scrape(),
                "text/plain; version=0.0.4; charset=utf-8", uri);
            case "/actuator/info" -> Answer.json(200, Map.of(), uri);
            default -> Answer.error(404, "Not Found", "NOT_FOUND");
        };
    }

    /** UP only while every store the service is configured for answers (Spring's health indicators). */
    private Answer health() {
        Map<String, Future<String>> pending = new LinkedHashMap<>();
        if (pool != null) {
            pending.put("db", checks.submit(() -> {
                try (Pool.Lease lease = pool.borrow(STORE_CHECK_MILLIS)) {
                    if (!lease.connection().isValid(STORE_CHECK_MILLIS / 1000)) {
                        lease.broken();
                        return "connection not valid";
                    }
                }
                return null;
            }));
        }
        String redisHost = config.get("spring.data.redis.host");
        if (redisHost != null) {
            pending.put("redis", checks.submit(() -> {
                Redis.ping(redisHost, config.getInt("spring.data.redis.port", 6379),
                    config.get("spring.data.redis.username"), config.get("spring.data.redis.password"),
                    STORE_CHECK_MILLIS);
                return null;
            }));
        }
        // Kafka and ClickHouse are stand-ins here: only that they accept connections is checked.
        String kafka = config.get("spring.kafka.bootstrap-servers");
        if (kafka != null) {
            pending.put("kafka", checks.submit(() -> reachable(kafka.split(",")[0].strip(), 9092)));
        }
        String clickhouse = config.env("CLICKHOUSE_URL");
        if (clickhouse != null) {
            String address = clickhouse.replaceFirst("^jdbc:", "").replaceFirst("^[a-z]+://", "").split("[/?]")[0];
            pending.put("clickhouse", checks.submit(() -> reachable(address, 8123)));
        }
        boolean up = accepting;
        Map<String, Object> components = new LinkedHashMap<>();
        // The checks run side by side under one deadline: the stack's HttpCheck gives up after 3 s.
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STORE_CHECK_MILLIS + 200);
        for (var check : pending.entrySet()) {
            String problem;
            try {
                problem = check.getValue().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (Exception e) {
                problem = String.valueOf(e.getCause() != null ? e.getCause().getMessage() : e);
                check.getValue().cancel(true);
            }
            if (problem != null) {
                up = false;
                Log.warn("health: " + check.getKey() + " is down: " + problem);
            }
            components.put(check.getKey(), Map.of("status", problem == null ? "UP" : "DOWN"));
        }
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("status", up ? "UP" : "DOWN");
        if (showDetails) {
            body.put("components", components);
        }
        return Answer.json(up ? 200 : 503, body, "/actuator/health");
    }

    private static String reachable(String hostPort, int defaultPort) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        String host = colon < 0 ? hostPort : hostPort.substring(0, colon);
        int port = colon < 0 ? defaultPort : Integer.parseInt(hostPort.substring(colon + 1));
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(host, port), STORE_CHECK_MILLIS);
        }
        return null;
    }

    private Answer login(HttpExchange exchange) throws IOException, SQLException {
        JsonNode request = readJson(exchange);
        String username = request == null ? null : request.path("username").textValue();
        String password = request == null ? null : request.path("password").textValue();
        if (username == null || password == null || username.length() > 128
            || password.getBytes(StandardCharsets.UTF_8).length > 72) {
            logins.increment("outcome", "failure");
            return Answer.error(400, "username and password (at most 72 bytes) are required", "/api/v1/auth/login");
        }
        String hash = jobs.passwordHash(username);
        boolean valid = matches(hash == null ? DUMMY_HASH : hash, password) && hash != null;
        logins.increment("outcome", valid ? "success" : "failure");
        if (!valid) {
            return Answer.error(401, "Unauthorized", "/api/v1/auth/login");
        }
        String token = jwt.issue(username, TOKEN_TTL_SECONDS);
        sessions.put(Long.toString(sessionIds.incrementAndGet()), System.currentTimeMillis() / 1000 + TOKEN_TTL_SECONDS);
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("token", token);
        body.put("tokenType", "Bearer");
        body.put("expiresIn", TOKEN_TTL_SECONDS);
        return Answer.json(200, body, "/api/v1/auth/login");
    }

    /** bcrypt as Spring Security's BCryptPasswordEncoder accepts it ($2a$, $2b$, $2y$); a malformed or
     *  locked hash matches nothing. */
    private static boolean matches(String hash, String password) {
        try {
            return OpenBSDBCrypt.checkPassword(hash, password.getBytes(StandardCharsets.UTF_8));
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    private Answer submit(HttpExchange exchange, String user) throws IOException, SQLException {
        JsonNode request = readJson(exchange);
        String type = request == null ? null : request.path("type").textValue();
        if (type == null || !JOB_TYPE.matcher(type).matches()) {
            return Answer.error(400, "type: a job type of lower-case letters, digits, '-' and '_' is required",
                "/api/v1/jobs");
        }
        JsonNode payload = request.has("payload") ? request.get("payload") : JSON.createObjectNode();
        long id = jobs.submit(type, payload, user);
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("id", id);
        body.put("status", "pending");
        return Answer.json(201, body, "/api/v1/jobs");
    }

    private static final class BodyTooLarge extends RuntimeException {
        private static final long serialVersionUID = 1L;
    }

    /** The request body as a JSON object, or null when it is not one. */
    private static JsonNode readJson(HttpExchange exchange) throws IOException {
        byte[] body;
        try (InputStream in = exchange.getRequestBody()) {
            body = in.readNBytes(MAX_BODY_BYTES + 1);
        }
        if (body.length > MAX_BODY_BYTES) {
            throw new BodyTooLarge();
        }
        try {
            JsonNode node = JSON.readTree(body);
            return node != null && node.isObject() ? node : null;
        } catch (IOException e) {
            return null;
        }
    }

}
