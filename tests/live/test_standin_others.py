"""The stand-ins for what Debian cannot provide (Kafka, the Kafka exporter, ClickHouse, clickhouse-backup,
Grafana, cAdvisor; images/standins/*), built FROM platform-base:trixie, tagged with the stack's own image
references and run on the real engine exactly as the prod plan defines each container (user, read-only root,
capabilities, tmpfs, files volume and uploads, env, entrypoint, command, healthcheck, mounts). Each must turn
healthy under the stack's own healthcheck and do what the stack relies on.

STAND-INS, not the real software: every report of these tests says so (see STANDINS below and the summary the
module prints)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from platform_infra.components.backup.jobs import API_ALIAS, CLICKHOUSE_BACKUP_CONFIG
from platform_infra.components.monitoring.component import PROMETHEUS_CONFIG, RULES_FILE
from platform_infra.infra.settings import Images
from tests.conftest import require_tool
from tests.engine.conftest import PREFIX, _unavailable
from tests.live.plan import (
    CONTAINER,
    ENGINE_SOCKET,
    MIB,
    PLAN_PREFIX,
    create_container,
    daemon_nofile_limit,
    load_prod_plan,
    uploads_archive,
)


@pytest.fixture(scope="module")
def prod_plan():
    return load_prod_plan()


def _local(name: str) -> str:
    return name.replace(PLAN_PREFIX, PREFIX, 1)


def _create(engine, image: str, inputs: dict, ports: dict) -> str:
    return create_container(engine, image, inputs, ports, rename=_local)

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

STANDINS_DIR = Path(__file__).resolve().parents[2] / "images" / "standins"
# The plan's services (container names without the plan's prefix), each run from images/standins/<service>.
SERVICES = ("kafka", "kafka-exporter", "clickhouse", "clickhouse-backup", "grafana", "cadvisor")
# Real software the stand-ins need, run as the plan defines it: cAdvisor reaches the engine through HAProxy.
REAL = {"cadvisor-socket-proxy": "haproxy"}
HEALTHY_WITHIN = 90
# Each module run gets names of its own, apart from the engine tests' (which share PREFIX).
OWN_PREFIX = f"{PLAN_PREFIX}-standins"


def standin(directory: str) -> dict[str, Any]:
    return yaml.safe_load((STANDINS_DIR / directory / "standin.yaml").read_text())


STANDINS = {directory: standin(directory) for directory in SERVICES}


@pytest.fixture(scope="module")
def images(engine) -> dict[str, str]:
    """Each stand-in built FROM its suite's platform-base and tagged with the stack's reference."""
    tags = {}
    for directory, meta in STANDINS.items():
        assert meta["real"] is None and meta["standin"], f"{directory}: a stand-in names what it imitates"
        base = f"platform-base:{meta['suite']}"
        if not engine.images.list(name=base):
            _unavailable(f"{base} is not on the engine (the image builder makes it)")
        tag = getattr(Images(), meta["settings_key"])
        engine.images.build(path=str(STANDINS_DIR / directory), buildargs={"BASE": base}, network_mode="host",
                            tag=tag, rm=True)
        tags[directory] = tag
    for service, directory in REAL.items():
        meta = standin(directory)
        assert meta["real"] and meta["standin"] is None, f"{directory}: the real software"
        tag = getattr(Images(), meta["settings_key"])
        engine.images.build(path=str(STANDINS_DIR / directory), buildargs={"BASE": f"platform-base:{meta['suite']}"},
                            network_mode="host", tag=tag, rm=True)
        tags[service] = tag
    print("\nSTAND-INS (not the real software):")
    for directory, meta in STANDINS.items():
        print(f"  {tags[directory]}: stand-in: {meta['standin']}")
    return tags


def _own(inputs: dict[str, Any]) -> dict[str, Any]:
    """The definition under this module's names: its container, networks and volumes; a ulimit above the
    daemon's own (a property of this host: runc cannot grant it) lowered to it, and said so."""
    rename = lambda name: name.replace(PLAN_PREFIX, OWN_PREFIX, 1)
    limit = daemon_nofile_limit()
    ulimits = [{**u, "soft": min(int(u["soft"]), limit), "hard": min(int(u["hard"]), limit)}
               for u in inputs.get("ulimits", [])]
    return {**inputs, "name": rename(inputs["name"]), **({"ulimits": ulimits} if ulimits else {}),
            "networksAdvanced": [{**n, "name": rename(n["name"])} for n in inputs.get("networksAdvanced", [])],
            "volumes": [{**v, "volumeName": rename(v["volumeName"])} for v in inputs.get("volumes", [])]}


