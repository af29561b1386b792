"""The images built from Debian's archive (images/standins/*, tests/live/images.py), run on the real engine
exactly as the prod plan configures their containers (tests/live/plan.py: same user, read-only root, dropped
capabilities, tmpfs, files, environment, command and healthcheck), together with what they need: PostgreSQL
(the postgres-backup image, FROM the postgres stand-in) and its exporter, Redis and its exporter, the load
balancer and the store gateway (nginx), Prometheus, Alertmanager, the blackbox and node exporters.

The plan's TLS material comes from Pulumi's mocks, which give no real key: the load balancer's certificate and
key and the blackbox exporter's CA are replaced by a CA and certificate made here for the same hosts."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from typing import Any

import pytest
import yaml

from tests.live.images import ImageBuildError, build_all, load_standins, prod_settings, reference
from tests.live.plan import (
    CONTAINER,
    NETWORK,
    PLAN_PREFIX,
    VOLUME,
    create_container,
    free_port,
    image_reference,
    load_prod_plan,
)

# Building an image that is not cached yet takes minutes (.ci/run builds them all before the suite).
pytestmark = [pytest.mark.live, pytest.mark.timeout(1800)]

SERVICES = ("postgres", "postgres-exporter", "redis", "redis-exporter", "s3-gateway", "load-balancer",
            "prometheus", "alertmanager", "blackbox-exporter", "node-exporter")
HEALTHY_WITHIN = 120
"""Seconds from start until every container reports healthy: PostgreSQL's initdb and role sync, then one
healthcheck interval (15 s) or two."""
PREFIX = f"live-{uuid.uuid4().hex[:8]}"


def _local(name: str) -> str:
    return name.replace(PLAN_PREFIX, PREFIX, 1)


def _tls(hosts: list[str]) -> dict[str, str]:
    """A CA and a certificate it signs for `hosts`: fullchain.pem, privkey.pem and the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("live test CA", ca_key, "live test CA", ca_key, True)
    leaf = certificate(hosts[0], key, "live test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    return {
        "ca": ca.public_bytes(pem).decode(),
        "fullchain": (leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(),
        "privkey": key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode(),
    }


def _with_real_tls(inputs: dict[str, Any], tls: dict[str, str]) -> dict[str, Any]:
    replacements = {"/etc/platform/tls/fullchain.pem": tls["fullchain"], "/etc/platform/tls/privkey.pem": tls["privkey"],
                    "/etc/platform/tls/trusted.pem": tls["ca"], "/etc/platform/probe-ca.pem": tls["ca"]}
    uploads = [{**upload, "content": replacements[upload["file"]]} if upload["file"] in replacements else upload
               for upload in inputs.get("uploads", [])]
    return {**inputs, "uploads": uploads}


def _upload(plan, container: str, path: str) -> str:
    files = next(c for c in plan[CONTAINER] if c["name"] == f"{PLAN_PREFIX}-{container}-files")
    return next(u["content"] for u in files["uploads"] if u["file"] == path)


def _exec(engine, container: str, command: list[str] | str, user: str | None = None) -> tuple[int, str]:
    code, output = engine.containers.get(container).exec_run(
        ["sh", "-c", command] if isinstance(command, str) else command, user=user or "")
    return code, output.decode(errors="replace")


def _wait_for(what: str, probe, timeout: float = 60, pause: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(pause)


@pytest.fixture(scope="module")
def images(engine):
    """Every image, built here unless cached (.ci/run builds them before the suite)."""
    try:
        build_all(engine, log=lambda line: None)
    except ImageBuildError as error:
        pytest.fail(f"images: {error}", pytrace=False)
    return {standin.name: standin for standin in load_standins()}


@pytest.fixture(scope="module")
def stack(engine, images):
    """The selected prod containers on their networks, started together; names mapped to this run's."""
    plan = load_prod_plan()
    wanted = {f"{PLAN_PREFIX}-{service}" for service in SERVICES}
    selected = [c for c in plan[CONTAINER] if c["name"] in wanted or c["name"].removesuffix("-files") in wanted]
    tls = _tls([*prod_settings().public_hosts, "load-balancer"])
    used_volumes = {v["volumeName"] for c in selected for v in c.get("volumes", [])}
    networks, volumes, containers, started = [], [], {}, {}
    try:
        for inputs in plan[NETWORK]:
            networks.append(engine.api.create_network(
                _local(inputs["name"]), driver=inputs["driver"], internal=inputs.get("internal", False))["Id"])
        for inputs in plan[VOLUME]:
            if inputs["name"] in used_volumes:
                volumes.append(engine.api.create_volume(_local(inputs["name"]))["Name"])
        ports = {int(p["internal"]): free_port() for c in selected for p in c.get("ports", [])}
        for inputs in selected:
            image = image_reference(plan, inputs["image"])
            containers[inputs["name"]] = create_container(engine, image, _with_real_tls(inputs, tls), ports,
                                                          rename=_local)
        for inputs in selected:
            if inputs.get("start", True):
                engine.api.start(containers[inputs["name"]])
                started[inputs["name"]] = time.monotonic()
        yield {"plan": plan, "containers": containers, "started": started, "ports": ports, "tls": tls,
               "selected": selected}
    finally:
        for container in containers.values():
            engine.api.remove_container(container, force=True, v=True)
        for volume in volumes:
            engine.api.remove_volume(volume, force=True)
        for network in networks:
            engine.api.remove_network(network)


@pytest.fixture(scope="module")
def healthy(engine, stack, images):
    """Seconds each started container took to report healthy (None: not within HEALTHY_WITHIN)."""
    pending = dict(stack["started"])
    after: dict[str, float | None] = {}
    deadline = time.monotonic() + HEALTHY_WITHIN
    while pending and time.monotonic() < deadline:
        for name, since in list(pending.items()):
            state = engine.api.inspect_container(stack["containers"][name])["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                after[name] = time.monotonic() - since
                del pending[name]
        time.sleep(1)
    after.update(dict.fromkeys(pending))
    software = {tag: s.real or f"stand-in: {s.standin}" for s in images.values() for tag in s.tags}
    software[reference("postgres-backup")] = f"images/postgres-backup FROM {software[reference('postgres')]}"
    rows = [(name.removeprefix(f"{PLAN_PREFIX}-"), image_reference(stack["plan"], inputs["image"]),
             software.get(image_reference(stack["plan"], inputs["image"]), "?"),
             "NOT HEALTHY" if after[name] is None else f"{after[name]:.0f}s")
            for inputs in stack["selected"] if (name := inputs["name"]) in after]
    print("\ncomponent / image / software / healthy after")
    for row in rows:
        print("  ".join(row))
    return after


def test_every_container_turns_healthy_as_the_plan_configures_it(engine, stack, healthy):
    unhealthy = {name: engine.api.logs(stack["containers"][name], tail=15).decode(errors="replace")
                 for name, seconds in healthy.items() if seconds is None}
    assert unhealthy == {}, f"not healthy within {HEALTHY_WITHIN}s"


def test_postgres_runs_the_stacks_role_sql_and_archives_with_its_pgbackrest_conf(engine, stack, healthy):
    postgres = stack["containers"][f"{PLAN_PREFIX}-postgres"]
    assert healthy[f"{PLAN_PREFIX}-postgres"] is not None

    def sql(query: str) -> str:
        code, output = _exec(engine, postgres, ["psql", "-X", "-tA", "-h", "/var/run/postgresql", "-U", "postgres",
                                                "-d", "orchestration", "-c", query], user="postgres")
        assert code == 0, output
        return output.strip()

    # The image's initdb: listen_addresses = '*' in the generated config, the host rule appended to pg_hba.
    assert sql("SHOW listen_addresses") == "*"
    code, hba = _exec(engine, postgres, "tail -n 1 /var/lib/postgresql/data/pgdata/pg_hba.conf", user="postgres")
    assert hba.strip() == "host all all all scram-sha-256"
    assert sql("SELECT current_setting('server_version_num')::int / 10000") == "15"
    # The server stepped down to postgres (999) from the root start script.
    code, owner = _exec(engine, postgres, "stat -c %u /var/lib/postgresql/data/pgdata/postmaster.pid")
    assert owner.strip() == "999"
    # The stack's role SQL ran: its roles with their rights, the marker the healthcheck waits for.
    assert sql("SELECT rolname, rolsuper, rolcreaterole, rolconnlimit FROM pg_roles WHERE rolname IN "
               "('orchestration', 'postgres_exporter') ORDER BY 1").splitlines() == [
        "orchestration|f|f|-1", "postgres_exporter|f|f|3"]
    # WAL goes to pgBackRest with the stack's configuration: the archiver's pushes fail for want of the store's
    # keys (the plan has none), which only the configuration's S3 repository asks for, and are counted.
    sql("SELECT pg_switch_wal() FROM (SELECT txid_current()) AS t")
    _wait_for("a failed WAL push counted", lambda: int(sql("SELECT failed_count FROM pg_stat_archiver")) > 0)
    assert "archive-push command requires option: repo1-s3-key" in engine.api.logs(postgres).decode(errors="replace")
    # Given keys, pgBackRest runs with the stack's repository and stanza (the store itself is unreachable here).
    _, output = _exec(engine, postgres, [
        "env", "PGBACKREST_REPO1_S3_KEY=live-test", "PGBACKREST_REPO1_S3_KEY_SECRET=live-test", "pgbackrest",
        "--config=/etc/platform/pgbackrest.conf", "--config-include-path=/etc/platform/pgbackrest",
        "--stanza=platform", "--io-timeout=5", "info"], user="postgres")
    # The stanza and the cipher are the configuration's; the store answers no request (the gateway has no way
    # out here: a timeout, or the connection closed during TLS).
    assert "stanza: platform" in output and "cipher: aes-256-cbc" in output, output
    assert re.search(r"status: error \(other\)\s+\[(FileReadError|ServiceError|HostConnectError)\]", output), output
    # What the backup job calls, in the same image.
    for tool in (["pgbackrest", "version"], ["mcron", "--version"], ["curl", "--version"], ["zstd", "--version"],
                 ["openssl", "version"]):
        code, output = _exec(engine, postgres, tool, user="999")
        assert code == 0, (tool, output)


def test_redis_reads_the_stacks_config_as_redis(engine, stack, healthy):
    redis = stack["containers"][f"{PLAN_PREFIX}-redis"]
    # The exporter's user, with its password from the exporter's own file: it reads INFO, nothing else.
    code, passwords = _exec(engine, stack["containers"][f"{PLAN_PREFIX}-redis-exporter"],
                            "cat /etc/platform/secrets/redis_passwords.json")
    assert code == 0, passwords
    auth = f"REDISCLI_AUTH='{next(iter(json.loads(passwords).values()))}' redis-cli --user redis-exporter"
    code, output = _exec(engine, redis, f"{auth} info persistence | grep '^aof_enabled'; {auth} config get dir")
    assert output.split()[0] == "aof_enabled:1" and "unknown command 'config'" in output, output
    code, output = _exec(engine, redis, "redis-cli ping")
    assert "NOAUTH" in output, output
    _, owner = _exec(engine, redis, "stat -c %u /data/appendonlydir")
    assert owner.strip() == "999"


def test_the_exporters_export_what_their_stores_report(engine, stack, healthy):
    def metrics(service: str, port: int) -> str:
        code, output = _exec(engine, stack["containers"][f"{PLAN_PREFIX}-{service}"],
                             f"wget -qO- http://127.0.0.1:{port}/metrics")
        assert code == 0, output
        return output

    assert re.search(r"^pg_up 1$", metrics("postgres-exporter", 9187), re.MULTILINE)
    assert re.search(r"^redis_up 1$", metrics("redis-exporter", 9121), re.MULTILINE)
    node = metrics("node-exporter", 9100)
    assert "node_uname_info{" in node and re.search(r'^node_textfile_scrape_error 0$', node, re.MULTILINE)
    # The blackbox exporter probes the load balancer over TLS, trusting the stack's probe CA. It reaches the
    # public URL from outside (egress); here, where the public names do not resolve, it joins the edge network
    # for this one probe, as a client of the published ports would arrive.
    blackbox = stack["containers"][f"{PLAN_PREFIX}-blackbox-exporter"]
    edge = engine.networks.get(_local(f"{PLAN_PREFIX}-edge"))
    edge.connect(blackbox)
    try:
        code, probe = _exec(engine, blackbox,
                            "wget -qO- 'http://127.0.0.1:9115/probe?module=https_2xx&target=https://load-balancer:8443/'")
    finally:
        edge.disconnect(blackbox)
    assert code == 0 and re.search(r"^probe_http_ssl 1$", probe, re.MULTILINE), probe
    assert re.search(r"^probe_ssl_earliest_cert_expiry ", probe, re.MULTILINE), probe


def test_prometheus_loads_the_stacks_config_and_rules_and_scrapes_the_exporters(engine, stack, healthy):
    prometheus = stack["containers"][f"{PLAN_PREFIX}-prometheus"]

    def api(path: str) -> Any:
        code, output = _exec(engine, prometheus, f"wget -qO- 'http://127.0.0.1:9090/api/v1/{path}'")
        assert code == 0, output
        return json.loads(output)["data"]

    rules_file = yaml.safe_load(_upload(stack["plan"], "prometheus", "/etc/platform/rules/alerts.yml"))
    expected_rules = sorted(rule.get("alert") or rule.get("record") for group in rules_file["groups"]
                            for rule in group["rules"])
    loaded = sorted(rule["name"] for group in api("rules")["groups"] for rule in group["rules"])
    assert loaded == expected_rules
    config = yaml.safe_load(api("status/config")["yaml"])
    assert config["rule_files"] == ["/etc/platform/rules/alerts.yml"]
    wanted = {"postgres-exporter", "redis-exporter", "node-exporter", "blackbox-exporter"}

    def exporters_up():
        targets = api("targets?state=active")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets if t["labels"]["job"] in wanted}
        return health if health == dict.fromkeys(wanted, "up") else None

    _wait_for("the exporters' targets up in Prometheus", exporters_up, timeout=45, pause=3)
    _wait_for("Alertmanager among Prometheus's alertmanagers", lambda: [
        a for a in api("alertmanagers")["activeAlertmanagers"] if "alertmanager:9093" in a["url"]])


def test_alertmanager_loads_the_stacks_config_alone(engine, stack, healthy):
    code, output = _exec(engine, stack["containers"][f"{PLAN_PREFIX}-alertmanager"],
                         "wget -qO- http://127.0.0.1:9093/api/v2/status")
    assert code == 0, output
    status = json.loads(output)
    receivers = {r["name"] for r in yaml.safe_load(status["config"]["original"])["receivers"]}
    assert receivers == {"critical-email", "critical-slack", "warning-slack"}
    assert status["cluster"]["status"] == "disabled"


def test_nginx_serves_the_stacks_edge_and_gateway(engine, stack, healthy):
    import http.client
    import socket
    import ssl

    http_port, https_port = stack["ports"][8080], stack["ports"][8443]
    plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    plain.request("GET", "/x", headers={"Host": "orchestration.example.com"})
    answer = plain.getresponse()
    assert (answer.status, answer.getheader("Location")) == (301, "https://orchestration.example.com/x")
    context = ssl.create_default_context(cadata=stack["tls"]["ca"])
    with socket.create_connection(("127.0.0.1", https_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="orchestration.example.com") as tls:
        tls.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: orchestration.example.com\r\nConnection: close\r\n\r\n")
        answer = http.client.HTTPResponse(tls)
        answer.begin()
    # The api-gateway is not part of this test: nginx answers for it, with the stack's headers.
    assert answer.status in (502, 503, 504)
    assert answer.getheader("Strict-Transport-Security", "").startswith("max-age=")
    # Both run as nginx (101), workers included, with every capability dropped.
    for service in ("load-balancer", "s3-gateway"):
        code, owners = _exec(engine, stack["containers"][f"{PLAN_PREFIX}-{service}"],
                             "for p in /proc/[0-9]*; do grep -qa '^nginx: ' $p/cmdline 2>/dev/null && stat -c %u $p; done; true")
        assert code == 0 and set(owners.split()) == {"101"}, (service, owners)
    # The gateway forwards only the bucket's server name: another name is closed unforwarded.
    code, output = _exec(engine, stack["containers"][f"{PLAN_PREFIX}-postgres"], (
        "curl -sS --max-time 5 --resolve other.example.com:443:$(getent hosts s3-gateway | cut -d' ' -f1)"
        " https://other.example.com/ 2>&1; echo exit=$?"))
    assert re.search(r"exit=(35|56|52)", output), output


def _run_detached(engine, image: str, **options):
    return engine.containers.run(image, detach=True, name=f"{PREFIX}-{uuid.uuid4().hex[:6]}", network_mode="none",
                                 **options)


def test_the_postgres_standin_honours_the_official_contract_alone(engine, images):
    """Started as another user (999, no capability at all: no gosu step), with the documented environment and
    an initdb script; the official entrypoint's behaviour a stack could rely on beyond the prod plan."""
    container = engine.containers.create(
        reference("postgres"), name=f"{PREFIX}-pg-alone", network_mode="none", user="999:999",
        environment={"POSTGRES_PASSWORD_FILE": "/run/secret", "POSTGRES_USER": "admin", "POSTGRES_DB": "app"},
        cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        tmpfs={"/var/lib/postgresql/data": "uid=999", "/var/run/postgresql": "uid=999"})
    try:
        import io
        import tarfile

        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for path, content in (("run/secret", b"s3cret\n"),
                                  ("docker-entrypoint-initdb.d/10-table.sql", b"CREATE TABLE seeded (id int);\n")):
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(content), 0o444
                tar.addfile(info, io.BytesIO(content))
        container.put_archive("/", archive.getvalue())
        container.start()

        def query(sql: str, user: str = "admin", password: str = "s3cret") -> tuple[int, str]:
            return _exec(engine, container.id, ["env", f"PGPASSWORD={password}", "psql", "-X", "-tA", "-h",
                                                "127.0.0.1", "-U", user, "-d", "app", "-c", sql])

        _wait_for("the stand-alone postgres answering", lambda: query("SELECT 1")[0] == 0, timeout=60)
        assert query("SELECT count(*) FROM seeded") == (0, "0\n")
        _, hba = _exec(engine, container.id, "tail -n 1 /var/lib/postgresql/data/pg_hba.conf")
        assert hba.strip() == "host all all all scram-sha-256"
        assert query("SHOW listen_addresses")[1].strip() == "*"
        _, owner = _exec(engine, container.id, "stat -c %u /proc/1")
        assert owner.strip() == "999"
    finally:
        container.remove(force=True)


def test_the_redis_and_nginx_standins_default_as_the_official_images(engine, images):
    redis = _run_detached(engine, reference("redis"))
    nginx = _run_detached(engine, reference("nginx"))
    try:
        # As root, the entrypoint steps down to redis; protected-mode defaults to no, as upstream patches it.
        _wait_for("redis answering", lambda: _exec(engine, redis.id, "redis-cli ping")[1].strip() == "PONG")
        assert _exec(engine, redis.id, "redis-cli config get protected-mode")[1].split() == ["protected-mode", "no"]
        assert _exec(engine, redis.id, "stat -c %u /proc/1")[1].strip() == "999"
        # nginx.org's default site, served by workers running as nginx (101).
        _wait_for("nginx answering", lambda: "it works" in _exec(engine, nginx.id, "curl -s http://127.0.0.1/")[1])
        _, owners = _exec(engine, nginx.id, "for p in /proc/[0-9]*; do grep -qa '^nginx: worker' $p/cmdline "
                                               "2>/dev/null && stat -c %u $p; done; true")
        assert set(owners.split()) == {"101"}, owners
    finally:
        redis.remove(force=True)
        nginx.remove(force=True)


def test_the_autoscaler_image_runs_its_entrypoint_from_the_python_standin(engine, images):
    output = engine.containers.run(reference("autoscaler"), command=["--help"], network_mode="none", remove=True)
    assert b"--docker-host" in output


def test_the_backup_jobs_scheduler_stops_at_once_on_its_image(engine, images):
    """The prod plan's backup job (its image, command, user, environment, capabilities and grace period) with
    the stack's table: a stop ends it in seconds with the shell's 143, not the grace period's SIGKILL (137)."""
    from platform_infra.components.backup.jobs import CRONTAB, render_crontab

    plan = load_prod_plan()
    job = next(c for c in plan[CONTAINER] if c["name"] == f"{PLAN_PREFIX}-postgres-backup")
    container = engine.containers.create(
        image_reference(plan, job["image"]), job["command"], name=f"{PREFIX}-backup-stop", network_mode="none",
        user=job["user"], environment=job["envs"], cap_drop=job["capabilities"]["drops"],
        security_opt=job["securityOpts"])
    try:
        import io
        import tarfile

        table = render_crontab(prod_settings().backups).encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(CRONTAB.lstrip("/"))
            info.size, info.mode = len(table), 0o444
            tar.addfile(info, io.BytesIO(table))
        container.put_archive("/", archive.getvalue())
        container.start()
        _wait_for("mcron running", lambda: any("mcron" in " ".join(p) for p in container.top()["Processes"]))
        time.sleep(2)  # mcron has read its table and waits for the next job
        started = time.monotonic()
        container.stop(timeout=int(job["destroyGraceSeconds"]))
        took = time.monotonic() - started
        state = engine.api.inspect_container(container.id)["State"]
        print(f"the backup job stopped in {took:.1f} s, exit {state['ExitCode']}")
        assert (state["ExitCode"], took < 5) == (143, True), (took, container.logs().decode(errors="replace"))
    finally:
        container.remove(force=True)
