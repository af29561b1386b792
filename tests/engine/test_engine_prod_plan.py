"""Every container definition of the prod plan, created on a real Docker engine with the options the provider
sends (internal/provider/resource_docker_container_funcs.go), accepted, started, and read back by `docker inspect`
in exactly the form the plan sends it (the provider's read-back rules, components/runtime.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from components.runtime import go_duration_string, nano_decimal
from tests.engine.conftest import PREFIX
from tests.live.plan import (
    CONTAINER,
    MIB,
    NETWORK,
    PLAN_PREFIX,
    VOLUME,
    create_container,
    daemon_nofile_limit,
    free_port,
    load_prod_plan,
)


def _local(name: str) -> str:
    return name.replace(PLAN_PREFIX, PREFIX, 1)


def _root_propagates() -> bool:
    """Whether the host's / is a shared or slave mount (systemd's default), which an rslave bind needs."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")[0].split()
        if fields[4] == "/":
            return any(tag.startswith(("shared:", "master:")) for tag in fields[6:])
    return False


@pytest.fixture(scope="module")
def prod_plan() -> dict[str, list[dict[str, Any]]]:
    return load_prod_plan()


@pytest.fixture(scope="module")
def deployed(engine, standin_image, prod_plan):
    """The prod plan on the engine: networks, volumes, then every container, created and started."""
    networks, volumes, containers = [], [], {}
    start_errors: dict[str, str] = {}
    try:
        for inputs in prod_plan[NETWORK]:
            networks.append(engine.api.create_network(
                _local(inputs["name"]), driver=inputs["driver"], internal=inputs.get("internal", False),
                labels={item["label"]: item["value"] for item in inputs.get("labels", [])})["Id"])
        for inputs in prod_plan[VOLUME]:
            volumes.append(engine.api.create_volume(
                _local(inputs["name"]), labels={item["label"]: item["value"] for item in inputs.get("labels", [])})["Name"])
        ports = {int(p["internal"]): free_port() for inputs in prod_plan[CONTAINER] for p in inputs.get("ports", [])}
        for inputs in prod_plan[CONTAINER]:
            containers[inputs["name"]] = create_container(engine, standin_image, inputs, ports, rename=_local)
        for inputs in prod_plan[CONTAINER]:
            if inputs.get("start", True):
                try:
                    engine.api.start(containers[inputs["name"]])
                except Exception as exc:  # noqa: BLE001 - recorded and judged by the test
                    start_errors[inputs["name"]] = str(exc)
        yield containers, start_errors
    finally:
        for container in containers.values():
            engine.api.remove_container(container, force=True, v=False)
        for volume in volumes:
            engine.api.remove_volume(volume, force=True)
        for network in networks:
            engine.api.remove_network(network)


def test_the_engine_accepts_and_starts_every_prod_definition(deployed, prod_plan):
    containers, start_errors = deployed
    assert set(containers) == {inputs["name"] for inputs in prod_plan[CONTAINER]}
    limit = daemon_nofile_limit()
    # Two refusals at start belong to the host, not to the definition (which the engine accepted above):
    # a ulimit above the daemon's own (the packaged docker.service sets LimitNOFILE=infinity), and an rslave
    # bind of / when / is a private mount (systemd makes it shared; .ci/run does when it starts dockerd).
    host_refusals = {
        inputs["name"]: "rlimit" for inputs in prod_plan[CONTAINER]
        if any(int(u["hard"]) > limit for u in inputs.get("ulimits", []))
    } | ({} if _root_propagates() else {
        inputs["name"]: "not a shared or slave mount" for inputs in prod_plan[CONTAINER]
        if any(m["source"] == "/" and m["bindOptions"]["propagation"] == "rslave" for m in inputs.get("mounts", []))
    })
    unexpected = {name: error for name, error in start_errors.items() if host_refusals.get(name, "\0") not in error}
    assert unexpected == {}


