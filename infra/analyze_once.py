"""Each resource's properties converted once per `infra check`, however many policies read them.

The SDK's analyzer servicer (pulumi_policy/policy.py, `Analyze` and `AnalyzeStack`) turns a resource's
protobuf Struct into policy props for every policy it runs: `json_format.MessageToDict`, then
`deserialize_properties`, then `unknown_checking_proxy`. Those three steps are most of what policies cost
offline (a resource is read by a dozen policies, a stack policy reads every resource). Inside
`converted_once()` the servicer runs unchanged, but each step returns the object it returned before for the
same input, so every policy gets the same read-only props (and the rules can share what they derive from
them, see platform_infra.policies.props.workload). The cache holds its inputs, so an id is never reused while it lives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from google.protobuf import json_format
from pulumi_policy import policy as sdk_policy


class _Once:
    """`convert`, remembered per input object (and arguments)."""

    def __init__(self, convert: Callable[..., Any]):
        self.convert = convert
        self.cache: dict[tuple, tuple[Any, Any]] = {}

    def __call__(self, value: Any, *args: Any) -> Any:
        key = (id(value), args)
        hit = self.cache.get(key)
        if hit is None or hit[0] is not value:
            hit = self.cache[key] = (value, self.convert(value, *args))
        return hit[1]

    def remember(self, value: Any, result: Any) -> None:
        self.cache[(id(value), ())] = (value, result)


class Conversions:
    """The servicer's three conversion steps, each done once per input."""

    def __init__(self) -> None:
        self.to_dict = _Once(json_format.MessageToDict)
        self.deserialize = _Once(sdk_policy.deserialize_properties)
        self.proxy = _Once(sdk_policy.unknown_checking_proxy)

    def props(self, struct: Any) -> Any:
        """The props every policy gets for this Struct."""
        return self.proxy(self.deserialize(self.to_dict(struct)))

    def give(self, struct: Any, plain: dict[str, Any]) -> None:
        """Let the servicer read `plain` (in Struct form: see `struct_form`) where it converts the (unfilled)
        `struct`: the registered values reach the policies without a protobuf round trip."""
        self.to_dict.remember(struct, plain)


def struct_form(value: Any, string: Callable[[str], Any] = str) -> Any:
    """A JSON value as a protobuf Struct gives it back (google/protobuf/json_format.py): numbers are doubles;
    `string` maps each string on the way."""
    if isinstance(value, str):
        return string(value)
    if isinstance(value, dict):
        return {key: struct_form(item, string) for key, item in value.items()}
    if isinstance(value, list):
        return [struct_form(item, string) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@contextmanager
def converted_once() -> Iterator[Conversions]:
    """Within the block the servicer converts each Struct once; yields the conversions."""
    saved = sdk_policy.json_format, sdk_policy.deserialize_properties, sdk_policy.unknown_checking_proxy
    conversions = Conversions()
    sdk_policy.json_format = SimpleNamespace(MessageToDict=conversions.to_dict)
    sdk_policy.deserialize_properties = conversions.deserialize
    sdk_policy.unknown_checking_proxy = conversions.proxy
    try:
        yield conversions
    finally:
        sdk_policy.json_format, sdk_policy.deserialize_properties, sdk_policy.unknown_checking_proxy = saved
