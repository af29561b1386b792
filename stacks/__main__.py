"""Pulumi entry point: validate the stack config, then compose the platform and export its outputs."""

import pulumi

from platform_infra.infra.fastrun import collector_paused, settle_outputs
from platform_infra.infra.settings import SettingsError
from platform_infra.infra.stackconfig import load_stack_inputs
from platform_infra.stacks.platform import build

try:
    inputs = load_stack_inputs()
except SettingsError as exc:
    # A clean one-line failure before anything is registered, instead of a stack trace.
    raise pulumi.RunError(str(exc)) from None

with collector_paused():
    for key, value in build(inputs).items():
        pulumi.export(key, value)


async def _settled() -> None:
    # Outputs resolved here, together, leave the SDK's final wait (one pass per finished Output) nothing to do.
    with collector_paused():
        await settle_outputs()


pulumi.run(_settled)
