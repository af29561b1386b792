"""Grafana provisioning and dashboards: schema-valid, bound to the provisioned datasource uid,
covering the checklist's key metrics with queries promtool can parse; secure Grafana settings."""

import json
import re

import jsonschema
import pytest
import yaml

from platform_infra.components.monitoring import (
    PROMETHEUS_DATASOURCE_UID,
    grafana_environment,
    load_dashboards,
    render_grafana_dashboard_provider,
    render_grafana_datasources,
)

# The checklist's key metrics (infra/checklist.yaml, section Key Metrics) -> a pattern some panel query must contain.
KEY_METRICS = {
    "Request rate": r"rate\(http_server_requests_seconds_count\{",
    "Error rate": r'status=~"5\.\."',
    "Response time p50": r"histogram_quantile\(0\.5, .*http_server_requests_seconds_bucket",
    "Response time p95": r"histogram_quantile\(0\.95, .*http_server_requests_seconds_bucket",
    "Response time p99": r"histogram_quantile\(0\.99, .*http_server_requests_seconds_bucket",
    "Job submission rate": r"rate\(orchestrator_jobs_submitted_total",
    "Job completion rate": r'rate\(orchestrator_jobs_completed_total\{status="succeeded"\}',
    "Job failure rate": r'rate\(orchestrator_jobs_completed_total\{status="failed"\}',
    "Success rate": r'rate\(orchestrator_jobs_completed_total\{status="succeeded"\}\[[^]]+\]\)\) / '
                    r"\(sum\(rate\(orchestrator_jobs_completed_total\[",
    "Queue depth": r"orchestrator_queue_depth",
    "CPU utilization": r"rate\(node_cpu_seconds_total",
    "Container CPU": r"rate\(container_cpu_usage_seconds_total",
    "Memory utilization": r"node_memory_MemAvailable_bytes",
    "Container memory": r"container_memory_working_set_bytes",
    "Disk I/O": r"rate\(node_disk_(read|written)_bytes_total",
    "Network I/O": r"rate\(node_network_(receive|transmit)_bytes_total",
    "PostgreSQL connections": r"pg_stat_activity_count",
    "Redis connections": r"redis_connected_clients",
    "Kafka lag": r"kafka_consumergroup_lag",
    "Active users": r"auth_active_sessions",
    "Jobs processed (hourly)": r"increase\(orchestrator_jobs_completed_total\[1h\]\)",
    "Average job duration": r"orchestrator_job_duration_seconds_sum",
    "Worker utilization": r"worker_jobs_active",
}


def panels(dashboard: dict) -> list[dict]:
    """Query panels, including those nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.extend(panels(panel) if panel.get("panels") else [])
        if panel["type"] != "row":
            found.append(panel)
    return found


def all_exprs() -> list[str]:
    return [
        target["expr"]
        for text in load_dashboards().values()
        for panel in panels(json.loads(text))
        for target in panel["targets"]
    ]


def test_datasource_provisioning_matches_its_schema(schema):
    provisioning = yaml.safe_load(render_grafana_datasources("http://prometheus:9090"))
    jsonschema.validate(provisioning, schema("grafana-datasources.schema.json"))
    [datasource] = provisioning["datasources"]
    assert datasource["uid"] == PROMETHEUS_DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"


def test_the_schema_rejects_literal_secrets_and_browser_access(schema):
    provisioning = yaml.safe_load(render_grafana_datasources("http://prometheus:9090"))
    for change in ({"secureJsonData": {"basicAuthPassword": "hunter2"}}, {"access": "direct"}):
        broken = {**provisioning, "datasources": [{**provisioning["datasources"][0], **change}]}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema("grafana-datasources.schema.json"))


def test_dashboard_provider_matches_its_schema(schema):
    provider = yaml.safe_load(render_grafana_dashboard_provider("/var/lib/grafana/dashboards"))
    jsonschema.validate(provider, schema("grafana-dashboard-provider.schema.json"))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["providers"][0]["allowUiUpdates"] is False


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: render_grafana_datasources("prometheus:9090"), "http"),
        (lambda: render_grafana_dashboard_provider("dashboards"), "absolute"),
    ],
)
def test_provisioning_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_dashboards_are_valid_with_unique_uids(schema):
    dashboards = {name: json.loads(text) for name, text in load_dashboards().items()}
    assert len(dashboards) >= 2
    for name, dashboard in dashboards.items():
        jsonschema.validate(dashboard, schema("grafana-dashboard.schema.json"))
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    assert len({d["title"] for d in dashboards.values()}) == len(dashboards)


def test_every_panel_uses_the_provisioned_datasource():
    for name, text in load_dashboards().items():
        for panel in panels(json.loads(text)):
            assert panel["datasource"]["uid"] == PROMETHEUS_DATASOURCE_UID, (name, panel["title"])
            for target in panel["targets"]:
                assert target.get("datasource", panel["datasource"])["uid"] == PROMETHEUS_DATASOURCE_UID
        assert "${DS_" not in text, name


@pytest.mark.parametrize("metric", KEY_METRICS)
def test_every_key_metric_has_a_panel(metric):
    assert any(re.search(KEY_METRICS[metric], expr) for expr in all_exprs()), metric


def test_dashboard_queries_are_valid_promql(promtool, run, write):
    """promtool parses each query as a recording rule; Grafana's $__rate_interval becomes 5m."""
    exprs = [expr.replace("$__rate_interval", "5m") for expr in all_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    result = run(promtool, "check", "rules", write("dashboard_queries.yml", yaml.safe_dump(rules)))
    assert result.returncode == 0, result.stdout


def test_grafana_settings_are_locked_down():
    env = grafana_environment(
        root_url="https://grafana.example.org/",
        admin_password_file="/run/secrets/grafana_admin_password",
        secret_key_file="/run/secrets/grafana_secret_key",
    )
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_COOKIE_SECURE"] == "true"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    # Secrets only by file: no plain variable that would show in `docker inspect`.
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env and "GF_SECURITY_SECRET_KEY" not in env
    with pytest.raises(ValueError, match="https"):
        grafana_environment(root_url="http://grafana:3000/", admin_password_file="/a", secret_key_file="/b")
