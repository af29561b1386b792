"""Behaviours of the container, Swarm and network rules that mutation testing (tests/policies/mutation.py) found
no test pinned down: each test kills mutants that survived the pack's other tests (the comment names the rule
line and the mutants)."""

from __future__ import annotations

import base64

import pytest

from platform_infra.policies.props import SERVICE_CONFIG
from tests.policies.conftest import ids, messages
from tests.policies.fixtures import DIGEST, S, labels, registration
from tests.policies.test_policies_rules import add_resource, both, drop_fields, edit_service, set_fields


@pytest.mark.parametrize(("field", "rule"), [("pidMode", "CTR-010"), ("ipcMode", "CTR-011"),
                                             ("usernsMode", "CTR-012")])
def test_only_the_host_namespace_mode_is_reported(check, field, rule):
    # containers.py _host_mode_rule `.lower() == "host"` (== -> >=: "private", "shareable" and "none" sort after
    # "host"). Docker's own modes besides host (container:<name> sorts before it) are no finding.
    for mode in ("private", "shareable", "none", "container:postgres"):
        assert rule not in ids(check(mutate=set_fields("api-gateway", **{field: mode}))), mode
    assert messages(check(mutate=set_fields("api-gateway", **{field: "host"})), rule) == [
        f"api-gateway: {field} is host"]


@pytest.mark.parametrize(("name", "role", "port"), [("api-gateway", "app", 8080.0), ("postgres", "ds", 5432.0)])
def test_an_app_or_store_port_on_all_interfaces_is_reported(check, name, role, port):
    # containers.py bind_specific_interface `w.role == "lb"` (== -> <=: "app", "ds" and "egress" sort before
    # "lb"): only the load balancer may bind all interfaces.
    report = check(mutate=set_fields(name, ports=[{"internal": port, "external": port, "ip": "0.0.0.0"}]))
    assert messages(report, "CTR-025") == [f"{name}: port {port:.0f} binds 0.0.0.0 (role {role})"]


def test_host_port_22_is_ssh_whatever_the_container_port(check):
    # containers.py no_ssh `port.external == 22` (22 -> 23): a host's port 22 forwarded to 2222 inside.
    report = check(mutate=set_fields("api-gateway", ports=[{"internal": 2222.0, "external": 22.0, "ip": "127.0.0.1"}]))
    assert messages(report, "CTR-028") == ["api-gateway: exposes port 22"]


def test_a_core_ulimit_of_zero_is_sane(check):
    # containers.py ulimits_sane `number(soft) or 0` (0 -> 1): soft 0 = hard 0 (no core dumps) is consistent.
    report = check(mutate=set_fields("clickhouse", ulimits=[{"name": "core", "soft": 0.0, "hard": 0.0}]))
    assert "CTR-030" not in ids(report), messages(report, "CTR-030")
    report = check(mutate=set_fields("clickhouse", ulimits=[{"name": "core", "soft": 1.0, "hard": 0.0}]))
    assert messages(report, "CTR-030") == ["clickhouse: ulimit core: soft 1 > hard 0"]


def test_the_autoscaler_flags_are_read_wherever_they_stand(check):
    # swarm.py _flag `args[i + 1]` (+ -> ^: the same for a flag at an even index only): with a leading flag,
    # --service and --policy stand at odd indexes, and the value read is still the one after each.
    autoscaler = registration(S, "autoscaler", {
        "name": "autoscaler", "labels": labels("mon", "autoscaler"),
        "taskSpec": {"containerSpec": {"image": f"registry.internal/tools/autoscaler:1{DIGEST}",
                                       "args": ["--once", "--service", "orders", "--policy", "/etc/platform/policy.yml"]}}})
    report = check(mutate=both(edit_service("orders", "labels", value=labels("app", "worker")), add_resource(autoscaler)))
    assert messages(report, "SWM-005") == [
        ("autoscaler: the autoscaler's policy /etc/platform/policy.yml is missing or invalid: "
         "1 validation error for ScalingPolicy")]


SAFE_MOUNTS_FIRST = [
    set_fields("api-gateway", volumes=[
        {"volumeName": "cache", "containerPath": "/cache"},
        {"hostPath": "/etc/ssl", "containerPath": "/ssl", "readOnly": True},
        {"hostPath": "/etc", "containerPath": "/host-etc"}]),
    edit_service("orders", "taskSpec", "containerSpec", "mounts", value=[
        {"type": "volume", "source": "cache", "target": "/cache"},
        {"type": "bind", "source": "/etc/ssl", "target": "/ssl", "readOnly": True},
        {"type": "bind", "source": "/etc", "target": "/host-etc"}]),
]


