"""Issue 20's weakenings applied to this repository's prod plan, in both runtimes: each one fails `infra check
--stack prod` with a mandatory violation of the rule that guards it, and the plan as it is passes."""

from __future__ import annotations

import base64
import copy
import datetime
import re
from collections.abc import Callable

import pytest

from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import Registration, load_project, run_program
from platform_infra.policies.policy_config import default_path
from tests.policies.conftest import as_run, ids, messages
from tests.swarm.test_swarm_plan import AUTOSCALING, DATA, swarm_project

PROD_CONFIG = default_path("prod")
Weakening = Callable[[list[Registration]], None]


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, list[Registration]]:
    swarm = swarm_project(tmp_path_factory.mktemp("swarm"), runtime="swarm", autoscaling=AUTOSCALING, data=DATA)
    return {
        "docker": run_program(load_project(REPO_ROOT, "prod"), "prod").resources,
        "swarm": run_program(load_project(swarm, "prod"), "prod").resources,
    }


def check(plans, runtime: str, weaken: Weakening | None = None):
    from platform_infra.infra.check import evaluate

    resources = copy.deepcopy(plans[runtime])
    if weaken is not None:
        weaken(resources)
    return evaluate(as_run(resources), PROD_CONFIG)


def workload(resources, name: str) -> Registration:
    return next(r for r in resources if r.name == name and r.type.endswith(("container:Container", "service:Service")))


def spec(resources, name: str) -> dict:
    """A Container's inputs, or a Service's containerSpec: where command, env and healthcheck live."""
    found = workload(resources, name)
    return found.inputs["taskSpec"]["containerSpec"] if found.type.endswith("Service") else found.inputs


def edit_file(path_suffix: str, edit: Callable[[str], str]) -> Weakening:
    """Edit the file wherever the runtime carries it: a carrier's upload or a Swarm config or secret."""

    def weaken(resources):
        edited = 0
        for r in resources:
            for upload in r.inputs.get("uploads") or []:
                if upload["file"].endswith(path_suffix):
                    holder, key = (upload["content"], "value") if isinstance(upload["content"], dict) else (
                        upload, "content")
                    holder[key] = edit(holder[key])
                    edited += 1
            path = {x["label"]: x["value"] for x in r.inputs.get("labels") or []}.get("platform.path", "")
            if path.endswith(path_suffix):
                holder, key = (r.inputs["data"], "value") if isinstance(r.inputs["data"], dict) else (r.inputs, "data")
                holder[key] = base64.b64encode(edit(base64.b64decode(holder[key]).decode()).encode()).decode()
                edited += 1
        assert edited, f"no {path_suffix} in the plan"

    return weaken


def add_env(name: str, key: str, value: str) -> Weakening:
    def weaken(resources):
        target = spec(resources, name)
        if "envs" in target:
            target["envs"] = [e for e in target["envs"] if not e.startswith(f"{key}=")] + [f"{key}={value}"]
        else:
            target.setdefault("env", {})[key] = value

    return weaken


def add_args(name: str, *args: str) -> Weakening:
    def weaken(resources):
        target = spec(resources, name)
        key = "command" if "envs" in target or workload(resources, name).type.endswith("Container") else "args"
        target[key] = [*(target.get(key) or []), *args]

    return weaken


def set_command(name: str, edit: Callable[[list[str]], list[str]]) -> Weakening:
    def weaken(resources):
        target = spec(resources, name)
        key = "command" if workload(resources, name).type.endswith("Container") else "args"
        target[key] = edit(list(target.get(key) or []))

    return weaken


def replace_in_command(name: str, old: str, new: str) -> Weakening:
    """Replace text in every part of the workload's entrypoint and command, whichever holds it."""

    def weaken(resources):
        target = spec(resources, name)
        for key in ("entrypoints", "command", "commands", "args"):
            if target.get(key):
                target[key] = [part.replace(old, new) for part in target[key]]
        assert any(new in part for key in ("entrypoints", "command", "commands", "args")
                   for part in target.get(key) or []), f"no {old} in {name}'s command"

    return weaken


def add_label(name: str, label: str, value: str) -> Weakening:
    def weaken(resources):
        found = workload(resources, name)
        targets = [found.inputs["labels"]]
        if found.type.endswith("Service"):
            targets.append(found.inputs["taskSpec"]["containerSpec"]["labels"])
        for labels in targets:
            labels[:] = [x for x in labels if x["label"] != label] + [{"label": label, "value": value}]

    return weaken


def both(*weakenings: Weakening) -> Weakening:
    def weaken(resources):
        for weakening in weakenings:
            weakening(resources)

    return weaken


