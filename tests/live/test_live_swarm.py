"""The prod stack with the Swarm runtime booted on the real single-node Swarm from its own definitions
(tests/live/swarm_deploy.py), proven as a user would: every service converged, its tasks healthy within their
bound and none restarted or failed for a minute after; HTTPS through the load balancer with the stack's CA (login,
a job submitted and processed by a worker, each api-gateway replica answering); Prometheus scraping every target
(`tasks.<service>`); no alert firing in Alertmanager; the application's role confined; a scheduled backup and the
WAL archive in the store (tests/live/store.py, as Swarm services on the stack's egress network) through its
gateway; every definition reading back as sent (a second `up` changes nothing); and last, `infra backup restore`
(the runbook's restore) returning PostgreSQL to a point in time in a one-off task. Images: tests/live/images.py (real software where Debian has it,
stand-ins named as such)."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid

import pytest
import yaml

from platform_infra.components.zones import ZONES
from tests.live.deploy import live_plan
from tests.live.mailrelay import MailRelay
from tests.live.probes import (
    RESTORED_ROWS,
    STACK_PREFIX,
    VERIFY_HOST_LIMITED,
    VERIFY_NAMED_UNKNOWN,
    EdgeClient,
    alertmanager_get,
    alerts_drill_delivered,
    as_superuser,
    assert_app_role_confined,
    assert_backup_and_wal_archive_reach_the_store,
    assert_clickhouse_accounts_confined,
    create_bucket,
    failover_drill,
    firing_but_unresolvable_uptime,
    host_port,
    infra_verify,
    interrupted_alerts_drill,
    live_project,
    live_secrets,
    live_settings,
    load_drill_held,
    operator_env,
    prometheus_get,
    request_counts,
    rows_around_a_point_in_time,
    show_verify,
    table,
    targets_all_up,
    verify_passes_what_the_stand_ins_allow,
    wait_for,
)
from tests.live.reachability import matrix_differences, membership_differences, missing, reachability
from tests.live.store import LiveStore
from tests.live.swarm_deploy import CONFIG, NETWORK, SECRET, SERVICE, SwarmDeployment
from tests.live.swarm_engine import _labels, as_sent, read_back
from tests.live.tunnel import Tunnel

pytestmark = [pytest.mark.live, pytest.mark.timeout(900)]
"""The stack comes up in the first test's setup: within the services' own bounds (up to 910 s), not the suite's 300 s."""
HEALTHY_FOR = 60
"""Seconds every task must keep running healthy, none restarted, replaced or failed, once the stack is up."""
SETTINGS = {"runtime": "swarm"}
"""The prod stack's settings but for the runtime: the Swarm plan validates as it is (the connection budget counts
the start-first rollout's extra task and prod's max_connections covers it)."""


@pytest.fixture(scope="module")
def stack(engine, live_images):
    # As long as the stack's own prefix, so that names cut to Swarm's 64 characters are cut alike.
    prefix = f"lsw-{uuid.uuid4().hex}"[: len(STACK_PREFIX)]
    store = LiveStore.new(engine, prefix)
    run = live_plan("prod", SETTINGS | live_settings(store), live_secrets())

    def store_first(deployment: SwarmDeployment) -> None:
        """The store on the stack's egress network and its bucket made before any service starts, as the
        stack's BackupBucket is made before its clients."""
        store.start_swarm(deployment.local(f"{STACK_PREFIX}-egress"))
        create_bucket(deployment, store)

    deployment = SwarmDeployment(engine, run, prefix, STACK_PREFIX, before_services=store_first)
    deployment.store = store
    started = time.monotonic()
    try:
        deployment.up()
        deployment.seconds_to_up = time.monotonic() - started
        print(f"\nSwarm stack up in {deployment.seconds_to_up:.0f} s")
        print(healthy_table(deployment, live_images))
        print("\n".join(["Where this host differs:", *sorted(deployment.host_differences)]))
        yield deployment
    finally:
        if os.environ.get("LIVE_KEEP") != "1":
            removing = time.monotonic()
            store.remove()  # first: its services hold endpoints on the stack's egress network
            stored = time.monotonic()
            deployment.down()
            print(f"\nremoved: the store in {stored - removing:.0f} s, the stack in {time.monotonic() - stored:.0f} s")