@pytest.mark.parametrize("mutation", SAFE_MOUNTS_FIRST, ids=["container", "service"])
def test_a_sensitive_bind_after_a_volume_and_a_read_only_bind_is_reported(check, mutation):
    # containers.py no_sensitive_host_paths `continue` past a volume or a read-only bind (continue -> break).
    report = check(mutate=mutation)
    (name,) = {m.split(":")[0] for m in messages(report, "CTR-015")}
    assert messages(report, "CTR-015") == [f"{name}: bind-mounts /etc read-write"]


@pytest.mark.parametrize("source", ["/srv/data", "/etcd-data", "/devices"])
def test_a_writable_bind_outside_the_system_directories_passes(check, source):
    # containers.py no_sensitive_host_paths `mount.source == directory` (== -> is not); `/etcd-data` is no
    # path under /etc, nor `/devices` under /dev.
    report = check(mutate=set_fields("api-gateway", volumes=[{"hostPath": source, "containerPath": "/data"}]))
    assert "CTR-015" not in ids(report), messages(report, "CTR-015")


# The tests below pin boundaries found by reading the rules against cosmic-ray's operators, ahead of the run
# reaching them; each was checked to fail with the mutant named.


@pytest.mark.parametrize("mode", ["bridge", "none", "container:postgres"])
def test_only_the_host_network_mode_is_the_host_network(check, mode):
    # containers.py no_host_network `.lower() == "host"` (== -> <=: "bridge"; == -> >=, >: "none").
    assert "CTR-009" not in ids(check(mutate=set_fields("api-gateway", networkMode=mode)))


def test_a_private_cgroup_namespace_passes(check):
    # containers.py default_cgroup `cgroupnsMode == "host"` (== -> >=, >: "private" sorts after "host").
    assert "CTR-018" not in ids(check(mutate=set_fields("api-gateway", cgroupnsMode="private")))
    assert messages(check(mutate=set_fields("api-gateway", cgroupnsMode="host")), "CTR-018") == [
        "api-gateway: cgroupnsMode is host"]


def test_any_attested_pids_limit_bounds_a_fork_bomb(check):
    # containers.py pids_limit `daemonDefaultPidsLimit <= 0` (0 -> 1).
    assert "CTR-021" not in ids(check(config={"ctr-021-pids-limit": {"daemonDefaultPidsLimit": 1}}))


@pytest.mark.parametrize(("external", "reported"), [(1023.0, True), (1024.0, False)])
def test_a_host_port_below_1024_is_privileged(check, external, reported):
    # containers.py no_privileged_host_ports `port.external < 1024` (< -> <=; 1024 -> 1023, 1025), both runtimes.
    container = check(mutate=set_fields("api-gateway", ports=[{"internal": 8080.0, "external": external,
                                                               "ip": "127.0.0.1"}]))
    service = check(mutate=edit_service("orders", "endpointSpec", value={"ports": [
        {"targetPort": 8080.0, "publishedPort": external, "publishMode": "host"}]}))
    assert messages(container, "CTR-024") == (
        [f"api-gateway: publishes privileged host port {external:.0f} (role app)"] if reported else [])
    assert messages(service, "CTR-024") == (
        [f"orders: publishes privileged host port {external:.0f} (role app)"] if reported else [])


def test_only_the_load_balancer_may_publish_443(check):
    # containers.py no_privileged_host_ports `w.role != "lb"` (!= -> <: "mon" sorts after "lb").
    report = check(mutate=set_fields("grafana", ports=[{"internal": 3000.0, "external": 443.0, "ip": "127.0.0.1"}]))
    assert messages(report, "CTR-024") == ["grafana: publishes privileged host port 443 (role mon)"]


@pytest.mark.parametrize(("attempts", "reported"), [(5.0, False), (6.0, True)])
def test_a_service_may_retry_up_to_the_limit(check, attempts, reported):
    # containers.py restart_policy `attempts <= limit` (<= -> <) on a Service (a container's baseline is at 5).
    report = check(mutate=edit_service("orders", "taskSpec", "restartPolicy", value={
        "condition": "on-failure", "maxAttempts": attempts}))
    assert messages(report, "CTR-022") == (
        ["orders: restartPolicy on-failure needs maxAttempts between 1 and 5"] if reported else [])


def test_a_container_that_never_restarts_needs_no_retry_count(check):
    # containers.py restart_policy `restart == "on-failure"` (== -> <=, <: "no" sorts before "on-failure").
    report = check(mutate=both(set_fields("api-gateway", restart="no"), drop_fields("api-gateway", "maxRetryCount")))
    assert "CTR-022" not in ids(report), messages(report, "CTR-022")


def test_a_healthcheck_whose_last_argument_is_none_is_a_healthcheck(check):
    # containers.py healthcheck `tests[0]` (0 -> -1): only the first element says NONE.
    test = ["CMD", "/healthcheck", "--tls", "none"]
    assert "CTR-023" not in ids(check(mutate=set_fields("api-gateway", healthcheck={"tests": test})))
    assert "CTR-023" not in ids(check(mutate=edit_service("orders", "taskSpec", "containerSpec", "healthcheck",
                                                          value={"tests": test})))