def _service(inputs: dict[str, Any]) -> str:
    return inputs["name"].removeprefix(f"{PLAN_PREFIX}-").removesuffix("-files")


def _upload(inputs: dict[str, Any], path: str) -> str:
    upload = next(u for u in inputs["uploads"] if u["file"] == path)
    return base64.b64decode(upload["contentBase64"]).decode() if "contentBase64" in upload else upload["content"]


class Stack:
    def __init__(self, engine, definitions: dict[str, dict[str, Any]], containers: dict[str, str]) -> None:
        self.engine, self.definitions, self.ids = engine, definitions, containers

    def container(self, name: str):
        return self.engine.containers.get(self.ids[f"{PLAN_PREFIX}-{name}"])

    def env(self, name: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.definitions[f"{PLAN_PREFIX}-{name}"].get("envs", []))

    def file(self, name: str, path: str) -> str:
        for key in (f"{PLAN_PREFIX}-{name}", f"{PLAN_PREFIX}-{name}-files"):
            if any(u["file"] == path for u in self.definitions.get(key, {}).get("uploads", [])):
                return _upload(self.definitions[key], path)
        raise KeyError(path)

    def run(self, name: str, command: list[str], user: str | None = None) -> tuple[int, str]:
        code, output = self.container(name).exec_run(command, user=user or "")
        return code, output.decode(errors="replace")

    def http(self, name: str, url: str, *, auth: tuple[str, str] | None = None,
             body: dict | None = None) -> tuple[int, str]:
        """An HTTP request from inside the container (the networks are internal): status and body."""
        script = ("import base64,json,sys,urllib.request as u,urllib.error as e\n"
                  "url,auth,body=sys.argv[1],sys.argv[2],sys.argv[3]\n"
                  "r=u.Request(url,data=body.encode() or None,headers={'Content-Type':'application/json'})\n"
                  "auth and r.add_header('Authorization','Basic '+base64.b64encode(auth.encode()).decode())\n"
                  "try:\n  x=u.urlopen(r,timeout=10); print(x.status); print(x.read().decode())\n"
                  "except e.HTTPError as h:\n  print(h.code); print(h.read().decode())\n")
        code, output = self.run(name, ["python3", "-c", script, url, ":".join(auth) if auth else "",
                                       json.dumps(body) if body is not None else ""])
        assert code == 0, output
        status, _, text = output.partition("\n")
        return int(status), text

    def wait_healthy(self, name: str, start: float) -> float:
        """Seconds from `start` (time.monotonic) until the container is healthy."""
        container = self.container(name)
        while True:
            container.reload()
            state = container.attrs["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return time.monotonic() - start
            assert state["Status"] == "running", (name, state, container.logs().decode(errors="replace")[-3000:])
            assert time.monotonic() - start < HEALTHY_WITHIN, (
                f"{name} not healthy within {HEALTHY_WITHIN}s", state.get("Health"),
                container.logs().decode(errors="replace")[-3000:])
            time.sleep(1)


@pytest.fixture(scope="module")
def stack(engine, images, prod_plan):
    """The stand-ins' containers of the prod plan, started in the plan's order of dependence and healthy."""
    definitions = {inputs["name"]: inputs for inputs in prod_plan[CONTAINER]
                   if _service(inputs) in (*SERVICES, *REAL)}
    assert {_service(inputs) for inputs in definitions.values()} == {*SERVICES, *REAL}
    networks = {n["name"] for inputs in definitions.values() for n in _own(inputs).get("networksAdvanced", [])}
    volumes = {v["volumeName"] for inputs in definitions.values() for v in _own(inputs).get("volumes", [])}
    created_networks, containers = [], {}
    try:
        for network in sorted(networks):
            created_networks.append(engine.api.create_network(_local(network), driver="bridge", internal=True)["Id"])
        limit = daemon_nofile_limit()
        for name, inputs in definitions.items():
            for ulimit in inputs.get("ulimits", []):
                if int(ulimit["hard"]) > limit:
                    print(f"\n{name}: {ulimit['name']} {ulimit['hard']:g} lowered to the daemon's {limit} on this host")
        # Files containers first: their uploads fill the files volumes the services mount.
        for name, inputs in sorted(definitions.items(), key=lambda item: not item[0].endswith("-files")):
            containers[name] = _create(engine, images[_service(inputs)], _own(inputs), {})
        result = Stack(engine, definitions, containers)
        healthy = {}
        # What each waits for in the plan: the exporter for Kafka, clickhouse-backup for ClickHouse.
        for wave in (("cadvisor-socket-proxy",), ("kafka", "clickhouse", "grafana", "cadvisor"),
                     ("kafka-exporter", "clickhouse-backup")):
            started = time.monotonic()
            for name in wave:
                engine.api.start(containers[f"{PLAN_PREFIX}-{name}"])
            for name in wave:
                healthy[name] = result.wait_healthy(name, started)
        print(f"\n{'component':20} {'image':60} healthy after")
        for name, seconds in healthy.items():
            print(f"{name:20} {images[name] + ('' if name in REAL else ' (stand-in)'):60} {seconds:5.1f} s")
        yield result
    finally:
        for container in containers.values():
            engine.api.remove_container(container, force=True, v=True)
        for volume in volumes:
            try:
                engine.api.remove_volume(_local(volume), force=True)
            except Exception:  # noqa: BLE001, S110 - a volume no container mounted was never created
                pass
        for network in created_networks:
            engine.api.remove_network(network)


def declared_topics(stack: Stack) -> dict[str, int]:
    return {name: int(count) for name, _, count in
            (pair.rpartition(":") for pair in stack.env("kafka")["PLATFORM_KAFKA_TOPICS"].split())}


def test_kafka_runs_the_stacks_script_which_creates_the_declared_topics(stack):
    topics = declared_topics(stack)
    assert topics
    admin = ["/opt/kafka/bin/kafka-topics.sh", "--bootstrap-server", "127.0.0.1:9092",
             "--command-config", "/etc/platform/secrets/kafka_admin.properties"]
    code, output = stack.run("kafka", [*admin, "--list"])
    assert (code, sorted(output.split())) == (0, sorted(topics))
    for topic, partitions in topics.items():
        code, output = stack.run("kafka", [*admin, "--describe", "--topic", topic])
        assert code == 0 and f"PartitionCount: {partitions}\t" in output, output
    # The topics live in the kafka-data volume, as partition directories written by uid 1000.
    code, output = stack.run("kafka", ["sh", "-c", "id -u; ls /var/lib/kafka/data"])
    assert code == 0 and output.split()[0] == "1000"
    assert {f"{topic}-{p}" for topic, n in topics.items() for p in range(n)} <= set(output.split())
    assert "platform: topics ready:" in stack.container("kafka").logs().decode()


def test_kafka_refuses_a_wrong_admin_password(stack):
    wrong = stack.file("kafka", "/etc/platform/secrets/kafka_admin.properties").replace(
        'password="', 'password="not-', 1)
    write = "import sys; open('/tmp/wrong.properties', 'w').write(sys.argv[1])"
    assert stack.run("kafka", ["python3", "-c", write, wrong])[0] == 0
    code, output = stack.run("kafka", ["/opt/kafka/bin/kafka-topics.sh", "--bootstrap-server", "127.0.0.1:9092",
                                       "--command-config", "/tmp/wrong.properties", "--list"])
    assert code == 1 and "Authentication failed" in output, output


def test_kafka_exporter_exports_the_brokers_and_the_topics_partitions(stack):
    status, metrics = stack.http("kafka-exporter", "http://127.0.0.1:9308/metrics")
    assert status == 200 and re.search(r"^kafka_brokers 1$", metrics, re.MULTILINE), metrics
    for topic, partitions in declared_topics(stack).items():
        assert f'kafka_topic_partitions{{topic="{topic}"}} {partitions}\n' in metrics
    assert stack.http("kafka-exporter", "http://127.0.0.1:9308/healthz") == (200, "ok\n")
    # No consumer group exists on the stand-in broker: no lag series, so KafkaConsumerLagHigh cannot fire on it.
    assert "kafka_consumergroup_lag" not in metrics


def test_kafka_exporter_exits_when_its_login_is_refused(stack, engine, images):
    inputs = stack.definitions[f"{PLAN_PREFIX}-kafka-exporter"]
    command = inputs["entrypoints"][-1]
    kafka_server = re.search(r"--kafka\.server=(\S+)", command).group(1)
    network = _local(next(n["name"] for n in _own(inputs)["networksAdvanced"] if n["name"].endswith("-store-kafka")))
    output = engine.containers.run(
        images["kafka-exporter"], [f"--kafka.server={kafka_server}", "--sasl.enabled", "--sasl.mechanism=plain",
                                   "--sasl.username=platform", "--sasl.password=wrong"],
        user="65534:65534", network=network, remove=False, detach=True)
    try:
        assert output.wait(timeout=30)["StatusCode"] == 255
        assert "Authentication failed" in output.logs().decode()
    finally:
        output.remove(force=True)


def test_clickhouse_lets_each_user_in_from_its_own_addresses_and_writes_its_logs(stack):
    """`default` from loopback only (the entrypoint created CLICKHOUSE_DB through it), clickhouse-backup's user
    from clickhouse-backup's container only, with the password of its config file."""
    query = "http://{}:8123/?query=SHOW%20DATABASES"
    status, databases = stack.http("clickhouse", query.format("127.0.0.1"), auth=("default", ""))
    assert status == 200 and stack.env("clickhouse")["CLICKHOUSE_DB"] in databases.split()
    backup = ("clickhouse-backup", yaml.safe_load(stack.file("clickhouse-backup", CLICKHOUSE_BACKUP_CONFIG))[
        "clickhouse"]["password"])
    status, databases = stack.http("clickhouse-backup", query.format("clickhouse"), auth=backup)
    assert status == 200 and "logs" in databases.split(), databases
    for where, host, refused in (("clickhouse", "127.0.0.1", backup), ("clickhouse-backup", "clickhouse", ("default", "")),
                                 ("clickhouse-backup", "clickhouse", (backup[0], backup[1] + "x"))):
        status, text = stack.http(where, query.format(host), auth=refused)
        assert status == 401 and "AUTHENTICATION_FAILED" in text, (where, refused[0], text)
    # The server runs as clickhouse (101), and writes its log where the backup job archives it.
    code, output = stack.run("clickhouse", ["sh", "-c", "stat -c %u /proc/1; ls /var/log/clickhouse-server"])
    assert code == 0 and output.split()[0] == "101" and "clickhouse-server.log" in output.split(), output
    assert stack.run("clickhouse", ["stat", "-c", "%u", "/var/lib/clickhouse/data"])[1].strip() == "101"
    status, metrics = stack.http("clickhouse", "http://127.0.0.1:9363/metrics")
    assert status == 200 and "ClickHouseAsyncMetrics_Uptime" in metrics


def api_login(stack: Stack) -> tuple[str, str]:
    """clickhouse-backup's API account, from the config file the plan gives it."""
    api = yaml.safe_load(stack.file("clickhouse-backup", CLICKHOUSE_BACKUP_CONFIG))["api"]
    return api["username"], api["password"]


API = f"http://{API_ALIAS}:7171"


def test_clickhouse_backup_reports_its_create_remote_in_status_and_metrics(stack):
    login = api_login(stack)
    deadline = time.monotonic() + 30
    while True:
        status, rows = stack.http("clickhouse-backup", f"{API}/backup/status", auth=login)
        finished = [json.loads(row) for row in rows.splitlines() if row.strip()]
        if any(row["status"] != "in progress" for row in finished) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 200 and finished and finished[0]["command"].startswith("create_remote "), rows
    status, metrics = stack.http("clickhouse-backup", f"{API}/metrics", auth=login)
    values = dict(re.findall(r"^(clickhouse_backup_last_create_remote_\w+) (\S+)$", metrics, re.MULTILINE))
    assert set(values) >= {"clickhouse_backup_last_create_remote_status", "clickhouse_backup_last_create_remote_finish"}
    # It logged in to ClickHouse with the stack's user and password file, then tried the store: no store here
    # (the live stack has it), so the metric says failed, as upstream's would, and the status row says why.
    assert finished[0]["status"] == "error" and "s3 PUT" in finished[0]["error"], finished
    assert values["clickhouse_backup_last_create_remote_status"] == "0"
    assert abs(float(values["clickhouse_backup_last_create_remote_finish"]) - time.time()) < 120


def test_clickhouse_backups_api_answers_its_login_only_and_only_on_its_alias(stack):
    """Every route, /metrics too, refuses a request without the account or with a wrong password (401), and
    nothing listens on loopback: the API is bound to its alias's address on the scrape network."""
    user, password = api_login(stack)
    assert len(password) >= 32
    for path in ("/backup/status", "/metrics", "/backup/list", "/health"):
        assert stack.http("clickhouse-backup", f"{API}{path}")[0] == 401, path
        assert stack.http("clickhouse-backup", f"{API}{path}", auth=(user, password + "x"))[0] == 401, path
    assert stack.http("clickhouse-backup", f"{API}/backup/delete/remote/x", auth=(user, "no"), body={})[0] == 401
    _code, output = stack.run("clickhouse-backup", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                                   "http://127.0.0.1:7171/backup/status"])
    assert output == "000", output  # connection refused: not listening there
    assert stack.http("clickhouse-backup", f"{API}/backup/version", auth=(user, password))[0] == 200



