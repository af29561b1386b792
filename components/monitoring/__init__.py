"""Pure rendering of the observability stack: Prometheus, alert rules and their promtool tests,
Alertmanager, blackbox exporter and Grafana provisioning. The Monitoring component deploys them.
"""

from .model import AlertThresholds, EmailReceiver, MonitoringConfig, Routing, SlackReceiver, duration_seconds
from .render import (
    BLACKBOX_MODULE,
    CRITICAL_EMAIL,
    CRITICAL_SLACK,
    PROMETHEUS_DATASOURCE_UID,
    WARNING_SLACK,
    load_dashboards,
    render_alert_rules,
    render_alertmanager_config,
    render_blackbox_config,
    render_grafana_dashboard_provider,
    render_grafana_datasources,
    render_prometheus_config,
    render_rule_tests,
)
from .runtime import alertmanager_args, grafana_environment, prometheus_args
from .targets import ScrapeTarget, exporter_targets

__all__ = [
    "BLACKBOX_MODULE",
    "CRITICAL_EMAIL",
    "CRITICAL_SLACK",
    "PROMETHEUS_DATASOURCE_UID",
    "WARNING_SLACK",
    "AlertThresholds",
    "EmailReceiver",
    "MonitoringConfig",
    "Routing",
    "ScrapeTarget",
    "SlackReceiver",
    "alertmanager_args",
    "duration_seconds",
    "exporter_targets",
    "grafana_environment",
    "load_dashboards",
    "prometheus_args",
    "render_alert_rules",
    "render_alertmanager_config",
    "render_blackbox_config",
    "render_grafana_dashboard_provider",
    "render_grafana_datasources",
    "render_prometheus_config",
    "render_rule_tests",
]
