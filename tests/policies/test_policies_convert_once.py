"""Each resource's properties are converted once per `infra check` and shared by every policy, without a
protobuf round trip; the reports are byte-for-byte those of the SDK's own conversion per policy."""

from __future__ import annotations

import contextlib

import pytest
from google.protobuf import json_format
from pulumi.runtime import proto
from pulumi_policy import policy as sdk_policy
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

import platform_infra.infra.check
from platform_infra.infra.analyze_once import converted_once, struct_form
from platform_infra.infra.check import evaluate, render
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project, run_program
from platform_infra.policies.policy_config import default_path
from tests.policies.conftest import EXAMPLE

PROJECTS = [(REPO_ROOT, "dev"), (REPO_ROOT, "staging"), (REPO_ROOT, "prod"), (EXAMPLE, "prod")]


class PerPolicy:
    """The SDK's own path: Structs filled, and converted by the servicer again for every policy."""

    def props(self, struct):
        return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))

    def give(self, struct, plain):
        struct.update(plain)


@contextlib.contextmanager
def converted_per_policy():
    yield PerPolicy()


@pytest.mark.parametrize("project,stack", PROJECTS, ids=lambda v: getattr(v, "name", v))
def test_reports_are_identical_to_converting_per_policy(project, stack, monkeypatch):
    run = run_program(load_project(project, stack), stack)
    config = default_path(stack) if project == REPO_ROOT else None
    shared = evaluate(run, config)
    monkeypatch.setattr(platform_infra.infra.check, "converted_once", converted_per_policy)
    separate = evaluate(run, config)
    for output_format in ("json", "sarif", "text"):
        assert render(shared, output_format) == render(separate, output_format)
    assert shared.violations or shared.waived


def test_policies_share_one_conversion_and_the_sdk_is_restored():
    original = sdk_policy.deserialize_properties
    request = proto.AnalyzeRequest(type="t")
    with converted_once() as conversions:
        conversions.give(request.properties, struct_form({"a": [1, 2], "b": {"c": True, "d": None}}))
        first = conversions.props(request.properties)
        # What the servicer does for each policy (pulumi_policy/policy.py, Analyze):
        again = sdk_policy.unknown_checking_proxy(
            sdk_policy.deserialize_properties(sdk_policy.json_format.MessageToDict(request.properties)))
        assert again is first and list(first["a"]) == [1.0, 2.0]
    assert sdk_policy.deserialize_properties is original
    assert sdk_policy.json_format is json_format


def test_struct_form_is_what_a_struct_gives_back():
    value = {"n": 5, "f": 0.5, "t": True, "none": None, "s": "x", "l": [1, {"m": 2}], "e": {}}
    struct = proto.AnalyzeRequest().properties
    struct.update(value)
    assert struct_form(value) == json_format.MessageToDict(struct)
    assert type(struct_form(value)["n"]) is float and struct_form(value)["t"] is True
