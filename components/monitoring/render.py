"""Pure renderers of the observability stack's configuration files.

Every file is built as Python data and dumped with PyYAML (or JSON), never from text templates,
so a value can not break the syntax around it. The Monitoring component uploads the results.
"""

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources

import yaml

from .alerts import (
    PROBE_JOB,
    PROBE_SERVICE,
    TEST_STEP_SECONDS,
    AlertSpec,
    alert_specs,
    fire_time,
    pending_time,
)
from .model import MonitoringConfig
from .targets import TASKS_DNS_PREFIX, ScrapeTarget, exporter_targets

__all__ = [
    "BLACKBOX_MODULE",
    "CRITICAL_EMAIL",
    "CRITICAL_SLACK",
    "PROMETHEUS_DATASOURCE_UID",
    "WARNING_SLACK",
    "exporter_targets",
    "load_dashboards",
    "render_alert_rules",
    "render_alertmanager_config",
    "render_blackbox_config",
    "render_grafana_dashboard_provider",
    "render_grafana_datasources",
    "render_prometheus_config",
    "render_rule_tests",
]

PROMETHEUS_DATASOURCE_UID = "prometheus"
BLACKBOX_MODULE = "https_2xx"
_HOST_PORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}$")
_TEMPLATE_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")

# Receiver names, referenced by tests and by `amtool config routes test`.
CRITICAL_EMAIL = "critical-email"
CRITICAL_SLACK = "critical-slack"
WARNING_SLACK = "warning-slack"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml when built in: same YAML, faster
    # Shared Python objects would otherwise become YAML anchors (&id001), which obscure the file.
    def ignore_aliases(self, data: object) -> bool:
        return True


def _dump(data: object) -> str:
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True
    )


def _require_host_port(name: str, value: str) -> None:
    if not _HOST_PORT.match(value):
        raise ValueError(f"{name} {value!r}: expected 'host:port' without a scheme")


def _require_absolute(name: str, path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"{name} {path!r}: expected an absolute path inside the container")


def render_prometheus_config(
    targets: Sequence[ScrapeTarget],
    config: MonitoringConfig,
    *,
    alertmanager_address: str,
    rule_files: Sequence[str],
    probe_urls: Sequence[str],
    blackbox_address: str = "blackbox-exporter:9115",
) -> str:
    """prometheus.yml: one scrape job per target job name, plus HTTPS uptime probes via blackbox.

    Every target gets a `service` label (its job name unless it brings one) because alert rules
    aggregate and Alertmanager groups and inhibits by it.
    """
    _require_host_port("alertmanager_address", alertmanager_address)
    _require_host_port("blackbox_address", blackbox_address)
    if not rule_files:
        raise ValueError("rule_files: at least one rule file is needed, or no alert can fire")
    if not probe_urls or any(not url.startswith("https://") for url in probe_urls):
        raise ValueError(f"probe_urls {list(probe_urls)!r}: give the public endpoint(s) as https:// URLs")

    jobs: dict[str, list[ScrapeTarget]] = {}
    for target in targets:
        if any(t.address == target.address for t in jobs.get(target.job, [])):
            raise ValueError(f"target {target.address} is listed twice in job {target.job!r}")
        jobs.setdefault(target.job, []).append(target)
    if PROBE_JOB in jobs:
        raise ValueError(f"job name {PROBE_JOB!r} is reserved for the uptime probes")
    missing = [job for job in config.required_jobs if job not in jobs]
    if missing:
        raise ValueError(
            f"no scrape target for required job(s) {missing}: add targets for them, "
            "or remove them from MonitoringConfig.required_jobs"
        )

    scrape_configs = [_scrape_job(job, job_targets) for job, job_targets in jobs.items()]
    scrape_configs.append(
        {
            "job_name": PROBE_JOB,
            "metrics_path": "/probe",
            "params": {"module": [BLACKBOX_MODULE]},
            "static_configs": [{"targets": list(probe_urls), "labels": {"service": PROBE_SERVICE}}],
            # Standard blackbox pattern: the URL becomes the probe's target parameter and instance
            # label, and the scrape itself goes to the exporter.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": blackbox_address},
            ],
        }
    )
    return _dump(
        {
            "global": {
                "scrape_interval": config.scrape_interval,
                "scrape_timeout": config.scrape_timeout,
                "evaluation_interval": config.evaluation_interval,
            },
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]},
            "rule_files": list(rule_files),
            "scrape_configs": scrape_configs,
        }
    )


def _scrape_job(job: str, targets: Sequence[ScrapeTarget]) -> dict:
    logins = {t.basic_auth for t in targets}
    if len(logins) > 1:
        raise ValueError(f"job {job!r}: its targets must share one login (basic_auth)")
    login = logins.pop()
    scrape_job = _targets_job(job, targets)
    if login is not None:
        scrape_job["basic_auth"] = {"username": login[0], "password_file": login[1]}
    return scrape_job


