"""Behaviours of the container, Swarm and network rules that mutation testing (tests/policies/mutation.py) found
no test pinned down: each test kills mutants that survived the pack's other tests (the comment names the rule
line and the mutants)."""

from __future__ import annotations

import pytest

from tests.policies.conftest import ids, messages
from tests.policies.fixtures import DIGEST, S, labels, registration
from tests.policies.test_policies_rules import add_resource, both, edit_service, set_fields


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
