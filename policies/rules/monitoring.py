"""Monitoring rules: Grafana and Prometheus access, and the uploaded prometheus.yml, rule files and
alertmanager.yml (PyYAML) against the checklist's scrape targets, alerts and notification routing."""

from __future__ import annotations

import configparser
import re
from functools import lru_cache
from typing import Any

import yaml

from platform_infra.policies.props import (
    SERVICE_CONFIG,
    WORKLOADS,
    Workload,
    decode_base64,
    get,
    items,
    truthy,
)
from platform_infra.policies.registry import ADVISORY, MANDATORY, resource_rule, stack_rule
from platform_infra.policies.scope import kind_is

GRAFANA_DEFAULT_SECRET_KEY = "SW2YcwTIb9zpOOhoPsMm"


def _grafana_setting(w: Workload, section: str, key: str) -> tuple[str | None, bool]:
    """(value, from_file) of a Grafana setting: env GF_<SECTION>_<KEY>, its __FILE form, or grafana.ini."""
    env_key = f"GF_{section}_{key}".upper().replace(".", "_")
    env = w.env
    if env.get(env_key + "__FILE"):
        return None, True
    if env_key in env:
        return env[env_key], False
    for path, text in w.uploads.items():
        if path.endswith(".ini"):
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read_string(text)
            except configparser.Error:
                continue
            if parser.has_option(section, key):
                return parser.get(section, key), False
    return None, False


@resource_rule(
    "MON-GRAF-001",
    "grafana-hardening",
    "Grafana hardened",
    types=WORKLOADS,
    scope=kind_is("grafana"),
    severity="high",
    prod=MANDATORY,
    checklist=["security.grafana-admin-password"],
    sources=["grafana conf/defaults.ini"],
    options={"requireCookieSecure": {"type": "boolean", "default": True}},
    remediation="Set GF_SECURITY_ADMIN_PASSWORD__FILE and GF_SECURITY_SECRET_KEY__FILE from secrets, "
    "GF_USERS_ALLOW_SIGN_UP=false, GF_AUTH_ANONYMOUS_ENABLED=false, "
    "GF_SECURITY_COOKIE_SECURE=true.",
)
def grafana_hardening(w: Workload, report, options) -> None:
    """Grafana's admin password and secret key are not the defaults, sign-up and anonymous admin access are
    off, and cookies are secure behind TLS."""
    password, password_file = _grafana_setting(w, "security", "admin_password")
    if not password_file and (password is None or password.strip() in ("", "admin")):
        report("admin password is the default (admin)")
    secret_key, key_file = _grafana_setting(w, "security", "secret_key")
    if not key_file and (secret_key is None or secret_key.strip() in ("", GRAFANA_DEFAULT_SECRET_KEY)):
        report("secret_key is the built-in default")
    anonymous, _ = _grafana_setting(w, "auth.anonymous", "enabled")
    role, _ = _grafana_setting(w, "auth.anonymous", "org_role")
    if truthy(anonymous or "") and (role or "Viewer").strip().lower() != "viewer":
        report("anonymous access is enabled with a role above Viewer")
    sign_up, _ = _grafana_setting(w, "users", "allow_sign_up")
    if truthy(sign_up or ""):
        report("users can sign up")
    cookie_secure, _ = _grafana_setting(w, "security", "cookie_secure")
    if options["requireCookieSecure"] and not truthy(cookie_secure or ""):
        report("cookie_secure is not true")


@resource_rule(
    "MON-PROM-001",
    "prometheus-access",
    "Prometheus and Alertmanager not exposed",
    types=WORKLOADS,
    scope=kind_is("prometheus", "alertmanager"),
    severity="high",
    prod=MANDATORY,
    checklist=["infrastructure.network-policies"],
    sources=["Prometheus HTTPS and authentication docs"],
    remediation="Publish no port (reach them through Grafana or the LB with auth), or start them with "
    "--web.config.file (basic auth/TLS); never --web.enable-admin-api.",
)
def prometheus_access(w: Workload, report, options) -> None:
    """Prometheus and Alertmanager (unauthenticated by default) are unpublished or protected by a web config,
    and Prometheus' admin API stays off."""
    command = " ".join(w.command)
    if "--web.enable-admin-api" in command:
        report("--web.enable-admin-api is set")
    if w.ports and "--web.config.file" not in command:
        report("publishes ports without --web.config.file (no authentication)")
    if w.ports and "--web.enable-lifecycle" in command:
        report("--web.enable-lifecycle on a published port")


