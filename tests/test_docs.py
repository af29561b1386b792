"""The operations docs stay true: every `infra` flag, settings key and rule id they name exists, and every
alert the monitoring defines has its runbook entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from platform_infra.infra import catalog
from platform_infra.infra.cli import build_parser
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.infra.settings import SECRET_KEYS, SETTINGS_KEY, Settings
from platform_infra.policies.registry import all_rules
from tests.helpers import files_of

REPO_ROOT = Path(__file__).resolve().parent.parent
# Every document a reader is pointed to, new ones included as they are added.
DOCS = ["README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md"))]
INFRA_COMMAND = re.compile(r"(?:^|`)\s*infra ([a-z]+)([^`\n]*)", re.MULTILINE)
SETTINGS_PATH = re.compile(r"platform:settings\.([a-z_][a-z0-9_.]*[a-z0-9_])")
CONFIG_SECRET = re.compile(r"platform:([a-z][A-Za-z]+)\b(?!:)")


def infra_options() -> dict[str, set[str]]:
    """Each command's flags, keyed `plan`, ..., and `backup verify` for a command's own subcommands."""

    def walk(parser, prefix: str) -> dict[str, set[str]]:
        found = {prefix: set(parser._option_string_actions)} if prefix else {}
        if parser._subparsers is not None:
            for name, sub in parser._subparsers._group_actions[0].choices.items():
                found |= walk(sub, f"{prefix} {name}".strip())
        return found

    return walk(build_parser(), "")


def settings_key_exists(path: str) -> bool:
    model: type[BaseModel] = Settings
    for part in path.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)
                  and issubclass(a, BaseModel)]
        model = nested[0] if nested else None
        if model is None:
            return part == path.split(".")[-1]
    return True


def unknown_references(text: str) -> list[str]:
    """Names in a document that the code does not have."""
    options = infra_options()
    rules = {rule.id for rule in all_rules()}
    prefixes = "|".join(sorted({rule_id.rsplit("-", 1)[0] for rule_id in rules}, key=len, reverse=True))
    found = []
    for command, rest in INFRA_COMMAND.findall(text):
        subcommand = rest.split()[0] if rest.split() else ""
        if f"{command} {subcommand}" in options:
            command, rest = f"{command} {subcommand}", rest.split(None, 1)[1] if " " in rest.strip() else ""
        if command not in options:
            found.append(f"infra {command}")
            continue
        found += [f"infra {command} {flag}" for flag in re.findall(r"--[a-z][\w-]*", rest)
                  if flag not in options[command]]
    # A quoted error message for a misspelt key names that key on purpose.
    text = "\n".join(line for line in text.splitlines() if "unknown key" not in line)
    found += [key for key in SETTINGS_PATH.findall(text) if not settings_key_exists(key)]
    found += [f"platform:{key}" for key in CONFIG_SECRET.findall(text) if key not in {*SECRET_KEYS, SETTINGS_KEY}]
    found += [rule for rule in re.findall(rf"\b(?:{prefixes})-\d{{3}}\b", text) if rule not in rules]
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_docs_name_only_existing_flags_settings_and_rules(doc):
    assert unknown_references((REPO_ROOT / doc).read_text()) == []


def test_the_doc_check_finds_what_does_not_exist():
    text = (
        "```sh\ninfra checklist --stack prod --colour\ninfra deploy --stack prod\n```\n"
        "Set `platform:settings.apps.worker.replicaz` and `platform:settings.workers`, "
        "`platform:jwtSecret` and `platform:jwtSecrett`; rules CTR-001 and CTR-999."
    )
    assert unknown_references(text) == [
        "infra checklist --colour", "infra deploy", "apps.worker.replicaz", "platform:jwtSecrett", "CTR-999",
    ]


def deployed_alerts(stack: str) -> dict[str, str]:
    run = run_program(load_project(REPO_ROOT, stack), stack)
    rules = yaml.safe_load(files_of(run.resources, "prometheus")["/etc/platform/rules/alerts.yml"]["content"])
    return {rule["alert"]: rule["annotations"]["runbook_url"] for group in rules["groups"]
            for rule in group["rules"]}


def test_every_alert_has_a_runbook_entry():
    alerts = deployed_alerts("prod")
    assert {"ServiceDown", "KafkaConsumerLagHigh", "UnusualLoginActivity"} <= set(alerts)
    anchors = catalog.runbook_anchors()
    runbook = (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    for alert, url in alerts.items():
        assert url == f"docs/RUNBOOK.md#{alert.lower()}", alert
        assert url in anchors, f"{alert} has no entry in docs/RUNBOOK.md"
        entry = runbook.split(f"### {alert}\n", 1)[1].split("\n#", 1)[0]
        assert "First checks" in entry or "Fix" in entry, f"{alert}: the entry says what to check and fix"
