"""The stand-in of the platform's Spring services (images/standins/app), run exactly as the prod plan defines
api-gateway, the orchestrator and a worker: same user, read-only root, dropped capabilities, tmpfs, env, files
volume, networks and healthcheck (the stack's HttpCheck class, run by the engine in the image's JVM). The stores
they need that are real here run from this host's packages in the network namespace of a container that answers
to the stores' names on the plan's data network: PostgreSQL 15 with the stack's role SQL applied as its start
script applies it, and Redis with the stack's redis.conf. Kafka is a stand-in: a TCP listener, which is all the
services check of it; the job flow goes through PostgreSQL, so Kafka's part of it is not exercised."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from platform_infra.components.postgres import ADMIN_SQL, ROLES_SQL, SUPERUSER, hba_conf, psql_variables
from platform_infra.components.zones import STORE_NETWORKS
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import parse_settings
from platform_infra.stacks.platform import SERVICE_NEEDS, WORKER_NEEDS
from tests.conftest import ON_CI, require_tool
from tests.engine.conftest import PREFIX
from tests.helpers import reveal
from tests.live.plan import CONTAINER, NETWORK, PLAN_PREFIX, VOLUME, create_container
from tests.test_postgres_roles import PG_BIN, Cluster, _as_postgres


def _local(name: str) -> str:
    return name.replace(PLAN_PREFIX, PREFIX, 1)


def _create(engine, image: str, inputs: dict) -> str:
    return create_container(engine, image, inputs, {}, rename=_local)

# Each test and the module as a whole stay well under 3 minutes once the image exists (about one minute here);
# building it (about two minutes cold, cached by its layers after) is the fixtures' part, bounded by their own
# waits, not by this.
pytestmark = [pytest.mark.live, pytest.mark.timeout(180, func_only=True)]

STANDIN = REPO_ROOT / "images" / "standins" / "app"
BASE = "platform-base:trixie"
# The containers of the prod plan this module runs, and the seed containers that fill their files volumes.
SERVICES = {"api-gateway": "orchestration-prod-api-gateway-1", "orchestrator": "orchestration-prod-orchestrator",
            "worker": "orchestration-prod-worker-1", "log-aggregator": "orchestration-prod-log-aggregator",
            "query-service": "orchestration-prod-query-service"}
HEALTHY_WITHIN_SECONDS = 90
# Meters of the Spring services (Micrometer and the platform's own): what alerts and dashboards query of them.
APP_METRIC = re.compile(r"\b((?:http_server_requests|hikaricp|orchestrator|worker|auth|jvm|process)_[a-z0-9_]+)")


def _unavailable(message: str) -> None:
    pytest.fail(message, pytrace=False) if ON_CI else pytest.skip(message)


@pytest.fixture(scope="module")
def plan() -> dict[str, dict[str, dict[str, Any]]]:
    run = run_program(load_project(REPO_ROOT, "prod"), "prod")
    resources: dict[str, dict[str, dict[str, Any]]] = {CONTAINER: {}, NETWORK: {}, VOLUME: {}}
    for resource in run.resources:
        if resource.type in resources:
            inputs = reveal(resource.inputs)
            resources[resource.type][inputs["name"]] = inputs
    return resources


def _file(plan, container: str, path: str) -> str:
    """A file the plan uploads for `container` (its seed container when it has a files volume)."""
    for name in (container, f"{container}-files"):
        for upload in plan[CONTAINER].get(name, {}).get("uploads", []):
            if upload["file"] == path:
                return (base64.b64decode(upload["contentBase64"]).decode() if "contentBase64" in upload
                        else upload["content"])
    raise KeyError(f"{container}: no upload {path}")


def _env(plan, container: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in plan[CONTAINER][container].get("envs", []))


@pytest.fixture(scope="module")
def image(engine) -> str:
    """The stand-in built from its directory FROM the trixie base, tagged with the stack's references (directly,
    until the shared builder, tests/live/images.py, builds and caches every stand-in)."""
    meta = yaml.safe_load((STANDIN / "standin.yaml").read_text())
    tags = meta["tags"]
    settings = parse_settings(json.loads(load_project(REPO_ROOT, "prod").config["platform:settings"]),
                              "Pulumi.prod.yaml")
    assert tags == [settings.image(service) for service in meta["settings_key"]]
    assert set(meta["settings_key"]) == {*SERVICE_NEEDS, "worker"}
    try:
        engine.images.get(BASE)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound
        _unavailable(f"{BASE} is missing: the image builder (tests/live/images.py) makes it with debootstrap")
    built, _ = engine.images.build(path=str(STANDIN), buildargs={"BASE": BASE}, network_mode="host", tag=tags[0],
                                   rm=True, forcerm=True)
    for tag in tags[1:]:
        repository, version = tag.rsplit(":", 1)
        built.tag(repository, version)
    return tags[0]


@dataclass
class StoreHost:
    """Where the host's stores run: the network namespace of a container on the plan's store networks that
    answers to the stores' names (postgres, redis, kafka, clickhouse), so the services reach them by those names
    as in the stack, with their definitions unchanged."""

    container: Any
    address: str

    def run(self, command: list[str]) -> subprocess.Popen:
        """`command` run on this host, inside the container's network namespace."""
        namespace = f"/proc/{self.container.attrs['State']['Pid']}/ns/net"
        return subprocess.Popen([require_tool("nsenter", "util-linux"), f"--net={namespace}", "--", *command],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def store_host(engine, image, plan) -> Iterator[StoreHost]:
    """The plan's networks (internal, as the plan has them) and the stores' namesake."""
    if os.geteuid() != 0:
        _unavailable("needs root to run the stores as their own users in a container's network namespace")
    networks, container = [], None
    try:
        for inputs in plan[NETWORK].values():
            networks.append(engine.networks.create(_local(inputs["name"]), driver=inputs["driver"],
                                                   internal=inputs.get("internal", False)))
        # Each store's name on its own network (components/zones.py), as in the stack.
        stores = {store: _local(f"orchestration-prod-{network}") for store, network in STORE_NETWORKS.items()}
        data = stores["postgres"]
        created = engine.api.create_container(
            BASE, ["sleep", "infinity"], name=f"{PREFIX}-stores", user="65534:65534",
            host_config=engine.api.create_host_config(read_only=True, cap_drop=["ALL"], network_mode=data),
            networking_config=engine.api.create_networking_config(
                {data: engine.api.create_endpoint_config(aliases=["postgres"])}))
        for store, network in stores.items():
            if network != data:
                engine.api.connect_container_to_network(created["Id"], network, aliases=[store])
        container = engine.containers.get(created["Id"])
        container.start()
        container.reload()
        yield StoreHost(container, container.attrs["NetworkSettings"]["Networks"][data]["IPAddress"])
    finally:
        if container is not None:
            container.remove(force=True)
        for network in networks:
            network.remove()


@dataclass
class PostgresServer:
    """The cluster in `directory`, listening in the stores' namespace as the official image does (`*`);
    stopped and started by tests."""

    directory: Path
    host: StoreHost
    cluster: Cluster | None = None

    def start(self) -> None:
        process = self.host.run(_as_postgres([
            str(PG_BIN / "postgres"), "-D", str(self.directory / "data"), "-p", "5432", "-c", "listen_addresses=*",
            "-c", f"unix_socket_directories={self.directory}", "-c", f"hba_file={self.directory / 'pg_hba.conf'}"]))
        self.cluster = Cluster(self.directory, 5432, process)
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", self.host.address, "-p", "5432"],
                             check=False).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.cluster is not None:
            # Fast shutdown: the services' pooled connections would hold a smart one (SIGTERM) forever.
            subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-m", "fast", "-w", "-D",
                                         str(self.directory / "data")]), check=True, capture_output=True, timeout=60)
            self.cluster.process.wait(timeout=30)
            self.cluster = None


