"""The prod stack with `runtime: swarm`, under mocks: services, secrets, configs, overlay networks and what the
policy pack says of them."""

from __future__ import annotations

import base64
import copy
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pulumi
import pytest
import yaml

from platform_infra.components.apps import HEALTH_PATH, HEALTHCHECK_CLASS_DIR, JVM_TMPDIR
from platform_infra.components.postgres import (
    ADMIN_RESERVED_CONNECTIONS,
    BACKUP_CONNECTIONS,
    EXPORTER_CONNECTIONS,
)
from platform_infra.components.runtime import duration_nanos
from platform_infra.components.spec import ComponentArgsError, ContainerSpec, Healthcheck
from platform_infra.components.swarm import UPDATE_PARALLELISM, SwarmRuntime, object_name
from platform_infra.components.zones import ZONES
from platform_infra.infra.check import evaluate
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import SettingsError, parse_settings
from tests.conftest import deploy, require_tool
from tests.helpers import is_secret, labels_of, reveal

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"
POLICY = {"min_replicas": 2, "max_replicas": 12, "consumer_group": "job-workers", "topic": "jobs"}
AUTOSCALING = {"workers": POLICY, "docker_socket_accepted_until": "2027-11-30"}
DATA = {"postgres_max_connections": 300}
"""Up to 12 workers, and a start-first rollout task beside each service's replicas, need 290 connections."""


