"""Stack config validation: each bad input gets one message naming the file, the key path and what is allowed."""

from __future__ import annotations

import pytest

from platform_infra.infra.settings import SettingsError, check_config_keys, parse_settings
from platform_infra.infra.stackconfig import check_secret_value

MONITORING = {"email": {"to": "oncall@example.com", "from_address": "am@example.com", "smarthost": "smtp.example.com:587",
                        "auth_username": "am@example.com"},
              "slack": {"channel": "#alerts"}}
BASE = {"environment": "prod", "public_hosts": ["orchestration.example.com"],
        "registry": "registry.internal/orchestration", "app_version": "1.0.0", "monitoring": MONITORING}


def test_environment_defaults_apply_under_the_stack_values():
    prod = parse_settings(BASE, "Pulumi.prod.yaml")
    assert (prod.log_level, prod.swagger_enabled, prod.workers) == ("INFO", False, 3)
    assert prod.apps.api_gateway.replicas == 2 and prod.data.postgres.memory_mb == 2048
    dev = parse_settings({**BASE, "environment": "dev"}, "Pulumi.dev.yaml")
    assert (dev.log_level, dev.swagger_enabled, dev.workers) == ("DEBUG", True, 1)
    tuned = parse_settings({**BASE, "workers": 7, "apps": {"worker": {"db_pool_size": 30}},
                            "data": {"postgres_max_connections": 400}}, "Pulumi.prod.yaml")
    assert tuned.workers == 7 and tuned.apps.worker.db_pool_size == 30
    assert tuned.apps.worker.resources.memory_mb == 1024  # the rest of the default survives the override


