"""Swarm targets (`tasks.<service>`): one DNS-discovered job per service, so every replica is scraped."""

import pytest
import yaml

from platform_infra.components.monitoring import ScrapeTarget, render_alert_rules, render_prometheus_config


def test_a_tasks_target_becomes_a_dns_discovered_job_promtool_accepts(config, targets, promtool, run, write):
    swarm = [t for t in targets if t.job != "worker"] + [
        ScrapeTarget("worker", "tasks.worker:8080", "/actuator/prometheus", {"service": "worker"})]
    prometheus_yml = render_prometheus_config(swarm, config, alertmanager_address="alertmanager:9093",
                                              rule_files=["alerts.yml"], probe_urls=["https://jobs.example.org/"])
    jobs = {job["job_name"]: job for job in yaml.safe_load(prometheus_yml)["scrape_configs"]}
    assert jobs["worker"] == {
        "job_name": "worker", "metrics_path": "/actuator/prometheus",
        "dns_sd_configs": [{"names": ["tasks.worker"], "type": "A", "port": 8080}],
        "relabel_configs": [{"target_label": "service", "replacement": "worker"}]}
    assert "static_configs" in jobs["api-gateway"]
    write("alerts.yml", render_alert_rules(config))
    result = run(promtool, "check", "config", write("prometheus.yml", prometheus_yml))
    assert result.returncode == 0, result.stdout


def test_a_tasks_target_is_its_jobs_only_target(config, targets):
    mixed = [*targets, ScrapeTarget("worker", "tasks.worker:8080", "/actuator/prometheus")]
    with pytest.raises(ValueError, match="a tasks.<service> target must be the job's only target"):
        render_prometheus_config(mixed, config, alertmanager_address="alertmanager:9093", rule_files=["a.yml"],
                                 probe_urls=["https://jobs.example.org/"])