def test_every_definition_reads_back_as_sent(engine, deployed, prod_plan):
    containers, _ = deployed
    differences = []
    for inputs in prod_plan[CONTAINER]:
        state = engine.api.inspect_container(containers[inputs["name"]])
        host, config = state["HostConfig"], state["Config"]
        read_back = {
            "user": config["User"] or None,
            "hostname": config["Hostname"] if inputs.get("hostname") else None,
            "readOnly": host["ReadonlyRootfs"],
            "tmpfs": host.get("Tmpfs"),
            "sysctls": host.get("Sysctls"),
            "capabilities": {"drops": sorted(host.get("CapDrop") or []), "adds": sorted(host.get("CapAdd") or [])}
            if host.get("CapDrop") or host.get("CapAdd") else None,
            "securityOpts": sorted(host.get("SecurityOpt") or []) or None,
            # resource_docker_container_funcs.go: memory and swap in MiB, cpus via nanoInt64ToDecimalString.
            "memory": host["Memory"] // MIB or None,
            "memorySwap": host["MemorySwap"] // MIB if host["MemorySwap"] > 0 else None,
            "cpus": nano_decimal(host["NanoCpus"]) if host["NanoCpus"] else None,
            "restart": host["RestartPolicy"]["Name"],
            "maxRetryCount": host["RestartPolicy"]["MaximumRetryCount"] or None,
            "logDriver": host["LogConfig"]["Type"],
            "logOpts": host["LogConfig"]["Config"] or None,
            "ulimits": sorted(({"name": u["Name"], "soft": u["Soft"], "hard": u["Hard"]} for u in host["Ulimits"] or []),
                              key=str) or None,
            "healthcheck": {
                "tests": config["Healthcheck"]["Test"],
                **{key: go_duration_string(config["Healthcheck"].get(field, 0))
                   for key, field in (("interval", "Interval"), ("timeout", "Timeout"),
                                      ("startPeriod", "StartPeriod"))},
                "retries": config["Healthcheck"].get("Retries", 0),
            } if config.get("Healthcheck") else None,
            "networks": {name: sorted(set(inputs_aliases) & set(network.get("Aliases") or []))
                         for name, network in state["NetworkSettings"]["Networks"].items()
                         for inputs_aliases in [next((n["aliases"] for n in inputs.get("networksAdvanced", [])
                                                      if _local(n["name"]) == name), [])]},
            "volumes": sorted((m["Name"], m["Destination"], m["RW"]) for m in state["Mounts"] if m["Type"] == "volume"),
        }
        sent = {
            "user": inputs.get("user"),
            "hostname": inputs.get("hostname"),
            "readOnly": inputs.get("readOnly", False),
            "tmpfs": inputs.get("tmpfs"),
            "sysctls": inputs.get("sysctls"),
            "capabilities": {key: sorted(inputs["capabilities"].get(key) or [])
                             for key in ("drops", "adds")} if "capabilities" in inputs else None,
            "securityOpts": sorted(inputs.get("securityOpts") or []) or None,
            "memory": int(inputs["memory"]) if "memory" in inputs else None,
            "memorySwap": int(inputs["memorySwap"]) if "memorySwap" in inputs else None,
            "cpus": inputs.get("cpus"),
            "restart": inputs.get("restart", "no"),
            "maxRetryCount": int(inputs["maxRetryCount"]) if inputs.get("maxRetryCount") else None,
            "logDriver": inputs.get("logDriver", "json-file"),
            "logOpts": inputs.get("logOpts"),
            "ulimits": sorted(({"name": u["name"], "soft": int(u["soft"]), "hard": int(u["hard"])}
                               for u in inputs.get("ulimits", [])), key=str) or None,
            "healthcheck": {**{k: inputs["healthcheck"][k] for k in ("tests", "interval", "timeout", "startPeriod")},
                            "retries": int(inputs["healthcheck"]["retries"])} if "healthcheck" in inputs else None,
            "networks": {_local(n["name"]): sorted(n["aliases"]) for n in inputs.get("networksAdvanced", [])}
            or {inputs.get("networkMode", "bridge"): []},
            "volumes": sorted((_local(v["volumeName"]), v["containerPath"], not v.get("readOnly", False))
                              for v in inputs.get("volumes", [])),
        }
        if read_back != sent:
            differences.append((inputs["name"], {k: (sent[k], read_back[k]) for k in sent if sent[k] != read_back[k]}))
    assert differences == []


def test_networks_and_volumes_read_back_as_sent(engine, deployed, prod_plan):
    for inputs in prod_plan[NETWORK]:
        state = engine.api.inspect_network(_local(inputs["name"]))
        assert (state["Driver"], state["Internal"]) == (inputs["driver"], inputs.get("internal", False))
        assert state["Labels"] == {item["label"]: item["value"] for item in inputs.get("labels", [])}
    for inputs in prod_plan[VOLUME]:
        state = engine.api.inspect_volume(_local(inputs["name"]))
        assert state["Labels"] == {item["label"]: item["value"] for item in inputs.get("labels", [])}


def test_the_buckets_name_leads_the_data_network_to_the_store_gateway(engine, deployed, prod_plan):
    """PostgreSQL and the backup jobs sit on the internal data network and address the bucket by its
    virtual-hosted name (Pulumi.prod.yaml: orchestration-prod-backups in eu-central-1): Docker's DNS answers
    that name there with the gateway's address, the one way out, and nothing else answers to it."""
    containers, _ = deployed
    bucket_host = "orchestration-prod-backups.s3.eu-central-1.amazonaws.com"
    data = _local("orchestration-prod-data")
    gateway = engine.api.inspect_container(containers["orchestration-prod-s3-gateway"])
    assert set(gateway["NetworkSettings"]["Networks"]) == {data, _local("orchestration-prod-egress")}
    gateway_address = gateway["NetworkSettings"]["Networks"][data]["IPAddress"]
    for client in ("orchestration-prod-postgres", "orchestration-prod-postgres-backup",
                   "orchestration-prod-clickhouse-backup"):
        code, output = engine.containers.get(containers[client]).exec_run(
            ["/bin/busybox", "nslookup", bucket_host], user="0")
        answers = re.findall(r"Address(?: \d+)?:\s*([\d.]+)", output.decode().split(bucket_host, 1)[-1])
        assert (code, answers) == (0, [gateway_address]), (client, output.decode())