def healthy_table(stack: SwarmDeployment, images: dict[str, str]) -> str:
    """component | image (real software and version, or stand-in) | tasks | tasks replaced (failed) while starting
    | healthy after N s (bound)."""
    rows = [("component", "image", "tasks", "replaced at start", "healthy after")]
    for inputs in stack.services():
        name = inputs["name"]
        image = inputs["taskSpec"]["containerSpec"]["image"]
        tasks = len([t for t in stack.tasks(name) if t["Status"]["State"] == "running"])
        replaced = len(stack.client.api.tasks(filters={"service": name})) - tasks
        software = images.get(image, "?")
        software = software if len(software) <= 72 else software[:71] + "…"
        rows.append((name.removeprefix(f"{stack.prefix}-"), f"{image} = {software}", str(tasks), str(replaced),
                     f"{stack.seconds_to_healthy(name):.1f} s (bound {stack.bounds[name]:.0f} s)"))
    return table(rows)


def plan_file(stack: SwarmDeployment, service: str, path: str) -> str:
    """The content of a file the plan gives `service` (a docker config or secret) at `path`."""
    for r in stack.of_type(CONFIG) + stack.of_type(SECRET):
        inputs = stack.host_inputs(r)
        labels = _labels(inputs["labels"])
        if (labels.get("platform.service"), labels.get("platform.path")) == (service, path):
            return base64.b64decode(inputs["data"]).decode()
    raise KeyError(f"the plan gives {service} no file {path}")


def _expected_tasks(inputs: dict) -> int:
    return 1 if inputs["mode"].get("global") else inputs["mode"]["replicated"]["replicas"]


def test_every_task_reaches_exactly_what_the_zones_design(stack):
    """From inside each task container's network namespace, every other task's every listening port on the
    stack's overlays: the matrix found is the one components/zones.py designs (printed)."""
    containers = [c for inputs in stack.services() for c in stack.task_containers(inputs["name"])]
    own = f"{stack.prefix}-"
    task = re.compile(rf"^{re.escape(own)}(.+?)\.(\d+|\w{{25}})\.\w{{25}}$")

    def name_of(container) -> str:  # <service>.<slot>, or <service> for a global service's one task here
        service, slot = task.match(container.labels["com.docker.swarm.task.name"]).groups()
        return f"{service}.{slot}" if slot.isdigit() else service

    matrix = reachability(stack.client, containers, lambda net: net.removeprefix(own) if net.startswith(own)
                          and net.removeprefix(own) in ZONES else None, f"{stack.prefix}-probe", name_of)
    print("\nreachability (Swarm runtime):\n" + matrix.table())
    if matrix.outside:  # tasks with docker_gwbridge's default route meet this sandbox's egress proxy
        stack.host_differences.add(f"{len(matrix.outside)} connections to overlay addresses were answered from "
                                   "beyond the host (this sandbox's egress proxy), not by their task: set aside")
    assert membership_differences(matrix) == {}
    assert missing(matrix) == []
    assert matrix.found == matrix.designed, matrix_differences(matrix)
    balancer = next(m.name for m in matrix.members if m.service == "load-balancer")
    assert {name.split(".")[0] for name in matrix.found[balancer]} == {"api-gateway"}