def test_grafana_logs_in_the_admin_and_lists_the_provisioned_dashboards(stack):
    admin = (stack.env("grafana")["GF_SECURITY_ADMIN_USER"],
             stack.file("grafana", "/etc/platform/secrets/grafana_admin_password"))
    assert stack.http("grafana", "http://127.0.0.1:3000/login", body={"user": admin[0], "password": admin[1]})[0] == 200
    assert stack.http("grafana", "http://127.0.0.1:3000/api/search", auth=(admin[0], admin[1] + "x"))[0] == 401
    status, found = stack.http("grafana", "http://127.0.0.1:3000/api/search", auth=admin)
    dashboards = [json.loads(text) for path, text in
                  ((u["file"], _upload(stack.definitions[f"{PLAN_PREFIX}-grafana-files"], u["file"]))
                   for u in stack.definitions[f"{PLAN_PREFIX}-grafana-files"]["uploads"])
                  if path.endswith(".json")]
    assert status == 200 and dashboards
    assert sorted(d["title"] for d in json.loads(found)) == sorted(d["title"] for d in dashboards)
    status, sources = stack.http("grafana", "http://127.0.0.1:3000/api/datasources", auth=admin)
    assert status == 200 and [s["type"] for s in json.loads(sources)] == ["prometheus"]
    logs = stack.container("grafana").logs().decode()
    assert "Getting secret GF_SECURITY_ADMIN_PASSWORD from" in logs


