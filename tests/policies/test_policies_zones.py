"""NET-004 zone-membership on this repository's prod plan, in both runtimes: the plan as it is passes; a container
or a Swarm service joining a network its role (or its service) is not given in components/zones.py, or a
network outside the table, fails `infra check --stack prod` with a mandatory violation."""

from __future__ import annotations

import copy

import pytest

from platform_infra.components.zones import ZONES, allowed_roles
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import Registration, load_project, run_program
from platform_infra.policies.policy_config import default_path
from platform_infra.policies.registry import MANDATORY, all_rules
from tests.policies.conftest import as_run, ids, messages
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

NETWORK = "docker:index/network:Network"


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, list[Registration]]:
    swarm = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return {"docker": run_program(load_project(REPO_ROOT, "prod"), "prod").resources,
            "swarm": run_program(load_project(swarm, "prod"), "prod").resources}


def check(plans, runtime: str, weaken=None):
    from platform_infra.infra.check import evaluate

    resources = copy.deepcopy(plans[runtime])
    if weaken is not None:
        weaken(resources)
    return evaluate(as_run(resources), default_path("prod"))


def workload(resources, name: str) -> Registration:
    return next(r for r in resources if r.name == name and r.type.endswith(("container:Container", "service:Service")))


def network(resources, zone: str) -> Registration:
    return next(r for r in resources if r.type == NETWORK and r.name == f"network-{zone}")


def join(name: str, zone: str):
    """Attach a workload to a zone's network as its runtime does: a Container by name, a Service by id (the
    dependency Pulumi records with it)."""

    def weaken(resources):
        target, net = workload(resources, name), network(resources, zone)
        if target.type.endswith("Service"):
            target.inputs["taskSpec"]["networksAdvanceds"].append({"id": f"{net.name}-id", "aliases": [name]})
            target.dependencies.append(net.urn)
        else:
            target.inputs["networksAdvanced"].append({"name": net.inputs["name"], "aliases": [name]})

    return weaken


def test_the_rule_is_mandatory_in_prod_with_the_tables_roles_as_default():
    rule = next(r for r in all_rules() if r.id == "NET-004")
    assert rule.prod == MANDATORY
    assert rule.options["allowedRoles"]["default"] == {zone: sorted(allowed_roles(zone)) for zone in ZONES}
    assert rule.options["allowedRoles"]["default"]["edge"] == ["lb"]


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_the_plan_as_it_is_passes(plans, runtime):
    report = check(plans, runtime)
    assert messages(report, "NET-004") == []
    # ... and every zone of the table is a network of the plan, labelled with its zone.
    zones = {x["value"] for r in plans[runtime] if r.type == NETWORK for x in r.inputs["labels"]
             if x["label"] == "platform.network"}
    # The autoscaler (and its socket proxy's network) runs on Swarm only.
    assert zones == set(ZONES) - ({"autoscaler-engine"} if runtime == "docker" else set())


@pytest.mark.parametrize(("runtime", "name", "zone", "message"), [
    # A container (Docker runtime, attached by name): the edge nginx's network given to an app.
    ("docker", "api-gateway-1", "edge", ("api-gateway-1: role app may not join the edge network "
     "orchestration-prod-edge (allowed: lb)")),
    # A data store on the network Prometheus scrapes exporters on.
    ("docker", "redis", "monitoring", ("redis: role ds may not join the monitoring network "
     "orchestration-prod-monitoring (allowed: mon)")),
    # A Swarm service (attached by id): PostgreSQL on the way out.
    ("swarm", "postgres", "egress", ("postgres: role ds may not join the egress network "
     "orchestration-prod-egress (allowed: egress, mon)")),
    # Role allowed, service not: api-gateway on Kafka's network (apps use Kafka, api-gateway does not).
    ("docker", "api-gateway-2", "store-kafka", ("api-gateway-2: service api-gateway joins the store-kafka network "
     "orchestration-prod-store-kafka; its zones: front, scrape, store-postgres, store-redis")),
    ("swarm", "monitoring-grafana", "alerting", ("monitoring-grafana: service grafana joins the alerting network "
     "orchestration-prod-alerting; its zones: dashboards")),
])
def test_joining_a_network_the_zones_do_not_give_fails(plans, runtime, name, zone, message):
    report = check(plans, runtime, join(name, zone))
    assert messages(report, "NET-004") == [message]
    assert "NET-004" in ids(report, "mandatory") and report.failed


def test_a_network_outside_the_table_fails(plans):
    """A new internal network that no zone describes, shared by an app and a store, is caught (NET-001 lets it
    pass: it is internal)."""

    def weaken(resources):
        side = copy.deepcopy(network(resources, "backup"))
        side.name, side.urn = "network-side", side.urn.replace("network-backup", "network-side")
        side.inputs["name"], side.inputs["labels"] = "orchestration-prod-side", []
        resources.append(side)
        for name in ("query-service", "redis"):
            workload(resources, name).inputs["networksAdvanced"].append({"name": "orchestration-prod-side"})

    report = check(plans, "docker", weaken)
    assert messages(report, "NET-004") == [
        "query-service: role app joins network orchestration-prod-side, which is in no zone of the table",
        "redis: role ds joins network orchestration-prod-side, which is in no zone of the table"]
    assert messages(report, "NET-001") == []