@pytest.mark.parametrize(("hard", "reported"), [(1048576.0, False), (1048577.0, True)])
def test_a_ulimit_may_reach_the_ceiling(check, hard, reported):
    # containers.py ulimits_sane `hard > ceiling` (> -> >=) and the ceiling's default 1048576 (-> 1048575, 1048577).
    report = check(mutate=set_fields("clickhouse", ulimits=[{"name": "nofile", "soft": 262144.0, "hard": hard}]))
    assert messages(report, "CTR-030") == (
        [f"clickhouse: ulimit nofile: hard {hard:.0f} above 1048576"] if reported else [])


@pytest.mark.parametrize("driver", ["syslog", "splunk", "journald"])
def test_a_remote_or_journal_log_driver_needs_no_max_size(check, driver):
    # containers.py logging_rotated `driver == "none"` (== -> >=, >: "syslog" and "splunk" sort after "none";
    # <=, <: "journald" before it), both runtimes.
    container = check(mutate=set_fields("api-gateway", logDriver=driver, logOpts={}))
    service = check(mutate=edit_service("orders", "taskSpec", "logDriver", value={"name": driver}))
    assert "CTR-031" not in ids(container), messages(container, "CTR-031")
    assert "CTR-031" not in ids(service), messages(service, "CTR-031")


def test_an_unset_replica_count_is_one(check):
    # swarm.py replicas `... or 1` (1 -> 0, 2): Docker runs one replica when none is given.
    report = check(mutate=edit_service("orders", "mode", value={"replicated": {}}))
    assert messages(report, "SWM-002") == ["orders: 1 replica(s), fewer than 2"]


def test_a_service_without_an_update_config_gets_every_rollout_finding(check):
    # swarm.py safe_rollout `failureAction != "rollback"` (!= -> <, <=: an absent action is None) and its loop
    # over ("order", "monitor").
    report = check(mutate=drop_fields("orders", "updateConfig"))
    assert messages(report, "SWM-003") == [
        "orders: updateConfig.failureAction is not rollback", "orders: updateConfig.order is not set",
        "orders: updateConfig.monitor is not set"]


def test_only_data_store_services_need_placement(check):
    # swarm.py stateful_placement `w.role == "ds"` (== -> >=, >: "mon", "lb" and "egress" sort after "ds").
    report = check(mutate=edit_service("orders", "labels", value=labels("mon", "orders")))
    assert "SWM-004" not in ids(report), messages(report, "SWM-004")


def test_only_a_load_balancer_in_host_mode_needs_placement(check):
    # networks.py no_ingress_publish_ds `w.role == "lb"` (== -> <=: "app" sorts before "lb") and
    # `port.mode == "host"` (== -> >=, >: "ingress" sorts after "host").
    on_the_mesh = check(mutate=both(edit_service("orders", "labels", value=labels("lb", "orders")),
                                    edit_service("orders", "endpointSpec", value={"ports": [
                                        {"targetPort": 8443.0, "publishedPort": 443.0, "publishMode": "ingress"}]})))
    assert "NET-003" not in ids(on_the_mesh), messages(on_the_mesh, "NET-003")
    app = check(mutate=edit_service("orders", "endpointSpec", value={"ports": [
        {"targetPort": 8080.0, "publishedPort": 18080.0, "publishMode": "host"}]}))
    assert "CTR-026" in ids(app) and "NET-003" not in ids(app), messages(app, "NET-003")


def _autoscaled_workers(topics: str | None, max_replicas: int):
    """orders becomes the workers, an autoscaler scales them with a policy a Swarm config carries, and a Kafka
    service creates `topics` ($PLATFORM_KAFKA_TOPICS; None: it auto-creates them)."""
    policy = f"min_replicas: 1\nmax_replicas: {max_replicas}\nconsumer_group: job-workers\ntopic: jobs\n"
    config = registration(SERVICE_CONFIG, "autoscale-policy", {
        "name": "autoscale-policy", "labels": labels("mon", "autoscaler", **{"platform.path": "/etc/platform/policy.yml"}),
        "data": base64.b64encode(policy.encode()).decode()})
    autoscaler = registration(S, "autoscaler", {
        "name": "autoscaler", "labels": labels("mon", "autoscaler"),
        "taskSpec": {"containerSpec": {"image": f"registry.internal/tools/autoscaler:1{DIGEST}",
                                       "args": ["--service", "orders", "--policy", "/etc/platform/policy.yml"]}}})
    kafka = registration(S, "kafka", {
        "name": "kafka", "labels": labels("ds", "kafka"),
        "taskSpec": {"containerSpec": {"image": f"apache/kafka:3.8.0{DIGEST}",
                                       "env": {} if topics is None else {"PLATFORM_KAFKA_TOPICS": topics}}}})
    return both(edit_service("orders", "labels", value=labels("app", "worker")),
                add_resource(config), add_resource(autoscaler), add_resource(kafka))