def test_grafana_takes_a_rotated_admin_password_at_the_next_start(stack, engine):
    """The stack's entrypoint resets the admin password from its file with `grafana cli` before /run.sh
    (Grafana applies GF_SECURITY_ADMIN_PASSWORD only when it creates the admin)."""
    files = stack.definitions[f"{PLAN_PREFIX}-grafana-files"]
    user, path = stack.env("grafana")["GF_SECURITY_ADMIN_USER"], "/etc/platform/secrets/grafana_admin_password"
    old, new = stack.file("grafana", path), "rotated-" + stack.file("grafana", path)
    upload = next(u for u in files["uploads"] if u["file"] == path)
    rotated = {**{k: v for k, v in upload.items() if k != "contentBase64"}, "content": new}
    engine.api.put_archive(stack.ids[files["name"]], "/", uploads_archive([rotated]))
    stack.container("grafana").restart(timeout=10)
    stack.wait_healthy("grafana", time.monotonic())
    assert stack.http("grafana", "http://127.0.0.1:3000/api/user", auth=(user, new))[0] == 200
    assert stack.http("grafana", "http://127.0.0.1:3000/api/user", auth=(user, old))[0] == 401
    assert "platform: Grafana admin password applied" in stack.container("grafana").logs().decode()


def test_cadvisor_measures_the_running_containers(stack, engine):
    status, metrics = stack.http("cadvisor", "http://127.0.0.1:8080/metrics")
    assert status == 200
    kafka = _local(_own(stack.definitions[f"{PLAN_PREFIX}-kafka"])["name"])
    limit = int(stack.definitions[f"{PLAN_PREFIX}-kafka"]["memory"]) * MIB

    def value(metric: str) -> float:
        match = re.search(rf'^{metric}{{[^}}]*name="{re.escape(kafka)}"[^}}]*}} (\S+)$', metrics, re.MULTILINE)
        assert match, (metric, metrics[:2000])
        return float(match.group(1))

    assert value("container_spec_memory_limit_bytes") == limit
    assert 0 < value("container_memory_working_set_bytes") <= value("container_memory_usage_bytes") < limit
    assert value("container_cpu_usage_seconds_total") > 0
    cpus = float(stack.definitions[f"{PLAN_PREFIX}-kafka"]["cpus"])
    assert value("container_spec_cpu_quota") / value("container_spec_cpu_period") == pytest.approx(cpus)
    assert stack.http("cadvisor", "http://127.0.0.1:8080/healthz") == (200, "ok\n")