def swarm_project(directory: Path, **settings) -> Path:
    """This repository's program with the prod stack file plus `settings`."""
    (directory / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("main: stacks/", f"main: {REPO_ROOT}/stacks/"))
    stack = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["platform:settings"].update(settings)
    (directory / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    return directory


@pytest.fixture(scope="module")
def swarm_run(tmp_path_factory):
    project = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return run_program(load_project(project, "prod"), "prod")


def of_type(run, type_: str) -> dict[str, dict]:
    return {r.inputs.get("name", r.name): r.inputs for r in run.resources if r.type == type_}


def services(run) -> dict[str, dict]:
    return {labels_of(inputs)["platform.service"]: inputs for inputs in of_type(run, SERVICE).values()}


def test_one_service_per_spec_and_no_container(swarm_run) -> None:
    planned = services(swarm_run)
    assert set(planned) == {"postgres", "redis", "kafka", "clickhouse", "api-gateway", "orchestrator", "worker",
                            "log-aggregator", "query-service", "load-balancer", "prometheus", "alertmanager",
                            "grafana", "blackbox-exporter", "node-exporter", "postgres-exporter",
                            "redis-exporter", "kafka-exporter", "cadvisor", "autoscaler", "postgres-backup",
                            "cadvisor-socket-proxy", "autoscaler-socket-proxy",
                            "clickhouse-backup", "s3-gateway"}
    assert not of_type(swarm_run, CONTAINER)
    assert planned["worker"]["mode"]["replicated"]["replicas"] == 3
    assert planned["api-gateway"]["mode"]["replicated"]["replicas"] == 2
    worker_env = planned["worker"]["taskSpec"]["containerSpec"]["env"]
    assert worker_env["WORKER_ID"] == "worker-{{.Task.Slot}}"


def test_the_autoscaled_workers_replicas_are_left_to_the_controller(swarm_run) -> None:
    worker = next(r for r in swarm_run.resources if r.type == SERVICE and r.name == "workers-worker")
    gateway = next(r for r in swarm_run.resources if r.type == SERVICE and r.name == "api-gateway")
    assert (worker.ignore_changes, gateway.ignore_changes) == (
        ["mode.replicated.replicas", "labels", "taskSpec.placement.platforms"], ["taskSpec.placement.platforms"])


def test_every_operation_refreshes_so_an_update_sends_the_controllers_count() -> None:
    """An ignored input is sent from the state (the value of the last `up` unless the state was refreshed), so
    the project refreshes before every up, preview and destroy: pulumi/pulumi sdk/go/common/workspace/project.go
    ProjectOptions.Refresh and project.json `options.refresh` ("const": "always"), read by
    pkg/cmd/pulumi/operations/io.go getRefreshOption (docs/SWARM.md, "Autoscaling the workers on Kafka lag")."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["options"] == {"refresh": "always"}


def test_the_workers_wait_covers_a_rollout_over_every_replica_the_controller_may_set(swarm_run) -> None:
    """converge_config.timeout: each task the update replaces may take the monitor period and the update delay,
    and the last one is watched for one more monitor period; the autoscaled workers may run max_replicas
    tasks, not `workers`."""
    planned = services(swarm_run)
    worker, gateway = planned["worker"], planned["api-gateway"]
    for service, replicas in ((worker, POLICY["max_replicas"]), (gateway, gateway["mode"]["replicated"]["replicas"])):
        slot = duration_nanos(service["updateConfig"]["monitor"]) + duration_nanos(service["updateConfig"]["delay"])
        assert duration_nanos(service["convergeConfig"]["timeout"]) >= replicas * slot + duration_nanos(
            service["updateConfig"]["monitor"])


def test_the_autoscaler_runs_the_policy_on_a_manager_from_the_image_the_stack_builds(swarm_run) -> None:
    images = of_type(swarm_run, "docker:index/image:Image")
    image = next(inputs for name, inputs in images.items() if "autoscaler" in str(inputs.get("imageName", name)))
    assert image["imageName"] == "registry.internal/orchestration/autoscaler:1.0.0"
    assert image["build"]["dockerfile"].endswith("images/autoscaler/Dockerfile")
    scaler = services(swarm_run)["autoscaler"]
    container = scaler["taskSpec"]["containerSpec"]
    # The digest the registry has for the pushed tag, looked up once the build has pushed it.
    assert container["image"].startswith(image["imageName"] + "@sha256:")
    assert container["args"][:4] == ["--service", "orchestration-prod-worker", "--prometheus-url",
                                      "http://prometheus:9090"]
    assert scaler["mode"]["replicated"]["replicas"] == 1
    # It reaches a manager's Engine API only through its proxy, as nobody: it mounts nothing of the host and may
    # run on any node; the proxy, holding the socket, runs on a manager (the services API is a manager's).
    assert container["args"][-2:] == ["--docker-host", "tcp://autoscaler-socket-proxy:2375"]
    assert container["user"] == "65534:65534"
    assert not [m for m in container.get("mounts", []) if m["type"] == "bind"]
    assert "placement" not in scaler["taskSpec"]
    proxy = services(swarm_run)["autoscaler-socket-proxy"]
    assert "node.role==manager" in proxy["taskSpec"]["placement"]["constraints"]
    assert [(m["source"], m["readOnly"]) for m in proxy["taskSpec"]["containerSpec"]["mounts"]] == [
        ("/var/run/docker.sock", True)]
    haproxy_cfg = next(c for c in of_type(swarm_run, CONFIG).values()
                       if labels_of(c)["platform.service"] == "autoscaler-socket-proxy")
    assert "/services/orchestration-prod-worker/update$'" in base64.b64decode(haproxy_cfg["data"]).decode()
    policy_file = next(c for c in of_type(swarm_run, CONFIG).values()
                       if labels_of(c)["platform.path"] == "/etc/platform/autoscale-policy.yaml")
    assert yaml.safe_load(base64.b64decode(policy_file["data"]))["max_replicas"] == POLICY["max_replicas"]
    kafka = services(swarm_run)["kafka"]["taskSpec"]["containerSpec"]["env"]
    # The stack creates the workers' topic with a partition for every worker the policy allows.
    assert kafka["PLATFORM_KAFKA_TOPICS"] == "jobs:12 logs:6" and "KAFKA_NUM_PARTITIONS" not in kafka
    prometheus_yml = next(c for c in of_type(swarm_run, CONFIG).values()
                          if labels_of(c)["platform.path"].endswith("prometheus.yml"))
    jobs = yaml.safe_load(base64.b64decode(prometheus_yml["data"]))["scrape_configs"]
    assert any(job["job_name"] == "autoscaler" for job in jobs)
    rules_file = next(c for c in of_type(swarm_run, CONFIG).values()
                      if labels_of(c)["platform.path"].endswith("alerts.yml"))
    rules = [(rule["alert"], rule["expr"]) for group in yaml.safe_load(base64.b64decode(rules_file["data"]))["groups"]
             for rule in group["rules"]]
    assert ("ServiceAbsent", 'absent(up{job="autoscaler"} == 1)') in rules  # the controller down or gone
    assert ("WorkersAtMaxReplicas", "autoscaler_desired_replicas >= autoscaler_max_replicas") in rules


def test_overlay_networks_internal_and_encrypted(swarm_run) -> None:
    networks = of_type(swarm_run, NETWORK)
    assert {name: (n["driver"], n["internal"], n["options"]["encrypted"]) for name, n in networks.items()} == {
        f"orchestration-prod-{name}": ("overlay", internal, "true")
        for name, internal in {**{zone: spec.internal for zone, spec in ZONES.items()},
                               "autoscaler-engine": True, "cadvisor-engine": True}.items()}
    # Each with its own VXLAN id, outside the range the driver assigns from (4096 up).
    vnis = {int(n["options"]["com.docker.network.driver.overlay.vxlanid_list"]) for n in networks.values()}
    assert len(vnis) == len(networks) and all(2**23 <= vni < 2**24 for vni in vnis)
    ids = {r.inputs["name"].removeprefix("orchestration-prod-"): f"{r.name}-id" for r in swarm_run.resources
           if r.type == NETWORK}
    postgres = services(swarm_run)["postgres"]
    assert postgres["taskSpec"]["networksAdvanceds"] == [{"id": ids[name], "aliases": ["postgres"]}
                                                          for name in ("store-postgres", "backup")]


def test_no_credential_in_any_environment_value(swarm_run) -> None:
    secret_values = {reveal(inputs["data"]) for inputs in of_type(swarm_run, SECRET).values()}
    decoded = {base64.b64decode(value).decode() for value in secret_values}
    assert all(len(value) >= 16 for value in decoded)
    for service, inputs in services(swarm_run).items():
        env = inputs["taskSpec"]["containerSpec"].get("env", {})
        for key, value in env.items():
            assert not any(secret in str(value) for secret in decoded if len(secret) >= 16), (service, key)
    clickhouse = services(swarm_run)["clickhouse"]["taskSpec"]["containerSpec"]
    assert not {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_PASSWORD_FILE"} & set(clickhouse["env"])
    assert "/etc/clickhouse-server/users.d/platform-users.xml" in {s["fileName"] for s in clickhouse["secrets"]}
    kafka = services(swarm_run)["kafka"]["taskSpec"]["containerSpec"]
    assert "/etc/platform/secrets/kafka_server_jaas.conf" in {s["fileName"] for s in kafka["secrets"]}


def test_secrets_and_configs_are_files_of_their_service(swarm_run) -> None:
    secrets, configs = of_type(swarm_run, SECRET), of_type(swarm_run, CONFIG)
    assert all(is_secret(inputs["data"]) for inputs in secrets.values())
    assert not any(is_secret(inputs["data"]) for inputs in configs.values())
    assert all(len(name) <= 64 for name in (*secrets, *configs))
    gateway = services(swarm_run)["api-gateway"]["taskSpec"]["containerSpec"]
    mounted = {s["fileName"]: s for s in gateway["secrets"]}
    assert set(mounted) == {"/etc/platform/secrets/spring.datasource.password",
                            "/etc/platform/secrets/spring.data.redis.password", "/etc/platform/secrets/jwt.secret"}
    assert {(s["fileUid"], s["fileGid"], s["fileMode"]) for s in mounted.values()} == {("10001", "10001", 0o440)}
    # An image that steps down from root: root and the image's service group, never anyone else.
    for service, group in (("postgres", "999"), ("redis", "999"), ("clickhouse", "101")):
        spec = services(swarm_run)[service]["taskSpec"]["containerSpec"]
        assert {(s["fileUid"], s["fileGid"], s["fileMode"]) for s in spec["secrets"]} == {("0", group, 0o440)}
    lb = services(swarm_run)["load-balancer"]
    lb_configs = {c["fileName"] for c in lb["taskSpec"]["containerSpec"]["configs"]}
    assert lb_configs == {"/etc/platform/nginx.conf", "/etc/platform/tls/fullchain.pem", "/etc/platform/tls/trusted.pem"}
    nginx_conf = next(c for c in configs.values() if labels_of(c)["platform.path"] == "/etc/platform/nginx.conf"
                      and labels_of(c)["platform.service"] == "load-balancer")
    conf = base64.b64decode(nginx_conf["data"]).decode()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    # Every replica, re-resolved per request (Docker DNS answers tasks.<service> with each task's address,
    # tests/swarm/test_swarm_runtime_live.py), not the service's one virtual IP: nginx balances over them
    # and skips a failing one (tests/edge/test_edge_live.py, one name answering with several addresses).
    assert "set $api_gateway tasks.api-gateway:8080;" in conf


def test_rollouts_roll_back_and_stateful_services_are_pinned(swarm_run) -> None:
    planned = services(swarm_run)
    for service, inputs in planned.items():
        update, rollback = inputs["updateConfig"], inputs["rollbackConfig"]
        assert (update["failureAction"], rollback["failureAction"]) == ("rollback", "pause"), service
        assert update["monitor"] == rollback["monitor"]
        restart = inputs["taskSpec"]["restartPolicy"]
        assert (restart["condition"], restart["maxAttempts"]) == ("on-failure", 5), service
    assert planned["api-gateway"]["updateConfig"]["order"] == "start-first"
    # 90 s start period + 5 x (15 s interval + 5 s timeout): the update watches long enough to see it fail.
    assert planned["api-gateway"]["updateConfig"]["monitor"] == "3m10s"
    assert planned["postgres"]["updateConfig"]["order"] == "stop-first"
    assert planned["postgres"]["taskSpec"]["placement"]["constraints"] == ["node.labels.platform.postgres==true"]
    assert planned["load-balancer"]["taskSpec"]["placement"]["constraints"] == ["node.labels.platform.edge==true"]
    assert "placement" not in planned["api-gateway"]["taskSpec"]
    # Host-level exporters run on every node; only the autoscaler is held to a manager.
    assert {s for s, inputs in planned.items() if "global" in inputs["mode"]} == {"node-exporter", "cadvisor"}
    assert "placement" not in planned["cadvisor"]["taskSpec"]
    limits = planned["postgres"]["taskSpec"]["resources"]
    assert limits == {"limits": {"nanoCpus": 2_000_000_000, "memoryBytes": 2048 * 2**20},
                      "reservation": {"nanoCpus": 1_000_000_000, "memoryBytes": 1024 * 2**20}}


def test_only_the_load_balancer_publishes_in_host_mode(swarm_run) -> None:
    published = {service: inputs["endpointSpec"].get("ports") for service, inputs in services(swarm_run).items()
                 if inputs["endpointSpec"].get("ports")}
    assert published == {"load-balancer": [
        {"targetPort": 8080, "publishedPort": 80, "publishMode": "host", "protocol": "tcp"},
        {"targetPort": 8443, "publishedPort": 443, "publishMode": "host", "protocol": "tcp"}]}


def test_the_policy_pack_passes_the_swarm_stack(swarm_run) -> None:
    report = evaluate(swarm_run, REPO_ROOT / "policies" / "config" / "prod.json")
    mandatory = [v for v in report.violations if v["enforcement"] == "mandatory"]
    assert not mandatory, mandatory
    assert not [v for v in report.violations if v["rule"] in ("SEC-001", "SWM-001", "SWM-003", "SWM-004")]


def test_the_policy_pack_reads_a_services_files_in_its_configs(swarm_run) -> None:
    """A docker config is judged as the file it is: a weakened nginx.conf in it fails the edge rules."""
    run = copy.deepcopy(swarm_run)
    conf = next(r for r in run.resources if r.type == CONFIG and labels_of(r.inputs)["platform.path"].endswith("nginx.conf"))
    text = base64.b64decode(conf.inputs["data"]).decode().replace("TLSv1.2 TLSv1.3", "TLSv1 TLSv1.2 TLSv1.3")
    # Resource policies read the inputs, the stack policies judging identity over the graph the outputs.
    conf.inputs["data"] = conf.outputs["data"] = base64.b64encode(text.encode()).decode()
    report = evaluate(run, REPO_ROOT / "policies" / "config" / "prod.json")
    assert [(v["rule"], v["resource"].rsplit("::", 1)[-1]) for v in report.violations if v["rule"] == "EDGE-001"] \
        == [("EDGE-001", conf.name)]


def test_infra_check_and_plan_pass_the_swarm_stack(tmp_path) -> None:
    from platform_infra.infra.cli import main

    project = swarm_project(tmp_path, runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    assert main(["check", "--stack", "prod", "--project", str(project)]) == 0


def test_file_object_names_change_with_the_content() -> None:
    name = object_name("orchestration-prod", "query-service", "/etc/platform/secrets/clickhouse.password", "x")
    assert len(name) <= 64 and name.endswith(".password") and name.startswith("orchestration-prod-query-service-")
    assert name != object_name("orchestration-prod", "query-service", "/etc/platform/secrets/clickhouse.password", "y")


def _violations(run, rule: str) -> list[tuple[str, str]]:
    report = evaluate(run, REPO_ROOT / "policies" / "config" / "prod.json")
    return [(v["enforcement"], v["resource"].rsplit("::", 1)[-1], v["message"]) for v in report.violations
            if v["rule"] == rule]


def test_a_prod_swarm_stack_without_worker_autoscaling_fails(tmp_path) -> None:
    run = run_program(load_project(swarm_project(tmp_path, runtime="swarm"), "prod"), "prod")
    assert _violations(run, "SWM-005") == [
        ("mandatory", "workers-worker",
         "no autoscaler targets orchestration-prod-worker: its replicas do not follow the Kafka lag")]


def test_max_replicas_above_the_topics_partitions_fails(swarm_run) -> None:
    run = copy.deepcopy(swarm_run)
    kafka = next(r for r in run.resources if r.type == SERVICE and labels_of(r.inputs)["platform.service"] == "kafka")
    for props in (kafka.inputs, kafka.outputs):  # stack rules read the outputs
        props["taskSpec"]["containerSpec"]["env"]["PLATFORM_KAFKA_TOPICS"] = "jobs:4 logs:6"
    message = "max_replicas 12 is above the 4 partition(s) of topic jobs: workers beyond them would idle"
    assert _violations(run, "SWM-005") == [("mandatory", "autoscaler", message)]
    for props in (kafka.inputs, kafka.outputs):
        props["taskSpec"]["containerSpec"]["env"]["PLATFORM_KAFKA_TOPICS"] = "logs:6"
    (finding,) = _violations(run, "SWM-005")
    assert finding[1] == "autoscaler" and "topic jobs is not among the topics the stack creates" in finding[2]
    # A Kafka without the list auto-creates topics with num.partitions (1 unless set).
    for props in (kafka.inputs, kafka.outputs):
        del props["taskSpec"]["containerSpec"]["env"]["PLATFORM_KAFKA_TOPICS"]
    (finding,) = _violations(run, "SWM-005")
    assert "above the 1 partition(s) of topic jobs" in finding[2]
    policy = next(r for r in run.resources if r.type == CONFIG and labels_of(r.inputs)["platform.path"].endswith(
        "autoscale-policy.yaml"))
    policy.inputs["data"] = policy.outputs["data"] = base64.b64encode(b"max_replicas: 0\n").decode()
    (finding,) = _violations(run, "SWM-005")
    assert finding[1] == "autoscaler" and "policy /etc/platform/autoscale-policy.yaml is missing or invalid" in finding[2]


def test_a_backup_job_runs_on_the_node_of_the_volumes_it_shares(swarm_run) -> None:
    """The job's own metrics volume lives where the volumes it reads are: no label of its own. The global
    node-exporter, which mounts that volume on every node, is held to no label at all."""
    planned = services(swarm_run)
    constraints = {name: planned[name]["taskSpec"].get("placement", {}).get("constraints")
                   for name in ("postgres", "postgres-backup", "clickhouse-backup", "node-exporter")}
    assert constraints == {
        "postgres": ["node.labels.platform.postgres==true"],
        "postgres-backup": ["node.labels.platform.clickhouse==true", "node.labels.platform.postgres==true"],
        "clickhouse-backup": ["node.labels.platform.clickhouse==true"],
        "node-exporter": None,
    }
    node_exporter = planned["node-exporter"]
    assert "global" in node_exporter["mode"]
    assert {m["source"] for m in node_exporter["taskSpec"]["containerSpec"]["mounts"] if m["type"] == "volume"} == {
        "orchestration-prod-backup-metrics"}


def readme_node_labels() -> set[str]:
    """The labels of docs/SWARM.md's table of node labels (the table under "Node labels the operator sets")."""
    text = (REPO_ROOT / "docs" / "SWARM.md").read_text()
    table = text[text.index("Node labels the operator sets"):].split("\n\n")[1]
    return {match for line in table.splitlines()[2:] for match in re.findall(r"^\| `([^`]+)` \|", line)}


def test_every_node_label_the_stack_sets_is_in_the_swarm_doc(swarm_run) -> None:
    documented = readme_node_labels()
    assert "platform.edge" in documented
    used = {match for inputs in services(swarm_run).values()
            for constraint in inputs["taskSpec"].get("placement", {}).get("constraints", [])
            for match in re.findall(r"^node\.labels\.(.+)==true$", constraint)}
    assert used and used <= documented, sorted(used - documented)
    # Every constraint is a documented label or the manager role, nothing else.
    others = {c for inputs in services(swarm_run).values()
              for c in inputs["taskSpec"].get("placement", {}).get("constraints", []) if not c.startswith("node.labels.")}
    assert others == {"node.role==manager"}


def test_the_healthcheck_class_reaches_the_task_as_its_bytes_and_runs_in_a_jvm(swarm_run, tmp_path) -> None:
    """The provider decodes a config's `data` once and sends the bytes to the engine (resource_docker_config.go
    getConfigDataBytes): what each Spring service's task mounts is HttpCheck.class itself, which the real JVM
    loads and runs against a server answering 200 and then 503."""
    java = require_tool("java", "default-jdk-headless")
    shipped = (REPO_ROOT / "components" / "healthcheck" / "HttpCheck.class").read_bytes()
    classes = {labels_of(c)["platform.service"]: c for c in of_type(swarm_run, CONFIG).values()
               if labels_of(c)["platform.path"] == f"{HEALTHCHECK_CLASS_DIR}/HttpCheck.class"}
    assert set(classes) == {"api-gateway", "orchestrator", "worker", "log-aggregator", "query-service"}
    for service, config in classes.items():
        assert base64.b64decode(config["data"], validate=True) == shipped, service
    (tmp_path / "HttpCheck.class").write_bytes(base64.b64decode(classes["api-gateway"]["data"]))
    status = {"code": 200}

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}"
    command = services(swarm_run)["api-gateway"]["taskSpec"]["containerSpec"]["healthcheck"]["tests"]
    assert command[:2] == ["CMD", "java"] and HEALTHCHECK_CLASS_DIR in command
    args = [java if arg == "java" else str(tmp_path) if arg == HEALTHCHECK_CLASS_DIR else arg for arg in command[1:]]
    try:
        answers = []
        for code in (200, 503):
            status["code"] = code
            done = subprocess.run([*args[:-1], url], capture_output=True, text=True, timeout=60, check=False)
            answers.append((done.returncode, done.stderr.strip()))
    finally:
        server.shutdown()
        server.server_close()
    assert answers == [(0, ""), (1, "")]


