"""Policy config files (`--policy-pack-config`): their JSON schema, and resolution as the engine does it.

Format (the engine's):
`{"all": "<level>", "<policy-name>": "<level>" | {"enforcementLevel": ..., <options>}}`.
The SDK neither validates config nor applies defaults (the CLI engine does), so `infra check` does both
here, with jsonschema against each rule's option schema, before handing the result to the SDK's Configure.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from platform_infra.policies import waivers
from platform_infra.policies.registry import ENVIRONMENTS, Rule, enforced_rules

CONFIG_DIR = Path(__file__).resolve().parent / "config"
LEVELS = ["advisory", "mandatory", "remediate", "disabled"]
LEVEL_SCHEMA = {"enum": LEVELS}


class PolicyConfigError(ValueError):
    pass


@cache
def _validator(policy_name: str) -> Any:
    # The schemas themselves, and each rule's defaults against them, are checked by the pack's tests.
    # Imported here: jsonschema takes longer to import than most configs take to check, and a config that
    # only sets levels has no options to validate.
    import jsonschema

    rule = next(r for r in enforced_rules() if r.policy_name == policy_name)
    return jsonschema.Draft7Validator(options_schema(rule))


def _first_error(policy_name: str, options: dict[str, Any]) -> Any:
    import jsonschema

    return jsonschema.exceptions.best_match(_validator(policy_name).iter_errors(options))


def options_schema(rule: Rule) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {**rule.options, "waivers": waivers.WAIVERS_SCHEMA},
    }


def file_schema() -> dict[str, Any]:
    """JSON schema of a whole policy config file for this pack."""
    properties: dict[str, Any] = {"all": LEVEL_SCHEMA}
    for rule in enforced_rules():
        entry = options_schema(rule)
        entry = {**entry, "properties": {"enforcementLevel": LEVEL_SCHEMA, **entry["properties"]}}
        properties[rule.policy_name] = {"oneOf": [LEVEL_SCHEMA, entry]}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def default_path(stack: str) -> Path | None:
    path = CONFIG_DIR / f"{stack}.json"
    return path if path.is_file() else None


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PolicyConfigError(f"{path}: cannot read policy config: {error}") from None
    if not isinstance(data, dict):
        raise PolicyConfigError(f"{path}: a policy config is a JSON object")
    return data


def resolve(raw: dict[str, Any], source: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """policy name -> (enforcement level, options with schema defaults applied), as the engine computes it."""
    rules = {rule.policy_name: rule for rule in enforced_rules()}
    levels = {name: rule.prod for name, rule in rules.items()}
    options: dict[str, dict[str, Any]] = {name: {} for name in rules}
    if "all" in raw:
        levels = dict.fromkeys(rules, _level(raw["all"], f"{source}: all"))
    for name, value in raw.items():
        if name == "all":
            continue
        if name not in rules:
            raise PolicyConfigError(f"{source}: {name}: no such policy in this pack")
        if isinstance(value, str):
            levels[name] = _level(value, f"{source}: {name}")
        elif isinstance(value, dict):
            if "enforcementLevel" in value:
                levels[name] = _level(value["enforcementLevel"], f"{source}: {name}.enforcementLevel")
            options[name] = {k: v for k, v in value.items() if k != "enforcementLevel"}
        else:
            raise PolicyConfigError(f"{source}: {name}: a level or an object")
    resolved = {}
    for name, rule in rules.items():
        merged = {**rule.defaults(), "waivers": [], **options[name]}
        # Only what the config sets can be wrong: the defaults are valid (tested).
        error = _first_error(name, merged) if options[name] else None
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            raise PolicyConfigError(f"{source}: {name}{'.' + where if where else ''}: {error.message}")
        resolved[name] = (levels[name], merged)
    return resolved


def _level(value: Any, where: str) -> str:
    if value not in LEVELS:
        raise PolicyConfigError(f"{where}: enforcement level must be one of {', '.join(LEVELS)}")
    return value


def sync_levels(environment: str, path: Path) -> str:
    """The config file's text with every rule's level set to the registry default for `environment`
    (options and waivers kept); used by `python -m platform_infra.policies.docs`."""
    if environment not in ENVIRONMENTS:
        raise PolicyConfigError(f"unknown environment {environment}")
    current = read(path) if path.is_file() else {}
    synced: dict[str, Any] = {}
    for rule in enforced_rules():
        entry = current.get(rule.policy_name)
        options = (
            {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, dict) else {}
        )
        level = rule.enforcement(environment)
        synced[rule.policy_name] = {"enforcementLevel": level, **options} if options else level
    return json.dumps(synced, indent=2) + "\n"