ENGINE = "http://cadvisor-socket-proxy:2375"


def test_cadvisors_proxy_passes_its_read_calls_only(stack, engine):
    """From inside cAdvisor, through its proxy (HAProxy, the plan's haproxy.cfg, as the plan runs it: user
    99:<socket group>, read-only, no capability): cAdvisor's calls pass, every other call gets 403."""
    kafka = stack.ids[f"{PLAN_PREFIX}-kafka"]
    passed = {path: stack.http("cadvisor", ENGINE + path)[0]
              for path in ("/_ping", "/v1.41/info", "/version", f"/v1.41/containers/{kafka}/json")}
    assert passed == dict.fromkeys(passed, 200)
    refused = {f"{method} {path}": stack.http("cadvisor", ENGINE + path, body={} if method == "POST" else None)[0]
               for method, path in (("GET", "/v1.41/containers/json"), ("GET", "/v1.41/secrets"),
                                    ("GET", "/v1.41/images/json"), ("POST", "/v1.41/containers/create"),
                                    ("POST", f"/v1.41/containers/{kafka}/stop"), ("GET", "/v1.41/services"),
                                    ("GET", f"/v1.41/containers/{kafka}/../../secrets"))}
    print("\ncadvisor-socket-proxy:", passed, refused)
    assert refused == dict.fromkeys(refused, 403)
    assert engine.containers.get(kafka).status == "running"
    proxy = stack.container("cadvisor-socket-proxy")
    socket_gid = engine.api.inspect_container(proxy.id)["Config"]["User"]
    assert socket_gid == f"99:{os.stat(ENGINE_SOCKET).st_gid}"