def _targets_job(job: str, targets: Sequence[ScrapeTarget]) -> dict:
    per_task = [t for t in targets if t.address.startswith(TASKS_DNS_PREFIX)]
    if per_task:
        return _dns_scrape_job(job, targets)
    paths = {t.metrics_path for t in targets}
    shared_path = paths.pop() if len(paths) == 1 else None
    static_configs = []
    for target in targets:
        labels = {"service": job, **target.labels}
        if shared_path is None:
            # Prometheus reads a target's path from this label when its job mixes paths.
            labels["__metrics_path__"] = target.metrics_path
        static_configs.append({"targets": [target.address], "labels": labels})
    scrape_job: dict = {"job_name": job}
    if shared_path is not None:
        scrape_job["metrics_path"] = shared_path
    scrape_job["static_configs"] = static_configs
    return scrape_job


def _dns_scrape_job(job: str, targets: Sequence[ScrapeTarget]) -> dict:
    """A job over Swarm tasks: Docker's DNS answers `tasks.<service>` with one A record per task, which
    Prometheus re-resolves (dns_sd_configs), so every replica is scraped, however many there are."""
    if len(targets) != 1:
        raise ValueError(f"job {job!r}: a tasks.<service> target must be the job's only target")
    (target,) = targets
    host, _, port = target.address.rpartition(":")
    return {
        "job_name": job,
        "metrics_path": target.metrics_path,
        "dns_sd_configs": [{"names": [host], "type": "A", "port": int(port)}],
        "relabel_configs": [{"target_label": key, "replacement": value}
                            for key, value in {"service": job, **target.labels}.items()],
    }


def render_blackbox_config(ca_file: str | None = None) -> str:
    """blackbox.yml with the module the uptime probes use: HTTPS only, 2xx expected, the certificate verified
    against `ca_file` (the stack's own CA, or its supplied certificate) when given, else the system roots."""
    http: dict = {"method": "GET", "fail_if_not_ssl": True, "preferred_ip_protocol": "ip4"}
    if ca_file:
        http["tls_config"] = {"ca_file": ca_file}
    return _dump({"modules": {BLACKBOX_MODULE: {"prober": "http", "timeout": "5s", "http": http}}})


def _runbook(config: MonitoringConfig, spec: AlertSpec) -> str:
    return f"{config.runbook_base_url}#{spec.name.lower()}"


def _annotations(config: MonitoringConfig, spec: AlertSpec) -> dict[str, str]:
    return {"summary": spec.summary, "description": spec.description, "runbook_url": _runbook(config, spec)}