def trust(text: str) -> str:
    return "host all postgres all trust\n" + text


def hba_in_pgdata(arguments: list[str]) -> list[str]:
    return [("hba_file=/var/lib/postgresql/data/pgdata/pg_hba.conf" if a.startswith("hba_file=") else a)
            for a in arguments]


def without_hba_file(arguments: list[str]) -> list[str]:
    index = next(i for i, a in enumerate(arguments) if a.startswith("hba_file="))
    return arguments[: index - 1] + arguments[index + 1:]


def edge_network(runtime: str) -> Weakening:
    def weaken(resources):
        if runtime == "docker":
            workload(resources, "api-gateway-1").inputs["networksAdvanced"].append(
                {"name": "orchestration-prod-edge", "aliases": ["api-gateway"]})
        else:
            workload(resources, "api-gateway").inputs["taskSpec"]["networksAdvanceds"].append(
                {"name": "orchestration-prod-edge", "aliases": ["api-gateway"]})

    return weaken


ANONYMOUS_INI = "[auth.anonymous]\nenabled = true\n"


def grafana_ini(runtime: str) -> Weakening:
    """An uploaded grafana.ini turning anonymous access on: on the files carrier, or as a Swarm config."""

    def weaken(resources):
        if runtime == "docker":
            workload(resources, "monitoring-grafana-files").inputs["uploads"].append(
                {"file": "/etc/grafana/grafana.ini", "content": ANONYMOUS_INI})
            return
        config = next(r for r in resources if r.type.endswith("serviceConfig:ServiceConfig")
                      and r.name.startswith("monitoring-grafana-"))
        for label in config.inputs["labels"]:
            if label["label"] == "platform.path":
                label["value"] = "/etc/grafana/grafana.ini"
        config.inputs["data"] = base64.b64encode(ANONYMOUS_INI.encode()).decode()

    return weaken


def far_waiver(runtime: str) -> Weakening:
    return add_label("monitoring-cadvisor", "platform.waiver.CTR-014",
                     "reason=cAdvisor reads the Docker API;expires=2099-12-31")


def label_waived_trust(text: str) -> str:
    return "local all all trust\n" + text


SOON = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()

