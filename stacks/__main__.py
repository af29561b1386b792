"""Pulumi entry point: validate the stack config, then compose the platform and export its outputs."""

import pulumi

from infra.settings import SettingsError
from infra.stackconfig import load_stack_inputs
from stacks.platform import build

try:
    inputs = load_stack_inputs()
except SettingsError as exc:
    # A clean one-line failure before anything is registered, instead of a stack trace.
    raise pulumi.RunError(str(exc)) from None

for key, value in build(inputs).items():
    pulumi.export(key, value)
