"""MonitoringConfig and ScrapeTarget: checklist defaults, and errors that say what is allowed."""

import pytest
from pydantic import ValidationError

from platform_infra.components.monitoring import (
    MonitoringConfig,
    ScrapeTarget,
    duration_seconds,
    exporter_targets,
)


def test_defaults_are_the_checklists_values(config):
    a = config.alerts
    assert (a.service_down_for, a.error_rate_ratio, a.kafka_consumer_lag_messages, a.disk_free_ratio) == (
        "2m",
        0.10,
        10_000,
        0.10,
    )
    assert (a.job_failure_ratio, a.latency_p95_seconds, a.memory_used_ratio, a.cpu_used_ratio) == (
        0.05,
        2.0,
        0.8,
        0.8,
    )
    assert (
        a.postgres_incremental_backup_max_age,
        a.postgres_full_backup_max_age,
        a.clickhouse_backup_max_age,
    ) == (
        "2h",
        "26h",
        "8d",
    )
    assert config.retention_time and config.retention_size
    assert config.email.require_tls
    assert duration_seconds(config.routing.critical_repeat_interval) < duration_seconds(
        config.routing.repeat_interval
    )


def test_receivers_are_required():
    with pytest.raises(ValidationError) as error:
        MonitoringConfig()
    assert {e["loc"] for e in error.value.errors()} == {("email",), ("slack",)}


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ({"alerts": {"service_down_for": "2 minutes"}}, ("alerts", "service_down_for"), "units d, h, m, s"),
        ({"alerts": {"error_rate_for": "0s"}}, ("alerts", "error_rate_for"), "longer than 0s"),
        ({"alerts": {"error_rate_ratio": 10}}, ("alerts", "error_rate_ratio"), "less than 1"),
        (
            {"alerts": {"kafka_consumer_lag_messages": 0}},
            ("alerts", "kafka_consumer_lag_messages"),
            "greater than 0",
        ),
        ({"retention_size": "20G"}, ("retention_size",), "GB"),
        ({"slack": {"channel": "alerts"}}, ("slack", "channel"), "'#alerts'"),
        ({"email": {"to": "not an address"}}, ("email", "to"), "e-mail address"),
        ({"required_jobs": ("API Gateway",)}, ("required_jobs", 0), "job name"),
    ],
)
def test_invalid_values_name_the_field_and_what_is_allowed(config, override, field, hint):
    data = config.model_dump()
    for key, value in override.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ValidationError) as error:
        MonitoringConfig(**data)
    [problem] = error.value.errors()
    assert problem["loc"] == field
    assert hint in problem["msg"]


def test_secrets_have_no_field(config):
    """The SMTP password and webhook URL only ever travel as file paths."""
    data = config.model_dump()
    for key, secret in (("email", "smtp_password"), ("email", "auth_password"), ("slack", "api_url")):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            MonitoringConfig(**{**data, key: {**data[key], secret: "hunter2"}})


def test_scrape_timeout_must_fit_the_interval(config):
    with pytest.raises(
        ValidationError, match=r"scrape_timeout \(20s\) must not exceed scrape_interval \(15s\)"
    ):
        MonitoringConfig(**{**config.model_dump(), "scrape_timeout": "20s"})


def test_config_is_frozen(config):
    with pytest.raises(ValidationError):
        config.retention_time = "1y"


def test_durations():
    assert [duration_seconds(d) for d in ("30s", "5m", "2h", "26h", "8d", "1d12h")] == [
        30,
        300,
        7200,
        93600,
        691200,
        129600,
    ]
    with pytest.raises(ValueError, match="largest first"):
        duration_seconds("5m2h")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("API", "api:8080"), "job"),
        (("api", "http://api:8080"), "without a scheme"),
        (("api", "api"), "host:port"),
        (("api", "api:8080", "metrics"), "start with '/'"),
        (("api", "api:8080", "/metrics", {"job": "x"}), "not 'job' or 'instance'"),
        (("api", "api:8080", "/metrics", {"__address__": "x"}), "not starting with '__'"),
    ],
)
def test_scrape_target_validation(args, message):
    with pytest.raises(ValueError, match=message):
        ScrapeTarget(*args)


def test_scrape_target_is_immutable_and_hashable():
    labels = {"service": "api-gateway"}
    target = ScrapeTarget("api-gateway", "api-gateway:8080", "/actuator/prometheus", labels)
    labels["service"] = "changed"
    assert target.labels == {"service": "api-gateway"}
    with pytest.raises(TypeError):
        target.labels["service"] = "changed"  # type: ignore[index]
    assert len({target, ScrapeTarget("api-gateway", "api-gateway:8080", "/actuator/prometheus", labels)}) == 2


def test_exporter_targets_use_the_exporters_ports():
    by_job = {t.job: t for t in exporter_targets(clickhouse="ch-1", clickhouse_backup="ch-backup", cadvisor="cadvisor")}
    assert {job: t.address for job, t in by_job.items()} == {
        "postgres-exporter": "postgres-exporter:9187",
        "redis-exporter": "redis-exporter:9121",
        "kafka-exporter": "kafka-exporter:9308",
        "node-exporter": "node-exporter:9100",
        "cadvisor": "cadvisor:8080",
        "clickhouse": "ch-1:9363",
        "clickhouse-backup": "ch-backup:7171",
    }
    assert by_job["clickhouse"].metrics_path == "/metrics"
    assert {"clickhouse-backup", "cadvisor"}.isdisjoint({t.job for t in exporter_targets()})