@pytest.fixture(scope="module")
def postgres(plan, store_host) -> Iterator[PostgresServer]:
    """PostgreSQL 15, initialised as the official image does, the stack's roles applied by its start script's
    way (the superuser over the socket, the plan's secrets)."""
    if not (PG_BIN / "postgres").exists():
        _unavailable("PostgreSQL 15 not found (Debian: apt-get install postgresql-15; .ci/run installs it)")
    require_tool("runuser", "util-linux")
    secret = "/etc/platform/secrets"
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-pg-"))
    shutil.chown(directory, SUPERUSER)
    directory.chmod(0o700)
    (directory / "pwfile").write_text(_file(plan, "orchestration-prod-postgres", f"{secret}/postgres_superuser_password"))
    (directory / "pg_hba.conf").write_text(_file(plan, "orchestration-prod-postgres", "/etc/platform/pg_hba.conf"))
    database = _env(plan, "orchestration-prod-postgres")["POSTGRES_DB"]
    app_role = _env(plan, SERVICES["api-gateway"])["SPRING_DATASOURCE_USERNAME"]
    assert (directory / "pg_hba.conf").read_text() == hba_conf(database, app_role)
    for name in ("pwfile", "pg_hba.conf"):
        shutil.chown(directory / name, SUPERUSER)
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(directory / "data"), "--username", SUPERUSER,
                                 "--pwfile", str(directory / "pwfile"), "--auth-host=scram-sha-256",
                                 "--auth-local=scram-sha-256"]), check=True, capture_output=True, timeout=120)
    server = PostgresServer(directory, store_host)
    server.start()
    cluster = server.cluster
    try:
        cluster.apply(f'CREATE DATABASE "{database}";', [], database="postgres")
        cluster.apply(ROLES_SQL, psql_variables(
            database=database, app_role=app_role,
            backup_password=_file(plan, "orchestration-prod-postgres", f"{secret}/postgres_backup_password"),
            app_password=_file(plan, "orchestration-prod-postgres", f"{secret}/postgres_password"),
            exporter_password=_file(plan, "orchestration-prod-postgres", f"{secret}/postgres_exporter_password"),
            superuser_password=_file(plan, "orchestration-prod-postgres", f"{secret}/postgres_superuser_password")),
            database=database)
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class RedisServer:
    """redis-server with the stack's redis.conf, in the stores' namespace; stopped and started by tests."""

    config: Path
    host: StoreHost
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = self.host.run([require_tool("redis-server", "redis-server"), str(self.config),
                                      "--dir", str(self.config.parent), "--daemonize", "no"])
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((self.host.address, 6379), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


@pytest.fixture(scope="module")
def redis(plan, store_host) -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-redis-"))
    (directory / "redis.conf").write_text(_file(plan, "orchestration-prod-redis", "/etc/platform/redis.conf"))
    server = RedisServer(directory / "redis.conf", store_host)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# Kafka's and ClickHouse's stand-in: accepts connections on their ports and closes them (the services check
# no more of them than that they are reachable).
LISTENER = """
import selectors, socket
selector = selectors.DefaultSelector()
for port in (9092, 8123):
    selector.register(socket.create_server(("0.0.0.0", port)), selectors.EVENT_READ)
while True:
    for key, _ in selector.select():
        key.fileobj.accept()[0].close()
"""


@pytest.fixture(scope="module")
def listeners(store_host) -> Iterator[None]:
    process = store_host.run([sys.executable, "-c", LISTENER])
    _until(lambda: _connects(store_host.address, 8123) or process.poll() is not None, 15, "no listeners")
    assert process.poll() is None
    yield
    process.terminate()
    process.wait(timeout=15)


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def services(engine, image, plan, store_host, postgres, redis, listeners) -> Iterator[dict[str, Any]]:
    """The plan's containers (files volume filled by its seed container, as the runtime does), started."""
    containers, volumes = {}, []
    try:
        for service, name in SERVICES.items():
            seed = f"orchestration-prod-{service}-files"
            volumes.append(engine.volumes.create(_local(seed)))
            containers[seed] = engine.containers.get(_create(engine, image, plan[CONTAINER][seed]))
            containers[service] = engine.containers.get(_create(engine, image, plan[CONTAINER][name]))
        for service in SERVICES:
            containers[service].start()
        yield containers
    finally:
        for container in containers.values():
            container.remove(force=True)
        for volume in volumes:
            volume.remove(force=True)


def _address(container) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][_local("orchestration-prod-scrape")]["IPAddress"]