GRAFANA_CLI_ANONYMOUS = re.compile(r"cfg:(?:default\.)?auth\.anonymous\.enabled=['\"]?([^'\"\s]*)")


@resource_rule(
    "MON-GRAF-002",
    "grafana-no-anonymous",
    "Grafana has no anonymous access",
    reads_files=True,
    types=WORKLOADS,
    scope=kind_is("grafana"),
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["security.grafana-admin-password"],
    sources=["grafana conf/defaults.ini [auth.anonymous]", "Grafana docs: configure anonymous access"],
    remediation="Set GF_AUTH_ANONYMOUS_ENABLED=false (or leave [auth.anonymous] enabled unset) and give every "
    "viewer an account.",
)
def grafana_no_anonymous(w: Workload, report, options) -> None:
    """Grafana shows nothing without a login, not even as Viewer: anonymous access is off in its env
    (GF_AUTH_ANONYMOUS_ENABLED), its uploaded grafana.ini and its command line (`cfg:auth.anonymous.enabled`)."""
    if "GF_AUTH_ANONYMOUS_ENABLED__FILE" in w.env:
        report("GF_AUTH_ANONYMOUS_ENABLED__FILE: anonymous access is read from a file the pack cannot see")
    enabled, _ = _grafana_setting(w, "auth.anonymous", "enabled")
    if truthy(enabled or ""):
        report(f"anonymous access is enabled (auth.anonymous enabled={enabled})")
    for value in GRAFANA_CLI_ANONYMOUS.findall(" ".join(w.command)):
        if truthy(value):
            report(f"anonymous access is enabled on the command line (cfg:auth.anonymous.enabled={value})")


PROMETHEUS_ADMIN_FLAG = re.compile(r"^--web\.enable-(lifecycle|admin-api)(?:=(.*))?$")


@resource_rule(
    "MON-PROM-002",
    "prometheus-admin-endpoints",
    "Prometheus' lifecycle and admin APIs off",
    types=WORKLOADS,
    scope=kind_is("prometheus"),
    severity="high",
    prod=MANDATORY,
    label_waivable=False,
    checklist=["infrastructure.network-policies"],
    sources=["Prometheus docs: management API (/-/quit, /-/reload)", "Prometheus docs: TSDB admin APIs"],
    remediation="Drop --web.enable-lifecycle and --web.enable-admin-api; restart Prometheus to reload its "
    "configuration (a changed config file replaces the container).",
)
def prometheus_admin_endpoints(w: Workload, report, options) -> None:
    """Prometheus does not serve its lifecycle API (`/-/quit`, `/-/reload`) nor its TSDB admin API (delete
    series, snapshots), which answer anyone who reaches its port, published or not: neither flag is on its
    command line, in exec or shell form."""
    for part in w.command:
        for token in part.split():
            match = PROMETHEUS_ADMIN_FLAG.match(token.strip("'\""))
            if match and (match.group(2) is None or truthy(match.group(2))):
                report(f"--web.enable-{match.group(1)} is set: anyone reaching Prometheus may use it")


def _config_texts(stack, kind: str, suffixes: tuple[str, ...]) -> list[tuple[Workload | None, str, str]]:
    """(owner, path, text) of every uploaded file or docker config for workloads of `kind`."""
    found = []
    for w in stack.file_carriers:
        if w.kind == kind:
            found.extend((w, path, text) for path, text in w.uploads.items() if path.endswith(suffixes))
    for config in stack.of_type(SERVICE_CONFIG):
        name = str(get(config.props, "name", default=config.name))
        if kind in name and name.endswith(suffixes):
            found.append((None, name, decode_base64(str(get(config.props, "data", default=""))) or ""))
    return found


# libyaml's loader when present; each distinct file is parsed once per process (stack rules share them).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=256)
def _yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError:
        return None


