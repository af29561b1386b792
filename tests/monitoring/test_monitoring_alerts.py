"""Alert rules, proven with promtool: every alert fires just past its threshold once its `for:`
has passed and stays silent just inside it; overridden thresholds keep the tests meaningful."""

import yaml

from platform_infra.components.monitoring import MonitoringConfig, render_alert_rules, render_rule_tests
from platform_infra.components.monitoring.alerts import alert_specs

# The checklist's alerts ("Alerts Configuration") plus backup freshness and uptime.
CRITICAL = {
    "ServiceDown",
    "ServiceAbsent",
    "UptimeProbeFailed",
    "HighErrorRate",
    "PostgresDown",
    "RedisDown",
    "DatabaseConnectionTimeouts",
    "KafkaConsumerLagHigh",
    "DiskSpaceLow",
    "PostgresWalArchiveFailing",
}
WARNING = {
    "JobFailureRateHigh",
    "HighLatencyP95",
    "HostMemoryHigh",
    "ContainerMemoryHigh",
    "HostCpuHigh",
    "ContainerCpuHigh",
    "UnusualLoginActivity",
    "TlsCertificateExpiringSoon",
    "WorkersAtMaxReplicas",
    "AutoscalerStuckPartitions",
    "AutoscalerFallback",
}
BACKUPS = {
    "PostgresIncrementalBackupStale",
    "PostgresFullBackupStale",
    "ClickHouseBackupStale",
    "ClickHouseBackupFailed",
}


def with_alerts(config: MonitoringConfig, **thresholds) -> MonitoringConfig:
    data = config.model_dump()
    return MonitoringConfig(**{**data, "alerts": {**data["alerts"], **thresholds}})


def promtool_test(promtool, run, write, rules_config, tests_config):
    write("alerts.yml", render_alert_rules(rules_config))
    return run(promtool, "test", "rules", write("alerts_test.yml", render_rule_tests(tests_config)))


def rules_by_name(config):
    groups = yaml.safe_load(render_alert_rules(config))["groups"]
    return {rule["alert"]: (group["name"], rule) for group in groups for rule in group["rules"]}


def test_groups_and_severities(config):
    rules = rules_by_name(config)
    assert {name for name, (group, _) in rules.items() if group == "critical"} == CRITICAL
    assert {name for name, (group, _) in rules.items() if group == "warning"} == WARNING
    assert {name for name, (group, _) in rules.items() if group == "backups"} == BACKUPS
    for group, rule in rules.values():
        assert rule["labels"]["severity"] == ("critical" if group == "critical" else "warning")
        assert rule["for"], rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"] == f"docs/RUNBOOK.md#{rule['alert'].lower()}"


def test_promtool_accepts_the_rules(promtool, run, write, config):
    result = run(promtool, "check", "rules", write("alerts.yml", render_alert_rules(config)))
    assert result.returncode == 0, result.stdout
    assert f"SUCCESS: {len(alert_specs(config))} rules found" in result.stdout


def test_every_alert_fires_past_and_stays_silent_inside_its_threshold(promtool, run, write, config):
    result = promtool_test(promtool, run, write, config, config)
    assert result.returncode == 0, result.stdout
    assert "SUCCESS" in result.stdout


def test_every_rule_has_a_firing_and_a_silent_test(config):
    tests = yaml.safe_load(render_rule_tests(config))["tests"]
    rules = yaml.safe_load(render_alert_rules(config))["groups"]
    for group in rules:
        for rule in group["rules"]:
            fixed = ",".join(
                f'{k}="{v}"' for k, v in rule["labels"].items() if k not in ("severity", "family")
            )
            name = f"{rule['alert']}{{{fixed}}}" if fixed else rule["alert"]
            firing = [t for t in tests if t["name"].startswith(f"{name} fires")]
            silent = [t for t in tests if t["name"].startswith(f"{name} stays silent")]
            assert firing and silent, name
            # Pending before `for:` has passed (where `for` is at least one test step), firing after.
            for test in firing:
                *pending, final = test["alert_rule_test"]
                assert final["exp_alerts"], name
                assert all(check["exp_alerts"] == [] for check in pending)
            for test in silent:
                assert len(test["alert_rule_test"]) > 1
                assert all(check["exp_alerts"] == [] for check in test["alert_rule_test"])


def test_every_alert_carries_the_labels_routing_and_inhibition_use(config):
    for spec in alert_specs(config):
        for scenario in spec.firing:
            for labels in scenario.alerts:
                assert {"service", "family", "severity"} <= {*labels, *spec.labels}, spec.name


# Threshold -> (rule, what its expression must now contain); all applied at once.
OVERRIDES = {
    "error_rate_ratio": (0.25, "HighErrorRate", "> 0.25"),
    "kafka_consumer_lag_messages": (50_000, "KafkaConsumerLagHigh", "> 50000"),
    "disk_free_ratio": (0.2, "DiskSpaceLow", "< 0.2"),
    "latency_p95_seconds": (0.5, "HighLatencyP95", "> 0.5"),
    "failed_logins_per_minute": (30, "UnusualLoginActivity", "> 30"),
    "postgres_full_backup_max_age": ("50h", "PostgresFullBackupStale", "> 180000"),
    "memory_used_ratio": (0.9, "ContainerMemoryHigh", "> 0.9"),
}


def test_overridden_thresholds_change_the_rules_and_their_tests_still_pass(promtool, run, write, config):
    changed = with_alerts(
        config,
        **{name: value for name, (value, _, _) in OVERRIDES.items()},
        service_down_for="30s",
        cpu_used_for="3m",
        wal_archive_failing_for="25m",
    )
    before, after = rules_by_name(config), rules_by_name(changed)
    for _, rule, expected in OVERRIDES.values():
        assert expected in after[rule][1]["expr"], rule
        assert expected not in before[rule][1]["expr"], rule
    assert (after["ServiceDown"][1]["for"], after["HostCpuHigh"][1]["for"]) == ("30s", "3m")
    assert after["PostgresWalArchiveFailing"][1]["for"] == "25m"
    result = promtool_test(promtool, run, write, changed, changed)
    assert result.returncode == 0, result.stdout


def test_tests_catch_rules_that_drifted_from_the_thresholds(promtool, run, write, config):
    """Deliberate failure: rules from other thresholds than the tests -> promtool must fail, and
    name exactly the drifted alerts (a firing case that stays silent or a silent one that fires)."""
    drifted = with_alerts(
        config,
        error_rate_ratio=0.2,
        disk_free_ratio=0.05,
        kafka_consumer_lag_messages=10_200,
        cpu_used_ratio=0.7,
    )
    result = promtool_test(promtool, run, write, drifted, config)
    assert result.returncode != 0
    failed = {
        line.split("alertname: ")[1].split(",")[0]
        for line in result.stdout.splitlines()
        if "alertname: " in line
    }
    assert failed == {
        "HighErrorRate",
        "DiskSpaceLow",
        "KafkaConsumerLagHigh",
        "HostCpuHigh",
        "ContainerCpuHigh",
    }
    assert "name: HostCpuHigh stays silent" in result.stdout


def test_tests_catch_a_for_duration_that_drifted(promtool, run, write, config):
    result = promtool_test(promtool, run, write, with_alerts(config, service_down_for="1m"), config)
    assert result.returncode != 0
    # Fires while the tests still expect it to be pending.
    assert "name: ServiceDown fires" in result.stdout
