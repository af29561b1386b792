"""tests/policies/mutation.py on a tiny module: a mutant a test catches is recorded killed in the cosmic-ray
session, an equivalent one survived, and the module on disk is never edited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome as Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CALC = "def clamp(value):\n    if value > 100:\n        return 100\n    return value\n"
TEST = "from tiny.calc import clamp\n\n\ndef test_clamp():\n    assert clamp(150) == 100 and clamp(5) == 5 and clamp(100) == 100\n"
# Two of cosmic-ray's mutants of `value > 100`: `<` breaks clamp(150); `>=` is equivalent (clamp(100) is 100
# either way). Every other operator is filtered out of the session, to keep this quick.
KILLABLE, EQUIVALENT = "core/ReplaceComparisonOperator_Gt_Lt", "core/ReplaceComparisonOperator_Gt_GtE"
CONFIG = f"""[cosmic-ray]
module-path = "calc.py"
timeout = 60.0
excluded-modules = []
test-command = "python -m pytest -q test_calc.py"

[cosmic-ray.distributor]
name = "local"

[cosmic-ray.filters.operators-filter]
exclude-operators = ["(?!{KILLABLE}$|{EQUIVALENT}$)"]
"""


def test_a_killable_mutant_is_killed_and_an_equivalent_one_survives(tmp_path):
    package = tmp_path / "tiny"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "calc.py").write_text(CALC)
    (package / "test_calc.py").write_text(TEST)
    (package / "cr.toml").write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, check=False, cwd=package, env=env, capture_output=True, text=True, timeout=120)

    run(str(BIN / "cosmic-ray"), "init", "cr.toml", "session.sqlite").check_returncode()
    run(str(BIN / "cr-filter-operators"), "session.sqlite", "cr.toml").check_returncode()
    done = run(sys.executable, "-m", "tests.policies.mutation", "cr.toml", "session.sqlite",
               "--package", "tiny")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 mutants" in done.stdout, done.stdout

    with use_db(str(package / "session.sqlite"), WorkDB.Mode.open) as db:
        outcomes = {item.mutations[0].operator_name: result.test_outcome for item, result in db.completed_work_items
                    if item.mutations[0].operator_name in (KILLABLE, EQUIVALENT)}
        results = {item.mutations[0].operator_name: result for item, result in db.completed_work_items}
    assert outcomes == {KILLABLE: Outcome.KILLED, EQUIVALENT: Outcome.SURVIVED}
    assert "-    if value > 100:\n+    if value < 100:" in results[KILLABLE].diff
    assert "1 failed" in results[KILLABLE].output and "1 passed" in results[EQUIVALENT].output
    assert (package / "calc.py").read_text() == CALC  # served from memory, never written


REGISTRY = '''from dataclasses import dataclass
from typing import Any

RULES: dict = {}


@dataclass(frozen=True)
class Rule:
    id: str
    severity: int
    check: Any
    scope: Any = None


def rule(id, severity):
    def register(check):
        RULES[id] = Rule(id, severity, check)
        return check
    return register
'''
RULE = '''from tiny.policies.registry import rule

LIMIT = 100


@rule("R-1", severity=2)
def over_limit(value, report, options):
    if value > LIMIT:
        report(f"{value} is over the limit")
'''
RULE_TEST = '''from tiny.policies.registry import RULES
import tiny.policies.rules  # noqa: F401 registration


def findings(value):
    found = []
    RULES["R-1"].check(value, found.append, {})
    return found


def test_over_limit():
    assert findings(150) == ["150 is over the limit"] and findings(5) == []
    assert RULES["R-1"].severity == 2
'''


def test_a_rule_mutant_is_replayed_and_only_a_different_answer_runs_the_tests(tmp_path):
    """With a rule registry, each mutant first replays the rule's recorded calls (150 and 5). `>=` and a limit of
    99 or 101 answer both as the original does: survived, without a test run. `<` answers both differently: the
    test that made them runs and kills it. A severity of 1 or 3 changes the registration (the calls were made
    under the old one): every covering test runs, and one kills it."""
    package = tmp_path / "tiny"
    (package / "policies" / "rules").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "policies" / "__init__.py").write_text("")
    (package / "policies" / "registry.py").write_text(REGISTRY)
    (package / "policies" / "rules" / "__init__.py").write_text("from tiny.policies.rules import limit  # noqa: F401\n")
    (package / "policies" / "rules" / "limit.py").write_text(RULE)
    (package / "test_limit.py").write_text(RULE_TEST)
    (package / "cr.toml").write_text(CONFIG.replace('"calc.py"', '"policies/rules/limit.py"')
                                     .replace("test_calc.py", "test_limit.py")
                                     .replace(f"|{EQUIVALENT}$)", f"|{EQUIVALENT}$|core/NumberReplacer$)"))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, check=False, cwd=package, env=env, capture_output=True, text=True, timeout=120)

    run(str(BIN / "cosmic-ray"), "init", "cr.toml", "session.sqlite").check_returncode()
    run(str(BIN / "cr-filter-operators"), "session.sqlite", "cr.toml").check_returncode()
    done = run(sys.executable, "-m", "tests.policies.mutation", "cr.toml", "session.sqlite", "--package", "tiny")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "recorded 2 distinct calls of 1 rules" in done.stdout and "6 mutants" in done.stdout, done.stdout

    with use_db(str(package / "session.sqlite"), WorkDB.Mode.open) as db:
        results = {(item.mutations[0].operator_name, item.mutations[0].start_pos[0]): result.output
                   for item, result in db.completed_work_items if result.test_outcome == Outcome.SURVIVED}
        killed = {(item.mutations[0].operator_name, item.mutations[0].start_pos[0]): result.output
                  for item, result in db.completed_work_items if result.test_outcome == Outcome.KILLED}
    number, limit_line, severity_line = "core/NumberReplacer", 3, 6
    assert set(results) == {(EQUIVALENT, 8), (number, limit_line)}  # the two limits share an operator and line
    assert all("replay: 0 of 2 calls" in output and "passed" not in output for output in results.values())
    assert set(killed) == {(KILLABLE, 8), (number, severity_line)}
    assert "replay: 2 of 2 calls of 1 rules (R-1) answered differently" in killed[KILLABLE, 8]
    assert "the registration of R-1 changed" in killed[number, severity_line]
    assert all("1 failed" in output for output in killed.values())