def test_every_service_converges_within_its_bound_and_no_task_restarts_or_fails_for_a_minute(stack):
    services = stack.services()
    for inputs in services:
        name = inputs["name"]
        assert stack.seconds_to_healthy(name) <= stack.bounds[name], name
    every_task = {s["name"]: {t["ID"] for t in stack.client.api.tasks(filters={"service": s["name"]})}
                  for s in services}
    deadline = time.monotonic() + HEALTHY_FOR
    while True:
        unwell = {}
        for inputs in services:
            name = inputs["name"]
            tasks = stack.client.api.tasks(filters={"service": name})
            running = [t for t in tasks if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]
            healthy = [c for c in stack.task_containers(name)
                       if c.attrs["State"].get("Health", {}).get("Status") == "healthy"]
            if {t["ID"] for t in tasks} != every_task[name] or len(running) != _expected_tasks(inputs) \
                    or len(healthy) != _expected_tasks(inputs):
                unwell[name] = stack.tasks_report(name)
        assert unwell == {}, "\n\n".join(f"{name}:\n{report}" for name, report in unwell.items())
        if time.monotonic() > deadline:
            break
        time.sleep(5)


def test_https_through_the_load_balancer_reaches_every_api_gateway_replica(stack):
    edge = EdgeClient.of(stack)
    assert edge.get("/actuator/health").status in (200, 403, 404)  # reached nginx with the stack's CA
    token = edge.login()
    assert edge.post("/api/v1/jobs", {"type": "live-test", "payload": {"n": 1}}, token=None).status == 401
    # `echo`, a job type the reference worker handles (images/standins/app Jobs.Worker.run): its result is its payload.
    job = edge.post("/api/v1/jobs", {"type": "echo", "payload": {"n": 1}}, token=token)
    assert job.status in (200, 201, 202), job.data
    job_id = json.loads(job.data)["id"]

    def finished():
        found = json.loads(edge.get(f"/api/v1/jobs/{job_id}", token=token).data)
        return found if found.get("status") in ("succeeded", "failed") else None

    done = wait_for(finished, 90, f"job {job_id} processed by a worker")
    print("job:", done)
    assert (done["status"], done["result"]) == ("succeeded", {"n": 1}), done
    assert re.fullmatch(r"worker-[1-9]\d*", done["workerId"]), done
    # nginx balances over the service's virtual IP, which balances over every task: each replica answers.
    before = request_counts(stack, "/api/v1/jobs/{id}")
    replicas = _expected_tasks(next(s for s in stack.services() if s["name"].endswith("-api-gateway")))
    assert len(before) == replicas, before
    for _ in range(20):
        assert edge.get(f"/api/v1/jobs/{job_id}", token=token).status == 200
    after = request_counts(stack, "/api/v1/jobs/{id}")
    print("requests answered per api-gateway task:", {url: after[url] - before.get(url, 0) for url in after})
    assert all(after[url] > before.get(url, 0) for url in after), (before, after)


def test_prometheus_scrapes_every_target(stack):
    targets = targets_all_up(stack)
    jobs = {t["labels"]["job"] for t in targets}
    print("scrape jobs:", sorted(jobs))
    # Every job of the configuration the stack gives Prometheus has its targets, all up.
    configured = yaml.safe_load(plan_file(stack, "prometheus", "/etc/platform/prometheus.yml"))
    assert jobs == {job["job_name"] for job in configured["scrape_configs"]}
    # Every task of a scraped service is a target of its own (tasks.<service>: one A record per task).
    per_job = {job: sum(t["labels"]["job"] == job for t in targets) for job in jobs}
    for inputs in stack.services():
        service = inputs["name"].removeprefix(f"{stack.prefix}-")
        if service in per_job:
            assert per_job[service] == _expected_tasks(inputs), (service, per_job[service])


def test_no_alert_fires_on_the_healthy_stack(stack):
    assert firing_but_unresolvable_uptime(stack) == []


def test_the_application_role_cannot_create_roles_or_read_other_databases(stack):
    assert_app_role_confined(stack)


def test_each_clickhouse_client_has_its_own_user_from_its_own_task(stack):
    """ClickHouse lets each user in from the addresses of `tasks.<client>` only, the clients reaching its task
    directly (`tasks.clickhouse`), not through the service's virtual IP, whose load balancer would be the source."""
    assert_clickhouse_accounts_confined(stack)