def _http(container, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{_address(container)}:8080{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_the_stack_healthcheck_turns_each_service_healthy(services, plan):
    started = time.monotonic()
    for service in SERVICES:
        container = services[service]

        def healthy(container=container) -> bool:
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            return container.attrs["State"]["Health"]["Status"] == "healthy"

        _until(healthy, HEALTHY_WITHIN_SECONDS - (time.monotonic() - started),
               f"{service} not healthy within {HEALTHY_WITHIN_SECONDS}s: {container.logs().decode()[-3000:]}")
        # The engine ran the plan's own check: the stack's HttpCheck class, in this image's JVM.
        assert container.attrs["Config"]["Healthcheck"]["Test"] == plan[CONTAINER][SERVICES[service]][
            "healthcheck"]["tests"]
        assert container.attrs["State"]["Health"]["Log"][-1]["ExitCode"] == 0


def test_the_jvm_takes_the_stack_options(services, plan):
    """JAVA_TOOL_OPTIONS from the env: the heap is 75% of the memory limit, temp files go to /var/tmp/jvm."""
    logs = services["api-gateway"].logs().decode()
    assert "Picked up JAVA_TOOL_OPTIONS: -XX:MaxRAMPercentage=75.0" in logs
    heap = int(re.search(r"max heap (\d+) MiB", logs).group(1))
    limit = int(plan[CONTAINER][SERVICES["api-gateway"]]["memory"])
    assert 0.65 * limit < heap <= 0.75 * limit
    assert "java.io.tmpdir /var/tmp/jvm" in logs


def test_health_is_down_while_redis_cannot_be_reached_with_the_stack_credential(services, redis):
    gateway = services["api-gateway"]
    assert _http(gateway, "GET", "/actuator/health") == (200, '{"status":"UP"}')
    redis.stop()
    try:
        assert _http(gateway, "GET", "/actuator/health") == (503, '{"status":"DOWN"}')
        # Reachable, but with another password: the credential file no longer opens it.
        other = redis.config.with_name("other.conf")
        other.write_text(re.sub(r"(?m)^(user api-gateway reset on) #\w+", r"\1 >another-password",
                                redis.config.read_text()))
        stack_config, redis.config = redis.config, other
        redis.start()
        assert _http(gateway, "GET", "/actuator/health") == (503, '{"status":"DOWN"}')
        redis.stop()
        redis.config = stack_config
    finally:
        if redis.process is None:
            redis.start()
    assert _http(gateway, "GET", "/actuator/health") == (200, '{"status":"UP"}')


def test_health_is_down_while_postgres_is_down(services, postgres):
    gateway = services["api-gateway"]
    postgres.stop()
    try:
        assert _http(gateway, "GET", "/actuator/health") == (503, '{"status":"DOWN"}')
    finally:
        postgres.start()
    # The pool drops the connections the restart broke and opens new ones.
    assert _http(gateway, "GET", "/actuator/health") == (200, '{"status":"UP"}')


@pytest.fixture(scope="module")
def admin_password(services, postgres, plan) -> str:
    """The stack's admin step: once the service has created its users table, postgres_app_admin.sql sets the
    generated password's bcrypt ($2a$, as the random provider's bcrypt_hash gives it)."""
    password = "generated-Admin-Password-42"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()
    database = _env(plan, "orchestration-prod-postgres")["POSTGRES_DB"]
    _until(lambda: _http(services["api-gateway"], "GET", "/actuator/health")[0] == 200, 60, "api-gateway not up")
    postgres.cluster.apply(ADMIN_SQL, ["-v", f"admin_bcrypt={hashed}"], database=database)
    return password


def test_the_seeded_admin_cannot_log_in_before_the_stack_sets_its_password(services):
    status, _ = _http(services["api-gateway"], "POST", "/api/v1/auth/login",
                      {"username": "admin", "password": "admin123"})
    assert status == 401


def test_login_with_the_admin_credential_and_nothing_else(services, admin_password):
    gateway = services["api-gateway"]
    status, body = _http(gateway, "POST", "/api/v1/auth/login", {"username": "admin", "password": admin_password})
    assert status == 200, body
    token = json.loads(body)["token"]
    assert _http(gateway, "GET", "/api/v1/jobs", token=token)[0] == 200
    assert _http(gateway, "POST", "/api/v1/auth/login", {"username": "admin", "password": "wrong"})[0] == 401
    assert _http(gateway, "POST", "/api/v1/auth/login", {"username": "nobody", "password": admin_password})[0] == 401
    assert _http(gateway, "GET", "/api/v1/jobs")[0] == 401
    assert _http(gateway, "POST", "/api/v1/jobs", {"type": "echo"})[0] == 401
    header, claims, _ = token.split(".")
    assert _http(gateway, "GET", "/api/v1/jobs", token=f"{header}.{claims}.{'A' * 43}")[0] == 401


@pytest.fixture(scope="module")
def token(services, admin_password) -> str:
    status, body = _http(services["api-gateway"], "POST", "/api/v1/auth/login",
                         {"username": "admin", "password": admin_password})
    assert status == 200, body
    return json.loads(body)["token"]


def test_a_submitted_job_is_processed_by_the_worker(services, token):
    gateway = services["api-gateway"]
    status, body = _http(gateway, "POST", "/api/v1/jobs", {"type": "echo", "payload": {"n": 42}}, token=token)
    assert status == 201, body
    job = json.loads(body)["id"]

    def done() -> dict[str, Any] | None:
        status, body = _http(gateway, "GET", f"/api/v1/jobs/{job}", token=token)
        assert status == 200, body
        state = json.loads(body)
        return state if state["status"] == "succeeded" else None

    state = _until(done, 30, f"job {job} not processed: {services['worker'].logs().decode()[-2000:]}")
    assert state["workerId"] == "worker-1" and state["result"] == {"n": 42} and state["finishedAt"]


def _scrape(container) -> dict[str, dict[tuple, float]]:
    status, text = _http(container, "GET", "/actuator/prometheus")
    assert status == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        samples.setdefault(family.name, {})  # dashboards' texts name a histogram or summary by its family
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _alert_rules(plan) -> list[dict[str, Any]]:
    """The alert rules the prod stack gives Prometheus."""
    rules = yaml.safe_load(_file(plan, "orchestration-prod-prometheus", "/etc/platform/rules/alerts.yml"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_prometheus_has_what_alerts_and_dashboards_query(services, token, plan):
    scrapes = {service: _scrape(services[service]) for service in SERVICES}
    queried = {name for rule in _alert_rules(plan) for name in APP_METRIC.findall(rule["expr"])}
    queried |= {name for upload in plan[CONTAINER]["orchestration-prod-grafana-files"]["uploads"]
                if upload["file"].startswith("/etc/platform/dashboards/")
                for name in APP_METRIC.findall(upload["content"])}
    assert {"http_server_requests_seconds_count", "hikaricp_connections_timeout_total",
            "orchestrator_jobs_completed_total", "auth_login_attempts_total", "jvm_memory_used_bytes"} <= queried
    exposed = {name for samples in scrapes.values() for name in samples}
    assert queried - exposed == set()

    def total(service: str, name: str, **labels: str) -> float:
        return sum(value for key, value in scrapes[service].get(name, {}).items() if set(labels.items()) <= set(key))

    # Real values: the requests served, the JVM's memory, the pool, the jobs.
    assert total("api-gateway", "http_server_requests_seconds_count", uri="/api/v1/jobs", status="201",
                 method="POST", outcome="SUCCESS", application="api-gateway") >= 1
    assert total("api-gateway", "auth_login_attempts_total", outcome="success") >= 1
    assert total("api-gateway", "auth_login_attempts_total", outcome="failure") >= 1
    for service in SERVICES:
        assert 0 < total(service, "jvm_memory_used_bytes", area="heap") < total(service, "jvm_memory_max_bytes",
                                                                                 area="heap")
        # A pool where the service needs PostgreSQL, with no timeout (DatabaseConnectionTimeouts).
        pool = "postgres" in (WORKER_NEEDS if service == "worker" else SERVICE_NEEDS[service])
        assert (total(service, "hikaricp_connections_max", pool="HikariPool-1") > 0) == pool
        assert total(service, "hikaricp_connections_timeout_total") == 0
        # No server error outside the actuator (HighErrorRate).
        assert not [key for key in scrapes[service]["http_server_requests_seconds_count"]
                    if dict(key)["status"].startswith("5") and not dict(key)["uri"].startswith("/actuator")]
    assert total("orchestrator", "orchestrator_jobs_completed_total", status="succeeded") >= 1
    assert total("orchestrator", "orchestrator_jobs_completed_total", status="failed") == 0
    assert total("worker", "worker_job_slots") >= 1


@pytest.fixture(scope="module")
def prometheus(services, plan) -> Iterator[str]:
    """A real Prometheus scraping the three services every second, with the stack's alert rules."""
    binary = require_tool("prometheus")
    directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-prometheus-"))
    (directory / "alerts.yml").write_text(
        _file(plan, "orchestration-prod-prometheus", "/etc/platform/rules/alerts.yml"))
    # As the stack's prometheus.yml: a job per service, the `service` label the rules aggregate by.
    (directory / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(directory / "alerts.yml")],
        "scrape_configs": [{"job_name": service, "metrics_path": "/actuator/prometheus",
                            "static_configs": [{"targets": [f"{_address(services[service])}:8080"],
                                                "labels": {"service": service}}]} for service in SERVICES],
    }))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert process.poll() is None, "Prometheus exited"
            try:
                return urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200
            except OSError:
                return False

        _until(ready, 30, "Prometheus not ready")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_no_alert_of_the_stack_holds_on_the_healthy_services(prometheus, services, token, plan):
    """Prometheus scrapes the services and evaluates the stack's rules: every alert on what the services expose
    has data to work on (no metric missing) and stays false (no value that would make it fire)."""
    gateway = services["api-gateway"]
    for _ in range(5):
        assert _http(gateway, "GET", "/api/v1/jobs", token=token)[0] == 200
    _until(lambda: len(_query(prometheus, "count_over_time(up[1m]) >= 5 and up == 1")) == len(SERVICES), 30,
           f"not every service scraped: {_query(prometheus, 'up')}")
    rules = [rule for rule in _alert_rules(plan) if "alert" in rule
             and (APP_METRIC.search(rule["expr"]) or rule["expr"] == "up == 0")]
    assert {"ServiceDown", "HighErrorRate", "DatabaseConnectionTimeouts", "JobFailureRateHigh", "HighLatencyP95",
            "UnusualLoginActivity"} <= {rule["alert"] for rule in rules}
    for rule in rules:
        for name in APP_METRIC.findall(rule["expr"]):
            assert _query(prometheus, f"count({name})"), f"{rule['alert']}: no {name} scraped"
        assert _query(prometheus, rule["expr"]) == [], f"{rule['alert']} holds: {rule['expr']}"
    loaded = json.loads(urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10).read())
    assert {rule["health"] for group in loaded["data"]["groups"] for rule in group["rules"]} == {"ok"}


def test_sigterm_stops_gracefully(services):
    worker = services["worker"]
    started = time.monotonic()
    worker.stop(timeout=30)
    worker.reload()
    # The JVM's exit on SIGTERM after its shutdown hooks ran (128 + 15), well before the stack's grace ends.
    assert worker.attrs["State"]["ExitCode"] == 143
    assert time.monotonic() - started < 25
    assert "shutdown complete" in worker.logs().decode()
