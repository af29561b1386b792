"""Every enforced rule fails in at least two cases, and a rule that reads a setting through more than one carrier
(an environment value, a command line, an uploaded file) fails through at least two of them.

The cases are the rows of `test_policies_rules.CASES` (each one's carrier is what its mutation changes in the
secure stack), of its CONFIG_CASES (a weak policy config attestation) and, for the evidence gate's rules, the
tests its FAILING_ELSEWHERE names. The carriers a rule reads are
traced while it judges the secure stack.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
from collections import defaultdict
from functools import cached_property
from typing import Any

from platform_infra.infra.check import evaluate
from platform_infra.policies.props import FILE_OBJECTS, Workload
from platform_infra.policies.registry import enforced_rules
from tests.policies.conftest import as_run
from tests.policies.fixtures import DAEMON_ATTESTED, secure_stack
from tests.policies.test_policies_rules import CASES, CONFIG_CASES, FAILING_ELSEWHERE, Mutation

ENV, COMMAND, FILE = "environment", "command line", "uploaded file"
CARRIER_KEYS = {"envs": ENV, "env": ENV, "command": COMMAND, "entrypoints": COMMAND, "commands": COMMAND,
                "args": COMMAND, "healthcheck": COMMAND, "uploads": FILE, "data": FILE, "secrets": FILE}
"""Where a resource's inputs carry each: Container and Swarm containerSpec keys, a ServiceConfig's data."""
SETTINGS, POLICY_CONFIG = "resource settings", "policy config"
WORKLOAD_CARRIERS = {"env": ENV, "command": COMMAND, "healthcheck_tests": COMMAND, "uploads": FILE,
                     "uploaded_files": FILE}
"""The Workload properties through which rules read each carrier."""


def _changed(before: Any, after: Any) -> set[str]:
    """The carriers of the keys whose values differ; any other difference is a resource setting."""
    if before == after:
        return set()
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return {SETTINGS}
    found: set[str] = set()
    for key in before.keys() | after.keys():
        if before.get(key) != after.get(key):
            found |= {CARRIER_KEYS[key]} if key in CARRIER_KEYS else _changed(before.get(key), after.get(key))
    return found


def carriers_of(mutation: Mutation) -> set[str]:
    """What the case's mutation changes in the secure stack; nothing at all: it withdraws a policy config
    attestation (the case runs without one)."""
    before, after = secure_stack(), secure_stack()
    mutation(after)
    old, new = {r.name: r for r in before}, {r.name: r for r in after}
    found: set[str] = set()
    for name in old.keys() | new.keys():
        if name in old and name in new:
            found |= _changed(old[name].inputs, new[name].inputs)
        else:
            found.add(FILE if (old.get(name) or new[name]).type in FILE_OBJECTS else SETTINGS)
    return found or {POLICY_CONFIG}


def failing_cases() -> dict[str, list[set[str]]]:
    """Rule id -> the carriers of each of its failing cases."""
    cases: dict[str, list[set[str]]] = defaultdict(list)
    for rule_id, mutation, _ in CASES:
        cases[rule_id].append(carriers_of(mutation))
    for rule_id, _ in CONFIG_CASES:
        cases[rule_id].append({POLICY_CONFIG})
    for rule_id, tests in FAILING_ELSEWHERE.items():
        cases[rule_id] += [{"evidence store"}] * len(tests)
    return cases


def carriers_read(tmp_path) -> dict[str, set[str]]:
    """Rule id -> the carriers its check reads while judging the secure stack (traced per call)."""
    rules = {inspect.unwrap(r.check).__code__: r.id for r in enforced_rules() if r.check}  # the mutation
    # executor (tests/policies/replay.py) wraps every check
    read: dict[str, set[str]] = defaultdict(set)
    cached = {name: Workload.__dict__[name] for name in WORKLOAD_CARRIERS}
    getters = {}
    for name, attribute in cached.items():  # plain properties for the trace: a cached value is read silently
        function = attribute.func if isinstance(attribute, cached_property) else attribute.fget
        getters[function.__code__] = WORKLOAD_CARRIERS[name]
        setattr(Workload, name, property(function))
    active: list = []

    def trace(frame, event, _arg):
        if event == "call" and frame.f_code in rules:
            active.append(frame)
        elif event == "call" and active and frame.f_code in getters:
            read[rules[active[-1].f_code]].add(getters[frame.f_code])
        elif event == "return" and active and active[-1] is frame:
            active.pop()

    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps(DAEMON_ATTESTED))
    sys.setprofile(trace)
    threading.setprofile(trace)
    try:
        evaluate(as_run(secure_stack()), config)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        for name, attribute in cached.items():
            setattr(Workload, name, attribute)
    return read


def test_every_enforced_rule_has_two_failing_cases():
    cases = failing_cases()
    short = {r.id: len(cases.get(r.id, [])) for r in enforced_rules() if len(cases.get(r.id, [])) < 2}
    assert short == {}, f"rules with fewer than two failing cases: {short}"


def test_a_rule_reading_several_carriers_fails_through_two_of_them(tmp_path):
    cases, read = failing_cases(), carriers_read(tmp_path)
    assert read["SEC-005"] == {COMMAND} and read["MON-GRAF-002"] == {ENV, COMMAND, FILE}  # the trace sees reads
    one_carrier = {}
    for rule in enforced_rules():
        forms = [case & read[rule.id] for case in cases.get(rule.id, [])]
        two = any(x != y for i, a in enumerate(forms) for b in forms[i + 1:] for x in a for y in b)
        if len(read[rule.id]) >= 2 and not two:
            one_carrier[rule.id] = f"reads {sorted(read[rule.id])}, fails through {[sorted(f) for f in forms]}"
    assert one_carrier == {}, one_carrier
