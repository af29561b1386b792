"""The checklist catalog (infra/checklist.yaml): every name it uses exists, and rules agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from platform_infra.infra import catalog
from platform_infra.policies.registry import all_rules

REPO_ROOT = Path(__file__).resolve().parent.parent


def component_types() -> set[str]:
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "components").rglob("*.py"))
    return set(re.findall(r'"(platform:index:\w+)"', sources))


def test_catalog_loads_with_unique_ids_in_every_section():
    loaded = catalog.load()
    names = [section.name for section in loaded.sections]
    assert len(names) == len(set(names))
    for required in ("Security", "Configuration", "Infrastructure", "Monitoring & Observability", "Testing",
                     "Documentation", "Immediate (First Hour)", "First Day", "First Week", "Ongoing",
                     "Rollback Plan", "Alerts", "Backup Strategy", "Success Criteria"):
        assert required in names
    assert len(loaded.by_id()) == len(loaded.lines())


def test_every_rule_component_test_and_runbook_step_named_exists():
    rules = {rule.id for rule in all_rules()}
    components = component_types()
    anchors = catalog.runbook_anchors()
    for _, item in catalog.load().lines():
        for rule in item.rules:
            assert rule in rules, f"{item.id}: no rule {rule}"
        for component in item.components:
            assert catalog.component_type(component) in components, f"{item.id}: no component {component}"
        for test in item.tests:
            assert catalog.named_test_exists(test), f"{item.id}: no test {test}"
        if item.runbook:
            assert item.runbook in anchors, f"{item.id}: no runbook entry {item.runbook}"


def test_rules_name_only_catalog_ids_and_the_catalog_lists_them_back():
    items = catalog.load().by_id()
    for rule in all_rules():
        assert rule.checklist, rule.id
        for item_id in rule.checklist:
            assert item_id in items, f"{rule.id} names checklist id {item_id}, which the catalog lacks"
            assert rule.id in items[item_id].rules, f"{item_id} does not list {rule.id}, which serves it"
    by_rule = {rule.id: rule for rule in all_rules()}
    for item_id, item in items.items():
        for rule_id in item.rules:
            assert item_id in by_rule[rule_id].checklist, f"{rule_id} does not name {item_id}"


def test_the_existence_checks_fail_on_names_that_do_not_exist():
    assert catalog.named_test_exists("tests/test_catalog.py::test_catalog_loads_with_unique_ids_in_every_section")
    assert not catalog.named_test_exists("tests/test_catalog.py::test_no_such_test")
    assert not catalog.named_test_exists("tests/no_such_file.py::test_x")
    assert catalog.component_type("NoSuchComponent") not in component_types()
    assert "docs/RUNBOOK.md#no-such-step" not in catalog.runbook_anchors()


@pytest.mark.parametrize(
    "text, message",
    [
        ("sections: [{name: S, phase: P, items: [{id: s.a, text: A}]}]\nsign_off: [QA]", "no coverage"),
        (
            ("sections: [{name: S, phase: P, items: [{id: s.a, text: A, runbook: 'docs/RUNBOOK.md#x'},"
            " {id: s.a, text: B, runbook: 'docs/RUNBOOK.md#x'}]}]\nsign_off: [QA]"),
            "appears twice",
        ),
        ("sections: [{name: S, phase: P, items: [{id: s.a, text: A, rules: [ctr-1]}]}]\nsign_off: [QA]",
         "rules"),
        ("sections: [{name: S, phase: P, items: [{id: s.a, text: A, owner: me}]}]\nsign_off: [QA]", "owner"),
    ],
)
def test_bad_catalog_is_refused_naming_the_problem(text, message):
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse(text)


def test_rule_sources_name_upstream_documents_not_local_files():
    for rule in all_rules():
        for source in rule.sources:
            assert not re.search(r"\.md\b|synthesis|\.\./", source), f"{rule.id}: {source!r}"


def test_record_kinds_named_are_written_by_a_command_and_need_a_freshness():
    from platform_infra.infra.checklist import RECORD_COMMANDS
    from platform_infra.infra.daytwo import evidence

    assert set(RECORD_COMMANDS) == set(evidence.KINDS)
    for _, item in catalog.load().lines():
        assert set(item.records) <= set(evidence.KINDS), item.id
    with pytest.raises(catalog.CatalogError, match="give it a freshness"):
        catalog.parse("sections: [{name: S, phase: P, items: [{id: s.a, text: A, records: [drill.backup], "
                      "runbook: 'docs/RUNBOOK.md#x'}]}]\nsign_off: [QA]")
    with pytest.raises(catalog.CatalogError, match="name the record kinds"):
        catalog.parse("sections: [{name: S, phase: P, items: [{id: s.a, text: A, stack: staging, freshness: 1d, "
                      "runbook: 'docs/RUNBOOK.md#x'}]}]\nsign_off: [QA]")