@pytest.mark.parametrize(("topics", "partitions"), [("jobs:4 logs:6", 4), (None, 1)])
def test_as_many_workers_as_partitions_is_enough(check, topics, partitions):
    # swarm.py worker_autoscaling `max_replicas > partitions` (> -> >=, !=) and KAFKA_DEFAULT_PARTITIONS 1 (-> 0, 2).
    assert messages(check(mutate=_autoscaled_workers(topics, partitions)), "SWM-005") == []
    assert messages(check(mutate=_autoscaled_workers(topics, partitions + 1)), "SWM-005") == [
        (f"autoscaler: max_replicas {partitions + 1} is above the {partitions} partition(s) of topic jobs: "
         "workers beyond them would idle")]


def _policy_file(path: str, topic: str, max_replicas: int):
    text = f"max_replicas: {max_replicas}\nconsumer_group: job-workers\ntopic: {topic}\n"
    return registration(SERVICE_CONFIG, path.rsplit("/", 1)[-1], {
        "name": path.rsplit("/", 1)[-1], "labels": labels("mon", "autoscaler", **{"platform.path": path}),
        "data": base64.b64encode(text.encode()).decode()})


def _scaler(name: str, service: str, policy: str):
    return registration(S, name, {"name": name, "labels": labels("mon", "autoscaler"), "taskSpec": {"containerSpec": {
        "image": f"registry.internal/tools/autoscaler:1{DIGEST}", "args": ["--service", service, "--policy", policy]}}})


def test_every_worker_and_every_autoscaler_is_judged(check):
    # swarm.py worker_autoscaling's three `continue`s (-> break): past a worker without an autoscaler, past an
    # autoscaler with an invalid policy, past one whose topic the stack does not create.
    kafka = registration(S, "kafka", {"name": "kafka", "labels": labels("ds", "kafka"), "taskSpec": {"containerSpec": {
        "image": f"apache/kafka:3.8.0{DIGEST}", "env": {"PLATFORM_KAFKA_TOPICS": "jobs:4"}}}})
    report = check(mutate=both(
        edit_service("orders", "labels", value=labels("app", "worker")),
        edit_service("cache", "labels", value=labels("app", "worker")),
        add_resource(kafka),
        add_resource(_policy_file("/etc/platform/other.yml", "other", 2)),
        add_resource(_policy_file("/etc/platform/jobs.yml", "jobs", 5)),
        add_resource(_scaler("scaler-invalid", "cache", "/etc/platform/missing.yml")),
        add_resource(_scaler("scaler-other", "cache", "/etc/platform/other.yml")),
        add_resource(_scaler("scaler-jobs", "cache", "/etc/platform/jobs.yml"))))
    assert sorted(messages(report, "SWM-005")) == [
        "orders: no autoscaler targets orders: its replicas do not follow the Kafka lag",
        ("scaler-invalid: the autoscaler's policy /etc/platform/missing.yml is missing or invalid: "
         "1 validation error for ScalingPolicy"),
        "scaler-jobs: max_replicas 5 is above the 4 partition(s) of topic jobs: workers beyond them would idle",
        ("scaler-other: topic other is not among the topics the stack creates (PLATFORM_KAFKA_TOPICS of kafka): "
         "the workers would consume nothing")]


def test_the_user_not_the_group_decides_root(check):
    # containers.py non_root_user `user.split(":", 1)[0]` (0 -> -1): the part before the colon is the user.
    assert "CTR-004" not in ids(check(mutate=set_fields("api-gateway", user="10001:0")))
    assert messages(check(mutate=set_fields("api-gateway", user="root:10001")), "CTR-004") == [
        "api-gateway: user is root"]


def test_a_container_retrying_more_than_the_limit_is_reported(check):
    # containers.py restart_policy `retries <= limit` (<= -> is not: a float count is never the int limit).
    report = check(mutate=set_fields("api-gateway", maxRetryCount=6.0))
    assert messages(report, "CTR-022") == ["api-gateway: restart on-failure needs maxRetryCount between 1 and 5"]


def test_only_the_overlay_driver_is_judged_for_encryption(check):
    # networks.py encrypted_overlay `driver == "overlay"` (== -> >=, >): a plugin driver sorting after it has no
    # `encrypted` option to set.
    plugin = registration("docker:index/network:Network", "weave",
                          {"name": "weave", "driver": "weaveworks/net-plugin:latest_release", "internal": True})
    report = check(mutate=add_resource(plugin))
    assert "NET-002" not in ids(report), messages(report, "NET-002")