# Where Prometheus scrapes each stand-in that exports metrics (the plan's prometheus.yml names the target).
SCRAPED = {"kafka-exporter": ("kafka-exporter", 9308, "/metrics"), "clickhouse": ("clickhouse", 9363, "/metrics"),
           "clickhouse-backup": ("clickhouse-backup", 7171, "/metrics"), "cadvisor": ("cadvisor", 8080, "/metrics")}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
# Fires on this module's stack for a real reason: no object store is reachable here (the live stack has one),
# so clickhouse-backup's create_remote fails and says so (test_clickhouse_backup_reports_...).
FIRES_WITHOUT_A_STORE = {"ClickHouseBackupFailed"}
# Series holding a Unix time: promtool's clock starts at 0, so they are moved onto it, keeping their age.
TIMESTAMP = re.compile(r"(_start|_finish|_timestamp_seconds|_time_seconds|_last_seen)$")
EVAL_MINUTES = 115


def _plan_file(prod_plan: dict, path: str) -> str:
    return next(_upload(inputs, path) for inputs in prod_plan[CONTAINER]
                for upload in inputs.get("uploads", []) if upload["file"] == path)


def _scrape(stack: Stack) -> tuple[dict[str, dict[str, float]], set[str], float]:
    """job -> {series: value} of every stand-in exporter at one moment, and the names of its counters."""
    samples, counters = {}, set()
    for job, (service, port, path) in SCRAPED.items():
        if job == "clickhouse-backup":  # on its alias's address only, logged in
            status, text = stack.http(service, f"{API}{path}", auth=api_login(stack))
        else:
            status, text = stack.http(service, f"http://127.0.0.1:{port}{path}")
        assert status == 200, (job, text)
        samples[job] = {f"{m.group(1)}{m.group(2) or '{}'}": float(m.group(3))
                        for m in map(SAMPLE.match, text.splitlines()) if m}
        counters |= set(re.findall(r"^# TYPE (\S+) counter$", text, re.MULTILINE))
    return samples, counters, time.monotonic()


