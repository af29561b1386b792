"""Each resource's properties converted once per `infra check`, however many policies read them.

The SDK's analyzer servicer (pulumi_policy/policy.py, `Analyze` and `AnalyzeStack`) turns a resource's
protobuf Struct into policy props for every policy it runs: `json_format.MessageToDict`, then
`deserialize_properties`, then `unknown_checking_proxy`. Those three steps are most of what policies cost
offline (a resource is read by a dozen policies, a stack policy reads every resource). Inside
`converted_once()` the servicer runs unchanged, but each step returns the object it returned before for the
same input, so every policy gets the same read-only props (and the rules can share what they derive from
them, see policies.props.workload). The cache holds its inputs, so an id is never reused while it lives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from google.protobuf import json_format
from pulumi_policy import policy as sdk_policy


def _once(convert: Callable[..., Any]) -> Callable[..., Any]:
    cache: dict[tuple, tuple[Any, Any]] = {}

    def converted(value: Any, *args: Any) -> Any:
        key = (id(value), args)
        hit = cache.get(key)
        if hit is None or hit[0] is not value:
            hit = cache[key] = (value, convert(value, *args))
        return hit[1]

    return converted


@contextmanager
def converted_once() -> Iterator[Callable[[Any], Any]]:
    """Within the block the servicer converts each Struct once; yields that conversion (Struct -> props)."""
    saved = sdk_policy.json_format, sdk_policy.deserialize_properties, sdk_policy.unknown_checking_proxy
    to_dict = _once(json_format.MessageToDict)
    deserialize = _once(saved[1])
    proxy = _once(saved[2])
    sdk_policy.json_format = SimpleNamespace(MessageToDict=to_dict)
    sdk_policy.deserialize_properties = deserialize
    sdk_policy.unknown_checking_proxy = proxy
    try:
        yield lambda struct: proxy(deserialize(to_dict(struct)))
    finally:
        sdk_policy.json_format, sdk_policy.deserialize_properties, sdk_policy.unknown_checking_proxy = saved
