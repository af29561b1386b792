"""Record what every rule answered during the unmutated tests, and replay those calls against a mutant.

A mutant of a rule module reaches a test only through the registered rules: what each rule's `check` reports,
returns and raises, and what its `scope` returns (`platform_infra.policies.pack` is the only caller of both).
So the unmutated tests run once with every rule's check and scope wrapped, keeping each distinct call
(rule, subject, options) with its answer and the tests that made it. A mutant is then replayed first: each
recorded call of the rules that execute its lines is made again, against the rule modules imported afresh with
the mutant. Where every answer is the same, no test can tell the mutant from the original; where one differs,
only the tests that made that call can, and they run for real.

The premise is that a rule's answer depends on its arguments alone (the rules keep no state between calls and
do not change their subject). Replaying every call once unmutated checks it (a rule answering differently runs
its tests instead), and a kill is always a test failing: the replay can only err towards "survived", so the
score it gives is a lower bound (`--no-replay` runs the covering tests instead, to compare on a sample).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ATTRIBUTES = ("check", "scope")  # the rule's functions the pack calls


@dataclass
class Call:
    rule: str
    attribute: str  # "check" or "scope"
    subject: Any
    options: Any  # a private copy (scopes take none)
    answer: tuple
    tests: int  # bit i set: the i-th test made this call


def _plain(value: Any) -> Any:
    """The dict or list behind a pulumi_policy proxy (the proxy hands it out under the key `__target`)."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return value["__target"]
    return value


def _answer(function: Callable, subject: Any, options: Any, report: Callable | None) -> tuple[tuple, Any, Any]:
    """What one call answers, as data: its findings, then what it returned or raised (a check reports
    through `report`; a scope only returns); and the value returned, and the exception raised."""
    found: list[str] = []

    def tee(*args: Any, **kwargs: Any) -> Any:
        found.append(repr((args, sorted(kwargs.items()))))
        return report(*args, **kwargs) if report is not None else None

    try:
        result = function(subject, tee, options) if options is not None else function(subject)
    except Exception as error:  # noqa: BLE001 recorded, then raised again when recording
        raised = (tuple(found), "raised", type(error).__name__, str(error), str(getattr(error, "message", "")))
        return raised, None, error
    return (tuple(found), "returned", repr(result)), result, None


class Recorder:
    """Wraps the registered rules' checks and scopes; `start_test(i)` before each test, `end_test()` after."""

    def __init__(self) -> None:
        self.calls: dict[tuple, Call] = {}
        self.test_bit = 0
        self.keys: dict[int, tuple[Any, Any]] = {}  # id(object) -> (object, its key), for the current test only
        self.options: dict[int, tuple[Any, Any, str]] = {}  # id(options) -> (options, a copy, its key), likewise

    def start_test(self, index: int) -> None:
        self.test_bit = 1 << index

    def end_test(self) -> None:
        self.keys.clear()  # the objects may die after the test, and their ids be reused
        self.options.clear()

    def install(self, rules: Mapping[str, Any]) -> None:
        for rule in rules.values():
            for attribute in ATTRIBUTES:
                function = getattr(rule, attribute)
                if function is not None:
                    object.__setattr__(rule, attribute, self._wrap(rule.id, attribute, function))  # frozen

    def _wrap(self, rule_id: str, attribute: str, function: Callable) -> Callable:
        def recorded(subject: Any, report: Callable | None = None, options: Any = None) -> Any:
            kept, options_key = self._options(options) if attribute == "check" else (None, "")
            answer, result, error = _answer(function, subject, options, report)
            key = (rule_id, attribute, self._key(subject), options_key)
            call = self.calls.get(key)
            if call is None:
                call = self.calls[key] = Call(rule_id, attribute, subject, kept, answer, 0)
            elif call.answer != answer:  # the premise fails: the same arguments answered differently
                call.answer = ("not reproducible",)
            call.tests |= self.test_bit
            if error is not None:
                raise error
            return result

        return functools.update_wrapper(recorded, function)  # name, docstring, reads_identity, __wrapped__

    def _options(self, options: Any) -> tuple[Any, str]:
        """A private copy of a check's options (taken before the call), and its JSON text."""
        found = self.options.get(id(options))
        if found is None:  # the original is kept too: its id is not reused while cached
            found = self.options[id(options)] = (options, copy.deepcopy(options),
                                                 json.dumps(options, sort_keys=True, default=repr))
        return found[1:]

    def _content(self, value: Any) -> str:
        """A JSON text of a props dict, once per object and test."""
        found = self.keys.get(id(value))
        if found is None:
            found = self.keys[id(value)] = (value, json.dumps(_plain(value), sort_keys=True, default=repr))
        return found[1]

    def _key(self, subject: Any) -> tuple:
        """What a rule can read of its subject: a workload, the stack, or a resource's validation args."""
        if hasattr(subject, "resources") and hasattr(subject, "workloads"):  # pack.Stack, shared by the stack rules
            found = self.keys.get(id(subject))
            if found is None:
                found = self.keys[id(subject)] = (subject, ("stack", *map(self._resource_key, subject.resources)))
            return found[1]
        if hasattr(subject, "resource_name") and hasattr(subject, "images"):  # props.Workload
            return ("workload", subject.type, subject.resource_name, subject.urn, self._content(subject.props),
                    repr(subject.images))
        if hasattr(subject, "resource_type") and hasattr(subject, "props"):  # ResourceValidationArgs
            provider = getattr(subject, "provider", None)
            return ("args", self._resource_key(subject),
                    self._content(provider.props) if provider is not None else None)
        self.keys[id(subject)] = (subject, "")  # anything else: kept alive, never taken for another
        return ("object", id(subject))

    def _resource_key(self, resource: Any) -> tuple:
        dependencies = getattr(resource, "property_dependencies", None) or {}
        return (resource.resource_type, resource.name, resource.urn, self._content(resource.props),
                tuple(d.urn for d in getattr(resource, "dependencies", None) or ()),
                tuple(sorted((k, tuple(d.urn for d in v)) for k, v in dependencies.items())))


def by_rule(calls: dict[tuple, Call]) -> dict[str, list[Call]]:
    grouped: dict[str, list[Call]] = {}
    for call in calls.values():
        grouped.setdefault(call.rule, []).append(call)
    return grouped


def replay(calls: list[Call], rules: Mapping[str, Any]) -> tuple[int, int, str]:
    """Make each call again with `rules` (the registry imported with the mutant): the tests (bits) that made a
    call answered differently, how many calls differed, and the first difference."""
    differing, count, first = 0, 0, ""
    for call in calls:
        rule = rules.get(call.rule)
        function = getattr(rule, call.attribute, None) if rule is not None else None
        if function is None:
            answer: tuple = ("no such rule or function",)
        else:
            options = copy.deepcopy(call.options) if call.attribute == "check" else None
            answer, _, _ = _answer(function, call.subject, options, None)
        if answer != call.answer:
            differing |= call.tests
            count += 1
            first = first or f"{call.rule} {call.attribute}: {call.answer!r} -> {answer!r}"
    return differing, count, first


def rule_modules(package: str) -> list[str]:
    prefix = f"{package}.policies.rules"
    return [name for name in sys.modules if name == prefix or name.startswith(prefix + ".")]