def _prometheus_configs(stack) -> list[dict]:
    docs = [_yaml(text) for _, _, text in _config_texts(stack, "prometheus", (".yml", ".yaml"))]
    return [d for d in docs if isinstance(d, dict) and "scrape_configs" in d]


def _identifiers(w: Workload) -> set[str]:
    names = {w.name, w.resource_name, w.labels.get("platform.service", "")}
    for network in items(get(w.props, "networksAdvanced")):
        names.update(str(a) for a in items(get(network, "aliases")))
    return {n for n in names if n}


@stack_rule(
    "MON-001",
    "scrape-coverage",
    "Every service scraped",
    types=[*WORKLOADS, SERVICE_CONFIG],
    severity="medium",
    prod=ADVISORY,
    checklist=["monitoring.scrape-targets"],
    sources=["Prometheus docs: scrape_config", "Spring Boot actuator docs: Prometheus endpoint"],
    options={"metricsPath": {"type": "string", "default": "/actuator/prometheus"}},
    remediation="Add a scrape job per application service (metrics_path /actuator/prometheus) and per "
    "exporter to the uploaded prometheus.yml.",
)
def scrape_coverage(stack, report, options) -> None:
    """prometheus.yml scrapes every application service on /actuator/prometheus and every exporter in use."""
    targets = [w for w in stack.workloads if w.role == "app" or w.kind == "exporter"]
    if not targets:
        return
    configs = _prometheus_configs(stack)
    if not configs:
        report("no Prometheus with an uploaded prometheus.yml: no service is scraped")
        return
    jobs = [job for config in configs for job in config.get("scrape_configs") or [] if isinstance(job, dict)]
    discovery = any(key in job for job in jobs for key in ("docker_sd_configs", "dockerswarm_sd_configs"))
    for w in targets:
        ids = _identifiers(w)
        matching = []
        for job in jobs:
            hosts = {
                str(t).rsplit(":", 1)[0].removeprefix("tasks.")
                for sc in job.get("static_configs") or []
                for t in (sc.get("targets") or [])
            }
            if job.get("job_name") in ids or hosts & ids:
                matching.append(job)
        if not matching and not (discovery and any("prometheus" in key for key in w.labels)):
            report(f"{w.role} {w.name} has no scrape target", w.urn)
        elif (
            w.role == "app"
            and matching
            and all(job.get("metrics_path", "/metrics") != options["metricsPath"] for job in matching)
        ):
            report(f"app {w.name} is scraped, but not on {options['metricsPath']}", w.urn)


REQUIRED_ALERTS = {
    "service down": r"\bup\b[^\n]*==\s*0|absent\s*\(\s*up",
    "error rate": r"http_server_requests_seconds_count[^\n]*5\.\.|SERVER_ERROR",
    "database connection failure": r"pg_up|hikaricp_connections_timeout",
    "kafka consumer lag": r"kafka_consumergroup_lag|kminion_kafka_consumer_group",
    "disk space": r"node_filesystem_avail_bytes|container_fs_",
    "job failure rate": r"job.*(fail|status)|spring_batch_job",
    "p95 response time": r"histogram_quantile\s*\(\s*0\.95",
    "memory": r"node_memory_MemAvailable|container_memory|jvm_memory_used",
    "cpu": r"node_cpu_seconds_total|container_cpu|process_cpu_usage|system_cpu_usage",
    "unusual login activity": r"login|auth\w*_(attempt|fail)",
}