def test_the_definitions_read_back_as_sent(stack):
    """Each service, network, secret and config as the provider reads it back equals what was sent: the next
    `pulumi up` finds no difference."""
    api, differences = stack.client.api, []
    for r in stack.of_type(SERVICE):
        sent = stack.host_inputs(r)
        spec = api.inspect_service(sent["name"])["Spec"]
        if read_back(spec) != as_sent(sent):
            back, expected = read_back(spec), as_sent(sent)
            differences.append((sent["name"], {k: (expected[k], back[k]) for k in expected if expected[k] != back[k]}))
    for r in stack.of_type(NETWORK):
        sent = stack.host_inputs(r)
        state = api.inspect_network(sent["name"])
        read = {"driver": state["Driver"], "internal": state["Internal"], "attachable": state["Attachable"],
                "options": state["Options"], "labels": state["Labels"]}
        expected = {key: sent[key] for key in ("driver", "internal", "attachable", "options")} | {
            "labels": _labels(sent["labels"])}
        if read != expected:
            differences.append((sent["name"], expected, read))
    for kind, inspect in ((SECRET, api.inspect_secret), (CONFIG, api.inspect_config)):
        for r in stack.of_type(kind):
            sent = stack.host_inputs(r)
            labels = inspect(sent["name"])["Spec"].get("Labels") or {}
            if labels != _labels(sent["labels"]):
                differences.append((sent["name"], labels))
    assert differences == []



def test_wal_archiving_and_the_scheduled_backup_reach_the_store_through_its_gateway(stack):
    assert_backup_and_wal_archive_reach_the_store(stack)


# --- infra verify and the drills on the live Swarm stack ----------------------------------------------------


@pytest.fixture(scope="module")
def operated(stack):
    """The stack and what the operator's machine needs besides it, both Swarm services on its networks (whose
    overlays nothing else may join): the forwarder to its unpublished APIs (tests/live/tunnel.py) and the
    stand-in mail relay the live settings' e-mail receiver sends through (tests/live/mailrelay.py)."""
    relay, tunnel = MailRelay(stack.client, stack.prefix), Tunnel(stack, OPERATOR_PORTS)
    try:
        relay.start_swarm(stack.local(f"{STACK_PREFIX}-egress"))
        tunnel.start()
        stack.mail_relay, stack.tunnel = relay, tunnel
        stack.host_differences.add("alert e-mail: the stack's critical-email receiver sends through a stand-in "
                                   "mail relay on its egress network, in plain (require_tls off for it)")
        yield stack
    finally:
        stack.tunnel = None
        if os.environ.get("LIVE_KEEP") != "1":
            tunnel.remove()
            relay.remove()


OPERATOR_PORTS = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000}
SWARM_VERIFY_FAILS = {**VERIFY_HOST_LIMITED, "success.security-scan": "1 mandatory violations (SWM-005)"}
"""What verify may fail on this Swarm stack: what the host limits, and `infra check` on its settings (prod with
the Swarm runtime and no worker autoscaling, which SWM-005 makes mandatory on Swarm: the plan test of that rule,
tests/swarm/test_swarm_plan.py, proves the same)."""
TARGETS_SECONDS = 180
"""How long, beyond a service's own bound to run its tasks healthy (its converge timeout), Prometheus may take to
scrape each one (tasks.<service> re-resolved every 30 s, dns_sd_configs' default refresh_interval), on a host
whose load may pass 70."""


def _name(stack: SwarmDeployment, service: str) -> str:
    return stack.local(f"{STACK_PREFIX}-{service}")


def _replicas(stack: SwarmDeployment, service: str) -> int:
    return stack.client.api.inspect_service(_name(stack, service))["Spec"]["Mode"]["Replicated"]["Replicas"]


def _targets(stack: SwarmDeployment, job: str) -> list[str]:
    """The health of each of the job's active scrape targets."""
    targets = json.loads(prometheus_get(stack, "/api/v1/targets?state=active"))["data"]["activeTargets"]
    return [t["health"] for t in targets if t["labels"].get("job") == job]


