"""Runtime configuration rules: log levels fit the environment."""

from __future__ import annotations

import re

from platform_infra.policies.props import WORKLOADS, Workload
from platform_infra.policies.registry import MANDATORY, resource_rule

LEVEL_KEY = re.compile(r"(^|_)LOG(GING)?_?LEVEL(_|$)", re.IGNORECASE)
LEVEL_PROPERTY = re.compile(r"logging\.level\.[\w.]+=(\w+)", re.IGNORECASE)


@resource_rule(
    "CFG-001",
    "log-level",
    "Production log levels",
    types=WORKLOADS,
    severity="medium",
    prod=MANDATORY,
    checklist=["configuration.log-levels"],
    sources=["Spring Boot docs: logging levels", "OWASP Logging Cheat Sheet"],
    options={
        "allowedLevels": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["INFO", "WARN", "WARNING", "ERROR"],
        }
    },
    remediation="Set LOGGING_LEVEL_ROOT=INFO (or WARN) and drop DEBUG/TRACE overrides in prod.",
)
def log_level(w: Workload, report, options) -> None:
    """Services log at INFO or WARN in production: DEBUG and TRACE leak request data and flood the log
    store."""
    allowed = {level.upper() for level in options["allowedLevels"]}
    found = [(f"env {key}", value) for key, value in w.env.items() if LEVEL_KEY.search(key)]
    found += [
        (f"env {key}", m.group(1)) for key, value in w.env.items() for m in LEVEL_PROPERTY.finditer(value)
    ]
    found += [("command", m.group(1)) for part in w.command for m in LEVEL_PROPERTY.finditer(part)]
    for where, level in sorted(found):
        if level.strip().upper() not in allowed:
            report(f"{where} sets log level {level.strip().upper()}")
