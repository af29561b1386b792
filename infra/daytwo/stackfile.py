"""A stack file's settings, for the day-two commands: validated as the program validates them."""

from __future__ import annotations

import json
from pathlib import Path

from platform_infra.infra.mockrun import ProgramInputError, load_project
from platform_infra.infra.settings import NAMESPACE, SETTINGS_KEY, Settings, SettingsError, parse_settings


def stack_settings(project: Path, stack: str) -> Settings:
    """`platform:settings` of `Pulumi.<stack>.yaml` in `project`; bad settings are bad input (exit 2)."""
    raw = load_project(project, stack).config.get(f"{NAMESPACE}:{SETTINGS_KEY}")
    try:
        return parse_settings(json.loads(raw) if raw else None, f"Pulumi.{stack}.yaml")
    except SettingsError as exc:
        raise ProgramInputError(str(exc)) from None