@pytest.mark.parametrize("override, message", [
    ({"app_verison": "1.0.0"}, "platform:settings.app_verison: unknown key; allowed: environment, public_hosts"),
    ({"workers": "three"}, "platform:settings.workers: Input should be a valid integer"),
    ({"workers": 0}, "platform:settings.workers: Input should be greater than or equal to 1"),
    ({"log_level": "DEBUG"}, "log_level must be INFO or WARN in prod"),
    ({"swagger_enabled": True}, "swagger_enabled must be false in prod"),
    ({"log_level": "LOUD"}, "platform:settings.log_level: allowed: 'TRACE', 'DEBUG', 'INFO', 'WARN' or 'ERROR'"),
    ({"app_version": "latest"}, "platform:settings.app_version: must be a pinned image tag"),
    ({"images": {"redis": "redis"}}, "platform:settings.images.redis: image 'redis' must be pinned"),
    ({"images": {"redis": "redis:latest"}}, "must be pinned"),
    ({"public_hosts": ["Not A Host"]}, "platform:settings.public_hosts: 'Not A Host' is not a lower-case DNS host name"),
    ({"public_hosts": []}, "platform:settings.public_hosts: List should have at least 1 item"),
    ({"apps": {"worker": {"resources": {"memroy_mb": 3}}}},
     "platform:settings.apps.worker.resources.memroy_mb: unknown key; allowed: memory_mb, cpus"),
    ({"apps": {"worker": {"db_pool_min_idle": 99}}}, "db_pool_min_idle must not exceed db_pool_size"),
    ({"data": {"postgres_user": "postgres"}}, "must connect as its own role, not 'postgres'"),
    ({"data": {"kafka_mode": "raft"}}, "platform:settings.data.kafka_mode: allowed: 'kraft'"),
    ({"data": {"kafka_mode": "zookeeper"}},
     "platform:settings.data.kafka_mode: ZooKeeper mode was removed: the apache/kafka image's launch script"),
    ({"data": {"postgres_max_connections": 100}},
     ("data.postgres_max_connections (100) is below the connections the stack can open: "
     "apps.api_gateway.db_pool_size 20 x replicas 2 + ")),
    ({"workers": 12}, "apps.worker.db_pool_size 10 x workers 12"),
    ({"apps": {"query_service": {"db_pool_size": 120}}}, "apps.query_service.db_pool_size 120 x replicas 1"),
    ({"tls": {"validity_days": 1000}}, "platform:settings.tls.validity_days: Input should be less than or equal to 366"),
    ({"docker_host": "http://x"}, "platform:settings.docker_host"),
    ({"environment": "production"}, "platform:settings.environment: allowed: prod, staging, dev"),
    ({"monitoring": {**MONITORING, "alerts": {"error_rate_ratio": 2}}}, "platform:settings.monitoring.alerts.error_rate_ratio"),
    ({"monitoring": {**MONITORING, "slack": {"chanel": "#x"}}},
     "platform:settings.monitoring.slack.chanel: unknown key; allowed: channel, critical_channel"),
    ({"edge": {"api_burst": -1}}, "platform:settings.edge.api_burst: Input should be greater than or equal to 0"),
    ({"grafana_root_url": "http://grafana"}, "platform:settings.grafana_root_url"),
    ({"container_metrics": {"docker_socket_accepted_until": "soon"}},
     "platform:settings.container_metrics.docker_socket_accepted_until: Input should be a valid date"),
    ({"container_metrics": {}}, "platform:settings.container_metrics.docker_socket_accepted_until: required key"),
    # The socket proxies run with the socket's group: it must be said, never guessed.
    ({"container_metrics": {"docker_socket_accepted_until": "2027-11-30"}},
     "platform:settings.docker_socket_gid: required with container_metrics or autoscaling"),
    ({"docker_socket_gid": 0}, "platform:settings.docker_socket_gid: Input should be greater than or equal to 1"),
])
def test_bad_settings_name_file_key_and_rule(override, message):
    raw = {**BASE, **override}
    with pytest.raises(SettingsError) as error:
        parse_settings(raw, "Pulumi.prod.yaml")
    assert str(error.value).startswith("Pulumi.prod.yaml: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("key", ["app_version", "registry", "public_hosts", "monitoring"])
def test_missing_required_key(key):
    raw = {k: v for k, v in BASE.items() if k != key}
    with pytest.raises(SettingsError, match=f"platform:settings.{key}: required key is missing"):
        parse_settings(raw, "Pulumi.prod.yaml")


def test_settings_must_be_a_mapping():
    with pytest.raises(SettingsError, match="must be a mapping"):
        parse_settings(["prod"], "Pulumi.prod.yaml")


def test_config_keys_unknown_or_unencrypted_are_refused():
    check_config_keys({"platform:settings", "platform:jwtSecret", "aws:region"}, {"platform:jwtSecret"}, "P.yaml")
    with pytest.raises(SettingsError, match="platform:setings: unknown key; allowed: settings, postgresPassword"):
        check_config_keys({"platform:setings"}, set(), "P.yaml")
    with pytest.raises(SettingsError, match="must be set with `pulumi config set --secret platform:jwtSecret`"):
        check_config_keys({"platform:jwtSecret"}, set(), "P.yaml")


@pytest.mark.parametrize("key, value, message", [
    ("jwtSecret", "short-but-random-Xy7", r"at least 32 bytes \(256 bits for HS256\)"),
    ("jwtSecret", "your-256-bit-secret", "default or weak"),
    ("postgresPassword", "postgres", "default or weak"),
    ("grafanaAdminPassword", "admin", "default or weak"),
    ("kafkaPassword", "a" * 40, "default or weak"),
    ("postgresBackupPassword", "Abc123", "at least 16 bytes"),
    ("tlsCertificate", "not pem", "must be PEM text"),
])
def test_supplied_secret_values_are_checked(key, value, message):
    with pytest.raises(SettingsError, match=message):
        check_secret_value(key, value, "Pulumi.prod.yaml")


def test_strong_supplied_secret_is_accepted():
    check_secret_value("jwtSecret", "q8Vn3Lr0Zt6Yw1Kp9Hs5Dm2Xc7Bf4Gj0Ne8Ra6Ub3Ti1", "Pulumi.prod.yaml")


def test_the_connection_budget_counts_every_pool_the_exporter_and_the_reserve():
    # prod: 20x2 + 20 + 10x3 + 10 + 15 = 115 pooled, + 3 exporter + 2 backup job + 5 reserve = 125.
    assert parse_settings({**BASE, "data": {"postgres_max_connections": 125}}, "Pulumi.prod.yaml")
    with pytest.raises(SettingsError, match=r"= 126; raise data.postgres_max_connections"):
        parse_settings({**BASE, "data": {"postgres_max_connections": 125}, "apps": {"log_aggregator": {
            "db_pool_size": 11}}}, "Pulumi.prod.yaml")


SCALED = {"runtime": "swarm", "docker_socket_gid": 999, "autoscaling": {"docker_socket_accepted_until": "2027-11-30", "workers": {
    "min_replicas": 2, "max_replicas": 12, "consumer_group": "job-workers", "topic": "jobs"}}}


def test_the_budget_counts_the_autoscalers_ceiling_and_a_start_first_rollout_task_per_swarm_service():
    # prod, Swarm, workers autoscaled up to 12, each Spring service rolling out start-first (one task beside
    # its replicas): 20x(2+1) + 20x(1+1) + 10x(12+1) + 10x(1+1) + 15x(1+1) = 280, + 3 exporter + 2 backup job
    # + 5 reserve = 290.
    # Counting `workers` (3) alone gave 123; max_replicas alone 213: both fit PostgreSQL's default 200.
    with pytest.raises(SettingsError) as error:
        parse_settings({**BASE, **SCALED}, "Pulumi.prod.yaml")
    assert str(error.value) == (
        "Pulumi.prod.yaml: platform:settings: data.postgres_max_connections (200) is below the connections the "
        "stack can open: apps.api_gateway.db_pool_size 20 x (replicas 2 + 1 start-first rollout task) + "
        "apps.orchestrator.db_pool_size 20 x (replicas 1 + 1 start-first rollout task) + "
        "apps.worker.db_pool_size 10 x (autoscaling.workers.max_replicas 12 + 1 start-first rollout task) + "
        "apps.log_aggregator.db_pool_size 10 x (replicas 1 + 1 start-first rollout task) + "
        "apps.query_service.db_pool_size 15 x (replicas 1 + 1 start-first rollout task) + 3 for the exporter + "
        "2 for the backup job + 5 reserved for administration = 290; raise data.postgres_max_connections or lower the pools")
    assert parse_settings({**BASE, **SCALED, "data": {"postgres_max_connections": 290}}, "Pulumi.prod.yaml")
    with pytest.raises(SettingsError, match=r"= 290; raise"):
        parse_settings({**BASE, **SCALED, "data": {"postgres_max_connections": 289}}, "Pulumi.prod.yaml")


def test_swarm_without_autoscaling_counts_workers_and_the_rollout_task():
    # 20x3 + 20x2 + 10x(3+1) + 10x2 + 15x2 = 190, + 10 = 200.
    swarm = {**BASE, "runtime": "swarm"}
    assert parse_settings({**swarm, "data": {"postgres_max_connections": 200}}, "Pulumi.prod.yaml")
    with pytest.raises(SettingsError, match=r"apps.worker.db_pool_size 10 x \(workers 3 \+ 1 start-first rollout "
                                            r"task\) .* = 200; raise"):
        parse_settings({**swarm, "data": {"postgres_max_connections": 199}}, "Pulumi.prod.yaml")


def test_the_docker_runtime_replaces_containers_delete_before_replace_so_no_task_is_added():
    # The same stack on one Docker host: 20x2 + 20 + 10x3 + 10 + 15 = 115, + 10 = 125 (no rollout task).
    assert parse_settings({**BASE, "data": {"postgres_max_connections": 125}}, "Pulumi.prod.yaml")
    with pytest.raises(SettingsError, match=r"apps.worker.db_pool_size 10 x workers 3 .* = 126"):
        parse_settings({**BASE, "workers": 3, "apps": {"query_service": {"db_pool_size": 16}},
                        "data": {"postgres_max_connections": 125}}, "Pulumi.prod.yaml")