def test_the_jvm_temp_dir_is_an_exec_able_tmpfs_volume_and_tmp_a_tmpfs(swarm_run) -> None:
    """A service tmpfs is always noexec in Swarm, so /var/tmp/jvm (exec) is a tmpfs of the local volume driver,
    one per replica; neither pins the service nor makes it stateful."""
    gateway = services(swarm_run)["api-gateway"]
    mounts = {m["target"]: m for m in gateway["taskSpec"]["containerSpec"]["mounts"]}
    assert mounts["/tmp"] == {"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": 128 * 2**20}}
    jvm = mounts[JVM_TMPDIR]
    assert jvm["type"] == "volume" and jvm["source"].endswith("-{{.Task.Slot}}")
    assert jvm["source"].startswith("orchestration-prod-api-gateway-var-tmp-jvm-")
    assert jvm["volumeOptions"]["driverName"] == "local"
    assert jvm["volumeOptions"]["driverOptions"] == {"type": "tmpfs", "device": "tmpfs",
                                                     "o": f"nosuid,nodev,size={128 * 2**20}"}
    assert "placement" not in gateway["taskSpec"] and gateway["updateConfig"]["order"] == "start-first"


def test_services_of_images_the_stack_builds_wait_for_the_build(swarm_run) -> None:
    """The image lookup and the service come after the push: on a first `up` the tag exists nowhere before."""
    built = {r.inputs["imageName"]: r.urn for r in swarm_run.resources if r.type == "docker:index/image:Image"}
    for service in ("postgres", "postgres-backup", "autoscaler"):
        resource = next(r for r in swarm_run.resources
                        if r.type == SERVICE and labels_of(r.inputs)["platform.service"] == service)
        image = resource.inputs["taskSpec"]["containerSpec"]["image"].partition("@")[0]
        assert built[image] in resource.dependencies, service