def _at(stack: SwarmDeployment, service: str, replicas: int) -> None:
    """Until the service runs `replicas` tasks and Prometheus scrapes that many targets of its job, all up."""
    wait_for(lambda: len([t for t in stack.tasks(_name(stack, service)) if t["Status"]["State"] == "running"])
             == replicas and _targets(stack, service) == ["up"] * replicas,
             stack.bounds[_name(stack, service)] + TARGETS_SECONDS, f"{service}: {replicas} tasks running, each scraped")


def _no_down_alert(stack: SwarmDeployment, service: str) -> None:
    wait_for(lambda: not [a for a in json.loads(alertmanager_get(stack, "/api/v2/alerts?active=true"))
                          if a["labels"].get("alertname") in ("ServiceDown", "ServiceAbsent")
                          and a["labels"].get("service") == service], TARGETS_SECONDS,
             f"no down alert on {service} active")


@pytest.mark.timeout(1800)  # selected alone, it carries the module's boot (on a loaded host, more than 900 s)
def test_verify_on_swarm_passes_every_check_the_stand_ins_allow(operated, monkeypatch, capsys, tmp_path):
    started = time.monotonic()
    operated.verified = verify_passes_what_the_stand_ins_allow(operated, monkeypatch, capsys, tmp_path,
                                                               SWARM_VERIFY_FAILS)
    print(f"the Swarm verify test took {time.monotonic() - started:.0f} s")