@stack_rule(
    "MON-002",
    "baseline-alerts",
    "Checklist alerts defined",
    types=[*WORKLOADS, SERVICE_CONFIG],
    severity="medium",
    prod=ADVISORY,
    checklist=[
        "monitoring.alert-rules",
        "monitoring.alertmanager",
        "success.alerts-functioning",
        "alerts.service-down",
        "alerts.error-rate",
        "alerts.database-connection",
        "alerts.kafka-lag",
        "alerts.disk-space",
        "alerts.job-failure-rate",
        "alerts.latency",
        "alerts.memory",
        "alerts.cpu",
        "alerts.unusual-logins",
    ],
    sources=["samber/awesome-prometheus-alerts", "Prometheus docs: alerting rules"],
    options={
        "requiredAlerts": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "default": REQUIRED_ALERTS,
            "description": "alert family -> regex one rule expr must match",
        }
    },
    remediation="Upload Prometheus rule files with the checklist's alerts, reference them in "
    "rule_files, point `alerting` at Alertmanager, and unit-test them with promtool.",
)
def baseline_alerts(stack, report, options) -> None:
    """Prometheus loads the checklist's critical and warning alerts and sends them to an Alertmanager."""
    if not stack.workloads:
        return
    configs = _prometheus_configs(stack)
    if not configs:
        report("no Prometheus with an uploaded prometheus.yml: no alert is evaluated")
        return
    if not any(get(c, "alerting", "alertmanagers") for c in configs):
        report("prometheus.yml has no alerting.alertmanagers")
    if not any(w.kind == "alertmanager" for w in stack.workloads):
        report("no Alertmanager in the stack")
    expressions = []
    for _, _, text in _config_texts(stack, "prometheus", (".yml", ".yaml", ".rules")):
        doc = _yaml(text)
        for group in (doc.get("groups") or []) if isinstance(doc, dict) else []:
            expressions.extend(
                str(rule.get("expr", "")) for rule in group.get("rules") or [] if "alert" in rule
            )
    for family, pattern in sorted(options["requiredAlerts"].items()):
        if not any(re.search(pattern, expr) for expr in expressions):
            report(f"no alert rule for {family}")


def _route_receivers(route: Any) -> list[str]:
    if not isinstance(route, dict):
        return []
    found = [str(route["receiver"])] if route.get("receiver") else []
    for child in route.get("routes") or []:
        found.extend(_route_receivers(child))
    return found


@resource_rule(
    "MON-003",
    "alert-routing",
    "Alerts routed to a real receiver",
    reads_files=True,
    types=WORKLOADS,
    scope=kind_is("alertmanager"),
    severity="high",
    prod=MANDATORY,
    checklist=["monitoring.alertmanager"],
    sources=["Alertmanager docs: configuration (route, receiver)", "amtool check-config"],
    remediation="Upload an alertmanager.yml whose route tree reaches receivers with email/Slack/"
    "PagerDuty/webhook configs.",
)
def alert_routing(w: Workload, report, options) -> None:
    """Alertmanager's route tree delivers alerts to at least one receiver with a notification config, and
    every receiver it names exists."""
    configs = [
        text for path, text in w.uploads.items() if path.endswith(("alertmanager.yml", "alertmanager.yaml"))
    ]
    if not configs:
        if w.holds_its_files:
            report("no alertmanager.yml uploaded: notifications cannot be verified")
        return
    doc = _yaml(configs[0])
    if not isinstance(doc, dict):
        report("alertmanager.yml is not a YAML mapping")
        return
    receivers = {str(r.get("name")): r for r in doc.get("receivers") or [] if isinstance(r, dict)}
    used = _route_receivers(doc.get("route"))
    if not used:
        report("alertmanager.yml has no route receiver")
    for name in used:
        if name not in receivers:
            report(f"route names an undefined receiver {name}")
    delivering = [
        name
        for name in used
        if any(key.endswith("_configs") and value for key, value in receivers.get(name, {}).items())
    ]
    if used and not delivering:
        report("every routed receiver is a blackhole (no *_configs)")


@resource_rule(
    "MON-004",
    "retention-bounds",
    "Bounded metrics retention",
    types=WORKLOADS,
    scope=kind_is("prometheus"),
    severity="low",
    prod=ADVISORY,
    checklist=["infrastructure.volumes"],
    sources=["Prometheus docs: storage (retention.time, retention.size)"],
    remediation="Start Prometheus with --storage.tsdb.retention.time=15d and/or .size=<budget>.",
)
def retention_bounds(w: Workload, report, options) -> None:
    """Prometheus bounds its TSDB by time or size, so the data volume has a known budget."""
    if not any("--storage.tsdb.retention" in part for part in w.command):
        report("no --storage.tsdb.retention.time or .size")
