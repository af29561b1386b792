"""alertmanager.yml: accepted by amtool, critical pages e-mail + Slack, warnings go to Slack,
secrets only as file references, and a real Alertmanager applies the inhibition rules."""

import json
import time

import pytest
import yaml

from platform_infra.components.monitoring import (
    CRITICAL_EMAIL,
    CRITICAL_SLACK,
    WARNING_SLACK,
    MonitoringConfig,
    alertmanager_args,
    render_alertmanager_config,
)
from platform_infra.components.monitoring.alerts import alert_specs

SMTP_PASSWORD_FILE = "/run/secrets/smtp_password"
SLACK_WEBHOOK_FILE = "/run/secrets/slack_webhook_url"


def render(config, smtp_password_file=SMTP_PASSWORD_FILE, slack_webhook_file=SLACK_WEBHOOK_FILE):
    return render_alertmanager_config(
        config, smtp_password_file=smtp_password_file, slack_webhook_file=slack_webhook_file
    )


def test_amtool_accepts_the_config(amtool, run, write, config):
    result = run(amtool, "check-config", write("alertmanager.yml", render(config)))
    assert result.returncode == 0, result.stdout
    assert "2 inhibit rules" in result.stdout and "3 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (
            ["severity=critical", "alertname=ServiceDown", "service=api-gateway"],
            f"{CRITICAL_EMAIL},{CRITICAL_SLACK}",
        ),
        (["severity=critical", "alertname=KafkaConsumerLagHigh"], f"{CRITICAL_EMAIL},{CRITICAL_SLACK}"),
        (["severity=warning", "alertname=HighLatencyP95", "service=api-gateway"], WARNING_SLACK),
        (["severity=warning", "alertname=PostgresFullBackupStale"], WARNING_SLACK),
        # Without a known severity: still seen, never paged.
        (["alertname=Unlabelled"], WARNING_SLACK),
    ],
)
def test_routing(amtool, run, write, config, labels, receivers):
    alertmanager_yml = write("alertmanager.yml", render(config))
    result = run(amtool, "config", "routes", "test", f"--config.file={alertmanager_yml}", *labels)
    assert result.returncode == 0, result.stdout
    # The last line lists the receivers; amtool may print a warning about --alertmanager.url before it.
    assert result.stdout.strip().splitlines()[-1] == receivers
    verified = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_yml}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert verified.returncode == 0, verified.stdout


def test_a_warning_never_pages(amtool, run, write, config):
    alertmanager_yml = write("alertmanager.yml", render(config))
    result = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_yml}",
        f"--verify.receivers={CRITICAL_EMAIL},{CRITICAL_SLACK}",
        "severity=warning",
    )
    assert result.returncode != 0


def test_critical_is_pager_style(config):
    routes = yaml.safe_load(render(config))["route"]["routes"]
    critical = [r for r in routes if r["matchers"] == ['severity="critical"']]
    assert [r["receiver"] for r in critical] == [CRITICAL_EMAIL, CRITICAL_SLACK]
    assert critical[0]["continue"] is True
    assert all(r["repeat_interval"] == "30m" and r["group_wait"] == "10s" for r in critical)
    assert yaml.safe_load(render(config))["route"]["group_by"] == ["alertname", "service"]


def test_slack_channels(config):
    receivers = {r["name"]: r for r in yaml.safe_load(render(config))["receivers"]}
    assert receivers[CRITICAL_SLACK]["slack_configs"][0]["channel"] == "#platform-pager"
    assert receivers[WARNING_SLACK]["slack_configs"][0]["channel"] == "#platform-alerts"
    assert receivers[CRITICAL_EMAIL]["email_configs"][0]["to"] == "oncall@example.org"


def test_secrets_are_only_referenced_by_file(config):
    rendered = yaml.safe_load(render(config))
    assert rendered["global"]["smtp_auth_password_file"] == SMTP_PASSWORD_FILE
    assert rendered["global"]["smtp_require_tls"] is True
    slack_configs = [c for r in rendered["receivers"] for c in r.get("slack_configs", [])]
    assert slack_configs and all(c["api_url_file"] == SLACK_WEBHOOK_FILE for c in slack_configs)
    text = render(config)
    for literal_key in (
        "smtp_auth_password:",
        "smtp_auth_secret",
        "api_url:",
        "slack_api_url:",
        "auth_password:",
    ):
        assert literal_key not in text


def test_amtool_rejects_slack_without_webhook(amtool, run, write, config):
    """Guards the assumption above: without api_url_file the Slack receivers are invalid."""
    broken = yaml.safe_load(render(config))
    for receiver in broken["receivers"]:
        for slack in receiver.get("slack_configs", []):
            del slack["api_url_file"]
    result = run(amtool, "check-config", write("alertmanager.yml", yaml.safe_dump(broken)))
    assert result.returncode != 0
    assert "no global Slack API URL set" in result.stdout


@pytest.mark.parametrize("argument", ["smtp_password_file", "slack_webhook_file"])
def test_secret_paths_must_be_absolute(config, argument):
    with pytest.raises(ValueError, match=argument):
        render(config, **{argument: "secrets/x"})


def labels_of(config, name, **extra):
    [spec] = [s for s in alert_specs(config) if s.name == name and not s.static_labels]
    return {"alertname": name, **spec.labels, **extra}


def test_running_alertmanager_inhibits_the_warnings_a_critical_alert_explains(
    alertmanager_binary, start_server, http, write, tmp_path, config
):
    # Long group waits: the test must not try to send e-mail or Slack messages.
    quiet = MonitoringConfig(
        **{**config.model_dump(), "routing": {"group_wait": "10m", "critical_group_wait": "10m"}}
    )
    smtp_password = write("secrets/smtp_password", "not-used")
    slack_webhook = write("secrets/slack_webhook_url", "https://hooks.slack.invalid/services/T/B/X")
    alertmanager_yml = write("alertmanager.yml", render(quiet, str(smtp_password), str(slack_webhook)))
    args = alertmanager_args(config_file=str(alertmanager_yml), storage_path=str(tmp_path / "am-data"))
    base = start_server([alertmanager_binary, *args], "/-/ready")

    alerts = {
        # Availability: a down service mutes every warning of that service.
        "orchestrator down": labels_of(
            config, "ServiceDown", service="orchestrator", instance="orchestrator:8080"
        ),
        "orchestrator jobs": labels_of(config, "JobFailureRateHigh", service="orchestrator"),
        # Same family and service: errors explain the latency.
        "gateway errors": labels_of(config, "HighErrorRate", service="api-gateway"),
        "gateway latency": labels_of(config, "HighLatencyP95", service="api-gateway"),
        # Other family, or other service: still notified.
        "gateway logins": labels_of(config, "UnusualLoginActivity", service="api-gateway"),
        "query latency": labels_of(config, "HighLatencyP95", service="query-service"),
    }
    status, body = http(base + "/api/v2/alerts", "POST", [{"labels": labels} for labels in alerts.values()])
    assert status == 200, body

    expected = {"orchestrator jobs", "gateway latency"}
    inhibited: set[str] = set()
    deadline = time.monotonic() + 10
    while inhibited != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        current = json.loads(http(base + "/api/v2/alerts")[1])
        muted = [a["labels"] for a in current if a["status"]["inhibitedBy"]]
        inhibited = {name for name, labels in alerts.items() if labels in muted}
    assert inhibited == expected
    assert len(current) == len(alerts)