def render_alert_rules(config: MonitoringConfig) -> str:
    """Alert rule file with the groups "critical", "warning" and "backups"."""
    groups: dict[str, list[dict]] = {"critical": [], "warning": [], "backups": []}
    for spec in alert_specs(config):
        groups[spec.group].append(
            {
                "alert": spec.name,
                "expr": spec.expr,
                "for": spec.for_,
                "labels": spec.labels,
                "annotations": _annotations(config, spec),
            }
        )
    return _dump({"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]})


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _expand(template: str, labels: Mapping[str, str]) -> str:
    """What Prometheus renders for `{{ $labels.x }}`, the only template form the rules use."""
    return _TEMPLATE_LABEL.sub(lambda match: labels[match.group(1)], template)


def _expected_alert(config: MonitoringConfig, spec: AlertSpec, expr_labels: Mapping[str, str]) -> dict:
    # $labels in annotations are the expression's labels, without the rule's own labels.
    annotations = {key: _expand(value, expr_labels) for key, value in _annotations(config, spec).items()}
    return {"exp_labels": {**expr_labels, **spec.labels}, "exp_annotations": annotations}


def rule_test_name(spec: AlertSpec) -> str:
    """Alert name plus its fixed labels: several ServiceAbsent rules differ only in those."""
    fixed = ",".join(f'{k}="{v}"' for k, v in (spec.static_labels or {}).items())
    return f"{spec.name}{{{fixed}}}" if fixed else spec.name


def render_rule_tests(config: MonitoringConfig, *, rule_file: str = "alerts.yml") -> str:
    """promtool `test rules` file: for every alert, a test group in which it fires (pending before
    its `for:` has passed, firing after) and one in which it stays silent at every step.
    """
    tests = []
    for spec in alert_specs(config):
        end = fire_time(spec.for_, spec.warmup)
        title = rule_test_name(spec)
        for number, scenario in enumerate(spec.firing, start=1):
            checks = []
            pending = pending_time(spec.for_)
            if pending is not None:
                checks.append({"eval_time": _duration(pending), "alertname": spec.name, "exp_alerts": []})
            checks.append(
                {
                    "eval_time": _duration(end),
                    "alertname": spec.name,
                    "exp_alerts": [_expected_alert(config, spec, labels) for labels in scenario.alerts],
                }
            )
            tests.append(_test_group(f"{title} fires ({number})", scenario.series, checks))
        for number, scenario in enumerate(spec.silent, start=1):
            checks = [
                {"eval_time": _duration(seconds), "alertname": spec.name, "exp_alerts": []}
                for seconds in range(0, end + 1, TEST_STEP_SECONDS)
            ]
            tests.append(_test_group(f"{title} stays silent ({number})", scenario.series, checks))
    return _dump(
        {
            "rule_files": [rule_file],
            "evaluation_interval": _duration(TEST_STEP_SECONDS),
            "tests": tests,
        }
    )


def _test_group(name: str, series: Sequence[tuple[str, str]], checks: list[dict]) -> dict:
    return {
        "name": name,
        "interval": _duration(TEST_STEP_SECONDS),
        "input_series": [{"series": selector, "values": values} for selector, values in series],
        "alert_rule_test": checks,
    }


def render_alertmanager_config(
    config: MonitoringConfig, *, smtp_password_file: str, slack_webhook_file: str
) -> str:
    """alertmanager.yml: critical pages by e-mail and Slack, warnings go to Slack.

    The SMTP password and the Slack webhook URL are read by Alertmanager from the given files
    (Docker secrets); `smtp_auth_password_file` needs Alertmanager >= 0.25, `api_url_file` >= 0.22.
    """
    _require_absolute("smtp_password_file", smtp_password_file)
    _require_absolute("slack_webhook_file", slack_webhook_file)
    email, slack, routing = config.email, config.slack, config.routing
    critical = ['severity="critical"']
    critical_timing = {
        "group_wait": routing.critical_group_wait,
        "group_interval": routing.critical_group_interval,
        "repeat_interval": routing.critical_repeat_interval,
    }

    def slack_receiver(name: str, channel: str) -> dict:
        return {
            "name": name,
            "slack_configs": [
                {
                    "api_url_file": slack_webhook_file,
                    "channel": channel,
                    "send_resolved": True,
                    "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.service }}",
                    "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\n"
                    "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}",
                }
            ],
        }

    return _dump(
        {
            "global": {
                "resolve_timeout": "5m",
                "smtp_smarthost": email.smarthost,
                "smtp_from": email.from_address,
                "smtp_auth_username": email.auth_username,
                "smtp_auth_password_file": smtp_password_file,
                "smtp_require_tls": email.require_tls,
            },
            "route": {
                # Alerts without a known severity still reach people, without paging them.
                "receiver": WARNING_SLACK,
                "group_by": list(routing.group_by),
                "group_wait": routing.group_wait,
                "group_interval": routing.group_interval,
                "repeat_interval": routing.repeat_interval,
                "routes": [
                    # `continue` lets the same critical alert reach the Slack route below as well.
                    {"matchers": critical, "receiver": CRITICAL_EMAIL, "continue": True, **critical_timing},
                    {"matchers": critical, "receiver": CRITICAL_SLACK, **critical_timing},
                    {"matchers": ['severity="warning"'], "receiver": WARNING_SLACK},
                ],
            },
            "inhibit_rules": [
                # A service that is down or gone makes its other warnings noise.
                {
                    "source_matchers": [*critical, 'family="availability"'],
                    "target_matchers": ['severity="warning"'],
                    "equal": ["service"],
                },
                # A critical alert covers the warnings of the same family on the same service,
                # e.g. HighErrorRate covers HighLatencyP95.
                {
                    "source_matchers": critical,
                    "target_matchers": ['severity="warning"'],
                    "equal": ["family", "service"],
                },
            ],
            "receivers": [
                {"name": CRITICAL_EMAIL, "email_configs": [{"to": email.to, "send_resolved": True}]},
                slack_receiver(CRITICAL_SLACK, slack.critical_channel or slack.channel),
                slack_receiver(WARNING_SLACK, slack.channel),
            ],
        }
    )


def render_grafana_datasources(prometheus_url: str, *, scrape_interval: str = "15s") -> str:
    """Grafana datasource provisioning with the fixed uid the dashboards reference."""
    if not re.match(r"^https?://[^\s/]+", prometheus_url):
        raise ValueError(f"prometheus_url {prometheus_url!r}: expected an http(s):// URL")
    return _dump(
        {
            "apiVersion": 1,
            # Grafana >= 11.1 deletes provisioned datasources that disappear from this file.
            "prune": True,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": PROMETHEUS_DATASOURCE_UID,
                    "access": "proxy",
                    "url": prometheus_url,
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"httpMethod": "POST", "timeInterval": scrape_interval},
                }
            ],
        }
    )


def render_grafana_dashboard_provider(path: str) -> str:
    """Grafana dashboard provider reading the JSON files of load_dashboards() from `path`."""
    _require_absolute("path", path)
    return _dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "platform",
                    "orgId": 1,
                    "folder": "Platform",
                    "type": "file",
                    # The files are the source of truth: UI edits would be lost on the next deploy.
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 60,
                    "options": {"path": path},
                }
            ],
        }
    )


def load_dashboards() -> dict[str, str]:
    """The checked-in dashboards, file name -> JSON text, for upload next to the provider."""
    directory = resources.files(__package__) / "dashboards"
    dashboards = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            text = entry.read_text(encoding="utf-8")
            json.loads(text)  # a broken file fails here, not in Grafana's log
            dashboards[entry.name] = text
    return dashboards