def test_verify_on_swarm_with_the_worker_service_scaled_down_fails_its_check_and_only_that(
        operated, monkeypatch, capsys, tmp_path):
    """The worker service scaled from 3 to 2: once Prometheus dropped the gone task's target (tasks.worker
    re-resolved), the first-hour check of the services fails naming it, and nothing else changes."""
    stack, started = operated, time.monotonic()
    healthy = getattr(stack, "verified", None) or infra_verify(stack, monkeypatch, capsys, tmp_path)
    replicas = _replicas(stack, "worker")
    stack.client.services.get(_name(stack, "worker")).scale(replicas - 1)
    try:
        _at(stack, "worker", replicas - 1)
        report = infra_verify(stack, monkeypatch, capsys, tmp_path, "--phase", "first-hour")
        show_verify(report)
    finally:
        stack.client.services.get(_name(stack, "worker")).scale(replicas)
        _at(stack, "worker", replicas)
    before = {h["id"]: h["status"] for h in healthy["checks"]}
    changed = {c["id"]: (c["status"], c["evidence"]) for c in report["checks"] if c["status"] != before[c["id"]]}
    assert changed.pop("post.hour.services-healthy") == (
        "fail", f"{_name(stack, 'worker')}: scaled to {replicas - 1} of {replicas} replicas, {replicas - 1} running")
    # Until Prometheus re-resolves tasks.worker (30 s), the gone task may still be a down target: then the metrics
    # check fails too, naming it (as on Docker, where a stopped container stays a down target); nothing else.
    # (Selected alone, the baseline is taken on a young stack, where a target may not be up yet: then it passes.)
    assert set(changed) <= {"post.hour.metrics-collected"}, changed
    assert all(status == "pass" or "worker/" in evidence for status, evidence in changed.values()), changed
    assert report["exit"] == 1
    print(f"the Swarm scaled-down verify test took {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(600)
def test_an_interrupted_alerts_drill_on_swarm_restores_the_replicas(operated, tmp_path):
    """SIGTERM once the drill scaled the worker service to 0: it scales it back to its replicas before it exits."""
    stack, started = operated, time.monotonic()
    replicas = _replicas(stack, "worker")
    _no_down_alert(stack, "worker")  # else the drill refuses: nothing to drill
    interrupted_alerts_drill(stack, tmp_path, lambda: _replicas(stack, "worker") == 0,
                             "the drill scales the worker service to 0")
    assert _replicas(stack, "worker") == replicas
    _at(stack, "worker", replicas)
    print(f"the Swarm interrupted alerts drill test took {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(600)
def test_alerts_drill_on_swarm_fires_delivers_and_resolves(operated, monkeypatch, capsys, tmp_path):
    """The worker service scaled to 0: ServiceDown (its tasks' targets failing) or ServiceAbsent (none left once
    tasks.worker is re-resolved, within 30 s) fires after the rule's `for`, the e-mail receiver mails it, and it
    resolves once the drill scaled the service back; the service runs its replicas again."""
    stack, started = operated, time.monotonic()
    replicas = _replicas(stack, "worker")
    _at(stack, "worker", replicas)
    _no_down_alert(stack, "worker")  # after the interruption test: its short outage may have alerted
    alerts_drill_delivered(stack, monkeypatch, capsys, tmp_path, {"ServiceDown", "ServiceAbsent"}, 30 + 90)
    assert _replicas(stack, "worker") == replicas
    _at(stack, "worker", replicas)
    print(f"the Swarm alerts drill test took {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(600)
def test_load_drill_through_the_swarm_edge(operated, monkeypatch, capsys, tmp_path):
    started = time.monotonic()
    load_drill_held(operated, monkeypatch, capsys, tmp_path)
    print(f"the Swarm load drill test took {time.monotonic() - started:.0f} s")


@pytest.mark.timeout(900)
def test_failover_drill_on_swarm_under_load_loses_no_job(operated, monkeypatch, capsys, tmp_path):
    """An api-gateway task and a worker task killed (the orchestrator starts new ones) and PostgreSQL restarted
    by a forced update under a load of jobs: each service runs its replicas again, every job accepted succeeds."""
    stack, started = operated, time.monotonic()
    services = ("api-gateway", "worker", "postgres")
    before = {s: {t["ID"] for t in stack.tasks(_name(stack, s))} for s in services}
    data = failover_drill(stack, monkeypatch, capsys, tmp_path, [_name(stack, s) for s in services])
    for service in services:
        running = {t["ID"] for t in stack.tasks(_name(stack, service)) if t["Status"]["State"] == "running"}
        assert len(running) == _replicas(stack, service) and running - before[service], service
    assert not {t["ID"] for t in stack.tasks(_name(stack, "postgres"))} & before["postgres"]  # every task new
    print(f"the Swarm failover drill test took {time.monotonic() - started:.0f} s; faults: {data['faults']}")


RESTORE_BLOCK = "# Swarm: restore PostgreSQL"
"""The first line of the runbook's Swarm restore block."""


def unwell_services(stack: SwarmDeployment) -> dict[str, str]:
    """The services without their expected number of running, healthy tasks, with their tasks' report."""
    unwell = {}
    for inputs in stack.services():
        name = inputs["name"]
        healthy = [c for c in stack.task_containers(name)
                   if c.attrs["State"].get("Health", {}).get("Status", "healthy") == "healthy"]
        if len(healthy) != _expected_tasks(inputs):
            unwell[name] = stack.tasks_report(name)
    return unwell


def _tasks(stack: SwarmDeployment) -> dict[str, set[str]]:
    """Each service's running tasks, by id."""
    return {s["name"]: {t["ID"] for t in stack.tasks(s["name"]) if t["Status"]["State"] == "running"}
            for s in stack.services()}


STOPPED_BY_THE_RESTORE = ("api-gateway", "orchestrator", "worker", "log-aggregator", "query-service",
                          "postgres-backup", "postgres-exporter", "postgres")


@pytest.mark.timeout(1800)  # a backup on the schedule, the restore, and the stack's start when run alone
def test_infra_backup_restore_returns_postgresql_to_a_point_in_time(operated, monkeypatch, capsys, tmp_path):
    """Last: it stops PostgreSQL and its clients. `--plan` names the backup set, the WAL and every service it
    scales to 0, and stops none; then the restore to a time after a scheduled backup, in a one-off task: the rows
    written before that backup are there, and those written between the backup and that time (replayed from the
    archived WAL); the rows written after it are gone; PostgreSQL is promoted, every service it stopped runs
    again with as many tasks as before, nothing of the restore is left, and verify's first hour passes but for
    what the stand-ins cannot show."""
    from platform_infra.infra.cli import main

    stack, test_started = operated, time.monotonic()
    project = live_project(stack)
    target = rows_around_a_point_in_time(stack)
    before = _tasks(stack)
    for key, value in operator_env(stack, tmp_path).items():
        monkeypatch.setenv(key, value)
    urls = {service: stack.tunnel.url(service, port) for service, port in OPERATOR_PORTS.items()}

    def restore(*extra: str) -> dict:
        capsys.readouterr()
        code = main(["backup", "restore", "--stack", "prod", "--project", str(project), "--name-prefix",
                     stack.prefix, "--format", "json", "--to", target, "--prometheus-url", urls["prometheus"],
                     "--grafana-url", urls["grafana"], "--endpoint", f"https://127.0.0.1:{host_port(stack, 443)}",
                     *extra])
        captured = capsys.readouterr()
        return {**(json.loads(captured.out) if captured.out.strip() else {"stderr": captured.err}), "exit": code}

    plan = restore("--plan")
    print("plan:", json.dumps(plan))
    assert plan["exit"] == 0, plan
    wanted = {f"{stack.prefix}-{service}": _expected_tasks(inputs) for inputs in stack.services()
              for service in STOPPED_BY_THE_RESTORE if inputs["name"] == f"{stack.prefix}-{service}"}
    assert {s["name"]: s["replicas"] for s in plan["stop"]} == wanted, plan
    assert plan["stop"][-1]["service"] == "postgres" and plan["runtime"] == "swarm", plan
    assert plan["wal"]["segments_at_most"] >= 1 and plan["backup"]["stored_bytes"] > 0, plan
    assert _tasks(stack) == before  # --plan stopped nothing
    started = time.monotonic()
    report = restore("--yes-in-prod")
    took = time.monotonic() - started
    data = report.get("data", {})
    with capsys.disabled():
        print(f"\ninfra backup restore (Swarm) to {target} took {took:.0f} s:",
              {k: data.get(k) for k in ("seconds", "restore_exit", "restore_error", "promoted", "unhealthy")})
        print("its log:", data.get("restore_log"))
        print("verify's first hour:", data.get("verify_first_hour"))
    assert data.get("restored") is True and data["promoted"] is True, report
    assert data["plan"]["backup"]["label"] == plan["backup"]["label"]
    assert as_superuser(stack, "SELECT phase, count(*) FROM live_restore GROUP BY phase ORDER BY phase") \
        == RESTORED_ROWS
    assert as_superuser(stack, "SELECT pg_is_in_recovery()") == "f"
    assert wait_for(lambda: unwell_services(stack) == {} or None, 120, "every service healthy again")
    after = _tasks(stack)
    replaced = {name for name in before if not before[name] & after[name]}
    assert replaced == set(wanted), replaced ^ set(wanted)  # each one stopped and started, and only those
    assert {name: len(after[name]) for name in wanted} == wanted
    # Nothing of the restore is left: no service, no container holding the data volume.
    assert stack.client.api.services(filters={"name": f"{stack.prefix}-restore"}) == []
    assert stack.client.api.containers(
        all=True, filters={"label": f"com.docker.swarm.service.name={stack.prefix}-restore"}) == []
    checks = {c["id"]: c for c in report["checks"][1:]}
    assert report["checks"][0]["id"] == "rollback.restore-database" and report["checks"][0]["status"] == "pass"
    not_passing = {i: (c["status"], c["evidence"]) for i, c in checks.items() if c["status"] != "pass"}
    assert set(not_passing) <= set(VERIFY_NAMED_UNKNOWN) and {s for s, _ in not_passing.values()} <= {"unknown"}, \
        not_passing
    assert report["exit"] == (0 if not not_passing else 1)  # unknown is never a pass
    EdgeClient.of(stack).login()  # the restored users table, through the restarted api-gateway
    print(f"the Swarm restore test took {time.monotonic() - test_started:.0f} s (the restore {took:.0f} s)")
