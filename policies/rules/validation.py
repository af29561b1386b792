"""Checks that need the real tools (nginx -t, haproxy -c, promtool, amtool) or files outside the program.

They are listed so docs and reports show them, with the reason they are not policies: CI runs them.
"""

from __future__ import annotations

from platform_infra.policies.registry import not_enforceable

CI = "Needs the {tool} binary on the rendered file, which a policy cannot run; a CI job does ({command})."

not_enforceable(
    "VAL-001",
    "nginx-t",
    "nginx -t passes",
    domain="validation",
    severity="high",
    checklist=["infrastructure.load-balancer"],
    sources=["nginx 1.22.1 (bookworm)"],
    reason=CI.format(tool="nginx", command="nginx -t -p <dir> -c <conf>"),
    remediation="Render nginx.conf in CI and run `nginx -t` with test certificates.",
)
not_enforceable(
    "VAL-002",
    "haproxy-c",
    "haproxy -c passes",
    domain="validation",
    severity="high",
    checklist=["infrastructure.load-balancer"],
    sources=["haproxy 2.6.12 (bookworm)"],
    reason=CI.format(tool="haproxy", command="haproxy -c -f <cfg>"),
    remediation="Run `haproxy -c -f haproxy.cfg` in CI when HAProxy is the load balancer.",
)
not_enforceable(
    "VAL-003",
    "promtool",
    "promtool checks pass",
    domain="validation",
    severity="high",
    checklist=["monitoring.alert-rules"],
    sources=["prometheus 2.42.0 promtool"],
    reason=CI.format(tool="promtool", command="check config, check rules, test rules"),
    remediation="Run `promtool check config`, `check rules` and `test rules` in CI.",
)
not_enforceable(
    "VAL-004",
    "amtool",
    "amtool check-config passes",
    domain="validation",
    severity="high",
    checklist=["monitoring.alertmanager"],
    sources=["alertmanager 0.25.0 amtool"],
    reason=CI.format(tool="amtool", command="amtool check-config alertmanager.yml"),
    remediation="Run `amtool check-config alertmanager.yml` in CI.",
)
not_enforceable(
    "VAL-005",
    "grafana-provisioning-schema",
    "Grafana provisioning valid",
    domain="validation",
    severity="low",
    checklist=["monitoring.dashboards"],
    sources=["(no Debian package)"],
    reason="Grafana publishes no provisioning schema or offline validator; the provisioning files are "
    "checked by the monitoring component's unit tests.",
    remediation="Unit-test the rendered datasource and dashboard provisioning files.",
)
not_enforceable(
    "VAL-006",
    "traefik-config-schema",
    "Traefik config valid",
    domain="validation",
    severity="low",
    checklist=["infrastructure.load-balancer"],
    sources=["(no Debian package)"],
    reason="Traefik has no offline config validator packaged here; only a schema or unit test can "
    "check it, in CI.",
    remediation="Validate Traefik static/dynamic config against its JSON schema in CI.",
)