@pytest.mark.parametrize("options,refused", [
    ("rw,noexec,nosuid,size=8m,uid=101", "'uid=101'"),  # ownership: a service tmpfs has none
    ("size=8m,nr_inodes=1k", "'nr_inodes=1k'"),
    ("size=lots", "'size=lots'"),
    ("mode=1777", "'mode=1777'"),  # read back without the sticky bit: a diff at every `pulumi up`
    ("exec,noexec", "'exec' and 'noexec'"),
])
def test_a_tmpfs_option_swarm_cannot_honour_is_refused(options, refused) -> None:
    spec = ContainerSpec(service="cache", role="app", image="nginx:1.26.2", networks=["scrape"], memory_mb=32,
                         cpus=0.1, healthcheck=Healthcheck(["CMD", "true"]), tmpfs={"/var/cache/nginx": options})

    def program() -> None:
        runtime = SwarmRuntime(name_prefix="t")
        parent = pulumi.ComponentResource("platform:index:SwarmTest", "swarm-test")
        runtime.deploy(spec, {"scrape": runtime.network("scrape", True, "network", parent)}, "test", parent)

    with pytest.raises(ComponentArgsError, match=re.escape(
            f"container 'cache': tmpfs /var/cache/nginx: option{'s' if ' and ' in refused else ''} {refused}")):
        deploy(program)