# (rule, weakening by runtime); what each applies is in its name.
WEAKENINGS: dict[str, tuple[str, Callable[[str], Weakening]]] = {
    "superuser trust in the uploaded hba_file": ("DS-PG-003", lambda rt: edit_file("pg_hba.conf", trust)),
    "hba_file on the command line pointing at initdb's file, initdb trusting": (
        "DS-PG-003", lambda rt: both(set_command("postgres", hba_in_pgdata),
                                     add_env("postgres", "POSTGRES_INITDB_ARGS", "--auth-host=trust"))),
    "hba_file on the command line naming a file the stack does not carry": (
        "DS-PG-003", lambda rt: set_command("postgres", lambda a: [*a, "-c", "hba_file=/tmp/pg_hba.conf"])),
    "no hba_file and POSTGRES_HOST_AUTH_METHOD=trust in the environment": (
        "DS-PG-003", lambda rt: both(set_command("postgres", without_hba_file),
                                     add_env("postgres", "POSTGRES_HOST_AUTH_METHOD", "trust"))),
    "a label waiving DS-PG-003 over a trusting hba_file": (
        "DS-PG-003", lambda rt: both(edit_file("pg_hba.conf", label_waived_trust),
                                     add_label("postgres", "platform.waiver.DS-PG-003",
                                               f"reason=lab;expires={SOON}"))),
    "an application service on the internet-facing edge network": ("NET-001", edge_network),
    "Grafana anonymous viewing in the environment": (
        "MON-GRAF-002", lambda rt: add_env("monitoring-grafana", "GF_AUTH_ANONYMOUS_ENABLED", "true")),
    "Grafana anonymous viewing in an uploaded grafana.ini": ("MON-GRAF-002", grafana_ini),
    "Prometheus' lifecycle API on its command line": (
        "MON-PROM-002", lambda rt: add_args("monitoring-prometheus", "--web.enable-lifecycle")),
    "Prometheus' admin API on its command line": (
        "MON-PROM-002", lambda rt: add_args("monitoring-prometheus", "--web.enable-admin-api")),
    "Redis' debug and module commands in redis.conf": (
        "DS-REDIS-002", lambda rt: edit_file("redis.conf", lambda t: t.replace('rename-command DEBUG ""\n', "")
                                             + "enable-debug-command yes\nenable-module-command yes\n")),
    "Redis' module command on its command line": (
        "DS-REDIS-002", lambda rt: set_command("redis", lambda a: [*a, "--enable-module-command", "yes"])
        if rt == "docker" else add_args("redis", "--enable-module-command", "yes")),
    "a credential on the healthcheck's command line": (
        "SEC-005", lambda rt: lambda rs: spec(rs, "redis")["healthcheck"].update(
            tests=["CMD", "redis-cli", "-a", "Zq8vN3kP0wLx7TbR2mYc", "ping"])),
    "a credential on a command line as a URL": (
        "SEC-005", lambda rt: add_args("monitoring-prometheus", "--web.external-url=https://admin:Zq8vN3kP0wLx@x/")),
    "a waiver until 2099": ("CTR-014", far_waiver),
    # An account per client (issue 20 item 2): each weakening in the uploaded file, the environment, the command line.
    "the superuser let in over TCP by the uploaded hba_file": (
        "DS-PG-004", lambda rt: edit_file("pg_hba.conf", lambda t: t.replace(
            "host all postgres all reject", "host all postgres samenet scram-sha-256"))),
    "no hba_file on the command line: initdb's host line from the environment lets the superuser in": (
        "DS-PG-004", lambda rt: set_command("postgres", without_hba_file)),
    "hba_file on the command line pointing at initdb's file": (
        "DS-PG-004", lambda rt: set_command("postgres", hba_in_pgdata)),
    "Redis' one shared password (requirepass) in redis.conf": (
        "DS-REDIS-003", lambda rt: edit_file("redis.conf", lambda t: t + "requirepass Zq8vN3kP0wLx7TbR2mYc\n")),
    "Redis' default user switched on in redis.conf": (
        "DS-REDIS-003", lambda rt: edit_file("redis.conf", lambda t: t.replace("user default off", "user default on nopass"))),
    "an all-powerful Redis user on the command line": (
        "DS-REDIS-003", lambda rt: set_command("redis", lambda a: [*a, "--user", "admin", "on", "nopass", "allcommands"])
        if rt == "docker" else add_args("redis", "--user", "admin", "on", "nopass", "allcommands")),
    "two services sharing one Redis user in the environment": (
        "DS-REDIS-003", lambda rt: add_env("orchestrator", "SPRING_DATA_REDIS_USERNAME", "api-gateway")),
    "the Redis exporter without a user of its own in the environment": (
        "DS-REDIS-003", lambda rt: add_env("monitoring-redis-exporter", "REDIS_USER", "")),
    "Kafka's ANONYMOUS super user in the environment": (
        "DS-KAFKA-002", lambda rt: add_env("kafka", "KAFKA_SUPER_USERS", "User:platform;User:ANONYMOUS")),
    "Kafka's ANONYMOUS super user on the command line": (
        "DS-KAFKA-002", lambda rt: add_args("kafka", "--override", "super.users=User:ANONYMOUS")),
    "Kafka's controller listener without authentication beyond loopback, in the environment": (
        "DS-KAFKA-002", lambda rt: both(
            add_env("kafka", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "BROKER:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"),
            add_env("kafka", "KAFKA_LISTENERS", "BROKER://:9092,CONTROLLER://:9093"))),
    "every service logging in to Kafka as one user, in their uploaded JAAS files": (
        "DS-KAFKA-002", lambda rt: edit_file("spring.kafka.properties.sasl.jaas.config",
                                             lambda t: re.sub(r'username="[^"]*"', 'username="orchestrator"', t))),
    "the Kafka exporter logging in as the super user, on its command line": (
        "DS-KAFKA-002", lambda rt: replace_in_command("monitoring-kafka-exporter", "--sasl.username=kafka-exporter",
                                                      "--sasl.username=platform")),
}


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
def test_the_prod_plan_as_it_is_has_no_mandatory_violation(plans, runtime):
    report = check(plans, runtime)
    assert ids(report, "mandatory") == set(), [v["message"] for v in report.violations]


@pytest.mark.parametrize("runtime", ["docker", "swarm"])
@pytest.mark.parametrize("weakening", list(WEAKENINGS))
def test_each_weakening_fails_the_prod_plan_with_a_mandatory_violation(plans, runtime, weakening):
    rule, make = WEAKENINGS[weakening]
    report = check(plans, runtime, make(runtime))
    assert rule in ids(report, "mandatory"), (weakening, sorted(ids(report)), messages(report, rule))
    assert report.failed


def test_the_2099_waiver_is_refused_for_its_horizon(plans):
    report = check(plans, "docker", far_waiver("docker"))
    assert any("refused: it expires 2099-12-31, beyond the 365 days a critical rule may be waived" in m
               for m in messages(report, "CTR-014"))
