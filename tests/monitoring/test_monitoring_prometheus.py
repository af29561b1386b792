"""prometheus.yml: every given target is scraped, nothing else is, and promtool and a real
Prometheus accept it (with the admin and lifecycle APIs off)."""

import json
import time

import pytest
import yaml

from platform_infra.components.monitoring import (
    MonitoringConfig,
    ScrapeTarget,
    prometheus_args,
    render_alert_rules,
    render_prometheus_config,
)

PROBE_URLS = ("https://jobs.example.org/actuator/health",)


def render(targets, config, **overrides):
    args = {
        "alertmanager_address": "alertmanager:9093",
        "rule_files": ["alerts.yml"],
        "probe_urls": PROBE_URLS,
    }
    return render_prometheus_config(targets, config, **{**args, **overrides})


def scraped(prometheus_yml: str) -> set[tuple[str, str, str]]:
    """(job, address, metrics path) of every static target."""
    result = set()
    for job in yaml.safe_load(prometheus_yml)["scrape_configs"]:
        for static in job["static_configs"]:
            path = static.get("labels", {}).get("__metrics_path__", job.get("metrics_path", "/metrics"))
            result.update((job["job_name"], address, path) for address in static["targets"])
    return result


def test_promtool_accepts_the_config_and_its_rules(promtool, run, write, targets, config):
    write("alerts.yml", render_alert_rules(config))
    prometheus_yml = write("prometheus.yml", render(targets, config))
    result = run(promtool, "check", "config", prometheus_yml)
    assert result.returncode == 0, result.stdout
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_every_given_target_is_scraped_and_nothing_else(targets, config):
    rendered = scraped(render(targets, config))
    expected = {(t.job, t.address, t.metrics_path) for t in targets}
    assert rendered - {s for s in rendered if s[0] == "blackbox-https"} == expected


def test_a_new_service_is_scraped_without_other_edits(targets, config):
    billing = ScrapeTarget("billing", "billing:8080", "/actuator/prometheus")
    assert ("billing", "billing:8080", "/actuator/prometheus") in scraped(render([*targets, billing], config))


def test_a_target_left_out_is_not_scraped(targets, config):
    relaxed = MonitoringConfig(**{**config.model_dump(), "required_jobs": ("api-gateway", "orchestrator")})
    rendered = scraped(render([t for t in targets if t.job != "query-service"], relaxed))
    assert not [s for s in rendered if s[0] == "query-service"]
    assert ("orchestrator", "orchestrator:8080", "/actuator/prometheus") in rendered


@pytest.mark.parametrize("job", ["query-service", "worker", "postgres-exporter", "node-exporter"])
def test_a_required_service_without_target_is_an_error(targets, config, job):
    with pytest.raises(ValueError, match=rf"no scrape target for required job\(s\) \['{job}'\]"):
        render([t for t in targets if t.job != job], config)


def test_workers_share_one_job_with_a_service_label(targets, config):
    [worker_job] = [
        j for j in yaml.safe_load(render(targets, config))["scrape_configs"] if j["job_name"] == "worker"
    ]
    assert worker_job["metrics_path"] == "/actuator/prometheus"
    assert [s["targets"] for s in worker_job["static_configs"]] == [
        ["worker-1:8080"],
        ["worker-2:8080"],
        ["worker-3:8080"],
    ]
    assert all(s["labels"] == {"service": "worker"} for s in worker_job["static_configs"])


def test_service_label_defaults_to_the_job(targets, config):
    jobs = {j["job_name"]: j for j in yaml.safe_load(render(targets, config))["scrape_configs"]}
    assert jobs["kafka-exporter"]["static_configs"][0]["labels"] == {"service": "kafka-exporter"}


def test_mixed_metrics_paths_in_one_job_are_kept_per_target(config, targets, promtool, run, write):
    mixed = [*targets, ScrapeTarget("api-gateway", "api-gateway-legacy:8080", "/metrics")]
    assert ("api-gateway", "api-gateway-legacy:8080", "/metrics") in scraped(render(mixed, config))
    assert ("api-gateway", "api-gateway:8080", "/actuator/prometheus") in scraped(render(mixed, config))
    write("alerts.yml", render_alert_rules(config))
    result = run(promtool, "check", "config", write("prometheus.yml", render(mixed, config)))
    assert result.returncode == 0, result.stdout


def test_uptime_probe_goes_through_the_blackbox_exporter(targets, config):
    jobs = {j["job_name"]: j for j in yaml.safe_load(render(targets, config))["scrape_configs"]}
    probe = jobs["blackbox-https"]
    assert probe["metrics_path"] == "/probe"
    assert probe["static_configs"] == [
        {"targets": list(PROBE_URLS), "labels": {"service": "public-endpoint"}}
    ]
    assert probe["relabel_configs"][-1] == {
        "target_label": "__address__",
        "replacement": "blackbox-exporter:9115",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"probe_urls": ["http://jobs.example.org/"]}, "https://"),
        ({"probe_urls": []}, "https://"),
        ({"rule_files": []}, "rule_files"),
        ({"alertmanager_address": "http://alertmanager:9093"}, "alertmanager_address"),
    ],
)
def test_invalid_arguments_are_refused(targets, config, overrides, message):
    with pytest.raises(ValueError, match=message):
        render(targets, config, **overrides)


def test_duplicate_target_is_refused(targets, config):
    with pytest.raises(ValueError, match="listed twice"):
        render([*targets, targets[0]], config)


def test_running_prometheus_loads_every_target_and_keeps_admin_apis_off(
    prometheus_binary, start_server, http, write, tmp_path, targets, config
):
    write("alerts.yml", render_alert_rules(config))
    prometheus_yml = write("prometheus.yml", render(targets, config))
    args = prometheus_args(config, config_file=str(prometheus_yml), storage_path=str(tmp_path / "data"))
    base = start_server([prometheus_binary, *args], "/-/ready")

    expected = {(t.job, t.address) for t in targets} | {("blackbox-https", url) for url in PROBE_URLS}
    loaded: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 20  # the scrape manager applies discovered targets every 5s
    while loaded != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        active = json.loads(http(base + "/api/v1/targets?state=active")[1])["data"]["activeTargets"]
        loaded = {(t["labels"]["job"], t["labels"]["instance"]) for t in active}
    assert loaded == expected

    status, body = http(base + "/api/v1/rules")
    assert status == 200
    assert len(json.loads(body)["data"]["groups"]) == 3

    flags = json.loads(http(base + "/api/v1/status/flags")[1])["data"]
    assert flags["storage.tsdb.retention.time"] == config.retention_time
    # Prometheus counts size units in powers of 2 and prints them so: 20GB -> 20GiB.
    assert flags["storage.tsdb.retention.size"].replace("iB", "B") == config.retention_size
    assert flags["web.enable-admin-api"] == "false"
    assert flags["web.enable-lifecycle"] == "false"
    status, body = http(base + "/api/v1/admin/tsdb/snapshot", method="POST")
    assert status >= 400 and "admin APIs disabled" in body
    assert http(base + "/-/reload", method="POST")[0] == 403