def test_no_alert_fires_on_a_stand_ins_value(stack, prod_plan, tmp_path):
    """The stack's own rules over what the stand-ins export, as Prometheus would scrape it (two scrapes give the
    counters' rates; gauges hold their value) with every other job up: no alert that reads a stand-in's series
    fires, but for the one whose cause is real here. promtool evaluates the rules file of the prod plan."""
    promtool = require_tool("promtool", "prometheus")
    rules = yaml.safe_load(_plan_file(prod_plan, RULES_FILE))
    scrape_configs = yaml.safe_load(_plan_file(prod_plan, PROMETHEUS_CONFIG))["scrape_configs"]
    targets = {config["job_name"]: (static["targets"][0], static.get("labels", {}))
               for config in scrape_configs for static in config.get("static_configs", []) if static.get("targets")}
    first, _, at_first = _scrape(stack)
    time.sleep(10)
    second, counters, at_second = _scrape(stack)
    series, exported, now = [], set(), time.time()
    ours = _local(OWN_PREFIX)
    for job, samples in second.items():
        instance, labels = targets[job]
        for selector, value in samples.items():
            name, _, rest = selector.partition("{")
            if 'name="' in rest and f'name="{ours}-' not in rest:
                continue  # cAdvisor measures every container of the host: only this stack's are its to judge
            exported.add(name)
            scraped = {"job": job, "instance": instance, **labels}
            all_labels = rest.rstrip("}") + ("," if rest.rstrip("}") else "") + ",".join(
                f'{k}="{v}"' for k, v in scraped.items())
            # A counter goes on at the rate of the two scrapes; a gauge stays where it is.
            per_minute = ((value - first[job].get(selector, value)) / (at_second - at_first) * 60
                          if name in counters else 0.0)
            if TIMESTAMP.search(name):
                value, per_minute = value - now + EVAL_MINUTES * 60, 0.0
            series.append({"series": f"{name}{{{all_labels}}}",
                           "values": f"{value:.6f}{'+' if per_minute >= 0 else '-'}{abs(per_minute):.6f}x120"})
    assert sum(f'name="{ours}-' in item["series"] for item in series) >= len(SERVICES) * 4, "no container of ours"
    series += [{"series": f'up{{job="{job}",instance="{instance}",service="{labels.get("service", job)}"}}',
                "values": "1x120"} for job, (instance, labels) in targets.items()]
    # The alerts whose expression reads a series a stand-in exports (or the up of its target).
    depending = sorted({rule["alert"] for group in rules["groups"] for rule in group["rules"]
                        if "alert" in rule and any(re.search(rf"\b{re.escape(name)}\b", rule["expr"])
                                                   for name in exported | {"up"})})
    print("\nalerts reading a stand-in's series:", ", ".join(depending))
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(rules))
    test = {"rule_files": [str(rules_path)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": f"{EVAL_MINUTES}m", "alertname": name, "exp_alerts": []}
                                            for name in depending if name not in FIRES_WITHOUT_A_STORE]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "test.yml")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"ContainerMemoryHigh", "ContainerCpuHigh", "ClickHouseBackupStale", "ClickHouseBackupFailed",
            "ServiceDown", "ServiceAbsent"} <= set(depending)
    # The Kafka stand-in has no consumer groups: the lag the alert (and the autoscaler) reads is never exported,
    # so KafkaConsumerLagHigh cannot fire here, and proves nothing about the lag either.
    assert "KafkaConsumerLagHigh" not in depending
