"""Monitoring as each stack deploys it: the uploaded files through promtool and amtool, and coverage."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_infra.components.monitoring import render_rule_tests
from platform_infra.components.monitoring.component import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    RULES_FILE,
    app_scrape_targets,
    effective_config,
)
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import parse_settings
from tests.helpers import env_of, files_of, is_secret, labels_of, reveal, running_containers

STACKS = ["dev", "staging", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def deployed(request):
    stack = request.param
    run = run_program(load_project(REPO_ROOT, stack), stack)
    raw = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["platform:settings"]
    return stack, Deployed(run.resources), parse_settings(raw, f"Pulumi.{stack}.yaml")


class Deployed(dict):
    """Running containers by hostname, and the files each service receives."""

    def __init__(self, resources):
        super().__init__(running_containers(resources))
        self.resources = resources

    def files(self, service: str) -> dict[str, dict]:
        return files_of(self.resources, service)


def uploaded(containers: Deployed, service: str, path: str) -> str:
    return reveal(containers.files(service)[path]["content"])


def scraped_addresses(prometheus_yml: str) -> dict[str, set[str]]:
    jobs: dict[str, set[str]] = {}
    for job in yaml.safe_load(prometheus_yml)["scrape_configs"]:
        for static in job.get("static_configs", []):
            jobs.setdefault(job["job_name"], set()).update(static["targets"])
    return jobs


def test_every_app_container_and_data_store_is_scraped(deployed):
    _, containers, _ = deployed
    jobs = scraped_addresses(uploaded(containers, "prometheus", PROMETHEUS_CONFIG))
    scraped = set().union(*jobs.values())
    apps = {host for host, inputs in containers.items() if labels_of(inputs)["platform.role"] == "app"}
    missing = {host for host in apps if f"{host}:8080" not in scraped}
    assert apps and missing == set(), f"app containers without a scrape target: {missing}"
    assert {"postgres-exporter", "redis-exporter", "kafka-exporter", "node-exporter", "clickhouse"} <= set(jobs)
    for job in yaml.safe_load(uploaded(containers, "prometheus", PROMETHEUS_CONFIG))["scrape_configs"]:
        if job["job_name"] in ("api-gateway", "orchestrator", "worker", "log-aggregator", "query-service"):
            assert job["metrics_path"] == "/actuator/prometheus"
    exporters = {"postgres-exporter", "redis-exporter", "kafka-exporter", "node-exporter"}
    assert exporters <= set(containers), "each scraped exporter is deployed"


def test_monitoring_is_private_and_hardened(deployed):
    _, containers, _ = deployed
    monitoring = {host: inputs for host, inputs in containers.items() if labels_of(inputs)["platform.role"] == "mon"}
    assert {"prometheus", "alertmanager", "grafana", "blackbox-exporter"} <= set(monitoring)
    for host, inputs in monitoring.items():
        assert "ports" not in inputs, host
        networks = {n["name"].rsplit("-", 1)[-1] for n in inputs["networksAdvanced"]}
        assert "edge" not in networks, host
        assert inputs["capabilities"]["drops"] == ["ALL"] and inputs.get("user") not in ("root", "0", "0:0")
        assert "user" in inputs or host == "cadvisor", f"{host} runs as an explicit non-root user"
        assert all(m["readOnly"] for m in inputs.get("mounts", [])), host
    prometheus = monitoring["prometheus"]["command"]
    assert not [flag for flag in prometheus if "enable-admin-api" in flag or "enable-lifecycle" in flag]
    assert any(flag.startswith("--storage.tsdb.retention.time=") for flag in prometheus)
    grafana = monitoring["grafana"]
    env = env_of(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_COOKIE_SECURE"] == "true" and env["GF_SECURITY_ADMIN_USER"] != "admin"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env and env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    secret_files = {path for path, u in containers.files("grafana").items() if is_secret(u["content"])}
    assert {env["GF_SECURITY_ADMIN_PASSWORD__FILE"], env["GF_SECURITY_SECRET_KEY__FILE"]} <= secret_files
    kafka_exporter = monitoring["kafka-exporter"]
    assert "kafka_password" in kafka_exporter["entrypoints"][-1]
    assert all(is_secret(u["content"]) for u in containers.files("kafka-exporter").values())


def test_deployed_prometheus_config_and_rules_pass_promtool(deployed, promtool, run, tmp_path):
    _, containers, settings = deployed
    rules = tmp_path / "alerts.yml"
    rules.write_text(uploaded(containers, "prometheus", RULES_FILE))
    config = yaml.safe_load(uploaded(containers, "prometheus", PROMETHEUS_CONFIG))
    assert config["rule_files"] == [RULES_FILE]
    config["rule_files"] = [str(rules)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = run(promtool, "check", "config", tmp_path / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout
    assert "SUCCESS" in checked.stdout
    tests = tmp_path / "alerts_test.yml"
    config = effective_config(settings.monitoring, container_metrics=settings.container_metrics is not None)
    tests.write_text(render_rule_tests(config, rule_file="alerts.yml"))
    tested = run(promtool, "test", "rules", tests, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout


def test_deployed_alertmanager_config_passes_amtool_and_routes(deployed, amtool, run, tmp_path):
    _, containers, _ = deployed
    path: Path = tmp_path / "alertmanager.yml"
    path.write_text(uploaded(containers, "alertmanager", ALERTMANAGER_CONFIG))
    checked = run(amtool, "check-config", path)
    assert checked.returncode == 0, checked.stdout
    critical = run(amtool, "config", "routes", "test", f"--config.file={path}", "severity=critical",
                   "alertname=ServiceDown", "service=orchestrator")
    assert critical.stdout.strip().splitlines()[-1] == "critical-email,critical-slack", critical.stdout
    warning = run(amtool, "config", "routes", "test", f"--config.file={path}", "severity=warning",
                  "alertname=HighLatencyP95", "service=api-gateway")
    assert warning.stdout.strip().splitlines()[-1] == "warning-slack", warning.stdout


def monitoring_args(settings, **overrides):
    from platform_infra.components.monitoring.component import StoreAccess
    from platform_infra.components.runtime import DockerRuntime

    images = {key: getattr(settings.images, key) for key in ("prometheus", "alertmanager", "grafana",
                                                             "blackbox_exporter", "node_exporter",
                                                             "postgres_exporter", "redis_exporter", "kafka_exporter")}
    return {
        "runtime": DockerRuntime("test"), "networks": {"app": None, "data": None, "egress": None},
        "config": settings.monitoring, "images": images,
        "app_targets": app_scrape_targets("api-gateway", ["api-gateway"], 8080, "/actuator/prometheus")
        + [target for job in ("orchestrator", "worker", "log-aggregator", "query-service")
           for target in app_scrape_targets(job, [job], 8080, "/actuator/prometheus")],
        "probe_urls": ["https://a.example.com/"],
        "grafana_root_url": "https://grafana.example.com/", "grafana_admin_password": "p" * 32,
        "grafana_secret_key": "k" * 32,
        "stores": StoreAccess("postgres:5432/db", "db", "p" * 32, "redis:6379", "redis-exporter", "r" * 32, "kafka:9092",
                              "kafka-exporter",
                              "k" * 32),
        **overrides,
    }


@pytest.mark.parametrize("overrides, error", [
    ({"app_targets": []}, r"no scrape target for required job\(s\)"),
    ({"probe_urls": ["http://a.example.com/"]}, "https:// URLs"),
    ({"grafana_root_url": "http://grafana"}, "must be served over https"),
    ({"images": {"prometheus": "prom/prometheus:v2.53.3"}}, "images: missing"),
])
def test_monitoring_bad_args_register_nothing(overrides, error):
    from platform_infra.components.monitoring.component import Monitoring
    from platform_infra.components.spec import ComponentArgsError
    from tests.conftest import CountingMocks, deploy

    settings = parse_settings(yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["config"]
                              ["platform:settings"], "Pulumi.prod.yaml")
    mocks = CountingMocks()
    with pytest.raises(ComponentArgsError, match=error):
        deploy(lambda: Monitoring("monitoring", monitoring_args(settings, **overrides)), mocks=mocks)
    assert mocks.created == []


def test_container_metrics_only_through_its_socket_proxy(deployed):
    _, containers, settings = deployed
    jobs = scraped_addresses(uploaded(containers, "prometheus", PROMETHEUS_CONFIG))
    if settings.container_metrics is None:
        assert "cadvisor" not in containers and "cadvisor" not in jobs
        assert "cadvisor-socket-proxy" not in containers
        return
    cadvisor, proxy = containers["cadvisor"], containers["cadvisor-socket-proxy"]
    # cAdvisor mounts no socket and needs no waiver: it asks its proxy, the one container holding the socket.
    assert not [m for m in cadvisor["mounts"] if m["source"].endswith("docker.sock")]
    assert "platform.waiver.CTR-014" not in labels_of(cadvisor)
    assert "--docker=tcp://cadvisor-socket-proxy:2375" in cadvisor["command"]
    until = settings.container_metrics.docker_socket_accepted_until.isoformat()
    waiver = labels_of(proxy)["platform.waiver.CTR-014"]
    assert waiver.startswith("reason=") and waiver.endswith(f";expires={until}") and "read-only" not in waiver
    assert [(m["source"], m["readOnly"]) for m in proxy["mounts"]] == [("/var/run/docker.sock", True)]
    assert proxy["user"] == f"99:{settings.docker_socket_gid}"
    # Only cAdvisor and its proxy are on the proxy's network.
    on_engine_network = sorted(name for name, container in containers.items()
                               if any(n["name"].endswith("-cadvisor-engine") for n in container.get("networksAdvanced", [])))
    assert on_engine_network == ["cadvisor", "cadvisor-socket-proxy"]
    assert jobs["cadvisor"] == {"cadvisor:8080"}
    assert "ports" not in cadvisor and not cadvisor.get("privileged")