def test_the_prod_specs_tmpfs_options_are_all_honoured_in_swarm(swarm_run) -> None:
    """What the specs ask of each tmpfs reaches the task: sizes as sent, exec only where asked."""
    for service, inputs in services(swarm_run).items():
        for mount in inputs["taskSpec"]["containerSpec"].get("mounts", []):
            if mount["type"] == "tmpfs":
                assert mount["tmpfsOptions"]["sizeBytes"] > 0, service
            elif mount.get("volumeOptions", {}).get("driverOptions", {}).get("type") == "tmpfs":
                assert mount["target"] == JVM_TMPDIR, service


def test_the_connection_budget_covers_the_most_tasks_the_plan_can_run(swarm_run) -> None:
    # What the settings count (infra/settings.py _most_tasks) against what the plan's services can run at once:
    # replicas (the worker service: the autoscaler's ceiling), plus the new tasks a start-first update starts
    # beside the old ones.
    need = EXPORTER_CONNECTIONS + BACKUP_CONNECTIONS + ADMIN_RESERVED_CONNECTIONS
    for service, inputs in services(swarm_run).items():
        env = reveal(inputs["taskSpec"]["containerSpec"].get("env", {}))
        pool = env.get("SPRING_DATASOURCE_HIKARI_MAXIMUM_POOL_SIZE")
        if pool is None:
            continue
        update = inputs["updateConfig"]
        assert (update["order"], update["parallelism"]) == ("start-first", UPDATE_PARALLELISM), service
        most = POLICY["max_replicas"] if service == "worker" else inputs["mode"]["replicated"]["replicas"]
        need += int(pool) * (most + update["parallelism"])
    assert need == 270  # 20x3 + 20x2 + 10x13 + 15x2 + 10: the log-aggregator does not connect to PostgreSQL
    settings = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]["platform:settings"]
    with pytest.raises(SettingsError, match=r"= (\d+); raise") as refused:
        parse_settings({**settings, "runtime": "swarm", "autoscaling": AUTOSCALING,
                        "data": {"postgres_max_connections": need - 1}}, "Pulumi.prod.yaml")
    assert int(re.search(r"= (\d+); raise", str(refused.value)).group(1)) >= need


def test_replaced_files_are_retained_and_retired_by_a_step_each_service_waits_for(swarm_run) -> None:
    """Pulumi never deletes a config or secret (a rollback may need it, components/swarm_files.py); each
    service with files depends on its RetiredFiles, which knows the names it uses now."""
    files = [r for r in swarm_run.resources if r.type in (SECRET, CONFIG)]
    assert files and all(r.retain_on_delete for r in files)
    retired = {r.urn: r.inputs for r in swarm_run.resources if r.type == "pulumi-python:dynamic/swarm:RetiredFiles"}
    with_files = 0
    for service in (r for r in swarm_run.resources if r.type == SERVICE):
        container = service.inputs["taskSpec"]["containerSpec"]
        names = sorted([ref["secretName"] for ref in container.get("secrets", [])]
                       + [ref["configName"] for ref in container.get("configs", [])])
        steps = [retired[urn] for urn in service.dependencies if urn in retired]
        if not names:
            assert not steps, service.name
            continue
        with_files += 1
        (step,) = steps
        assert (step["service_name"], sorted(step["current"])) == (service.inputs["name"], names)
    assert with_files > 10
