"""The `infra` command's entry point.

Its start-up imports (the Pulumi SDK, pydantic, the components) create several hundred thousand objects; with
the cyclic collector on, each import pays for passes over all of them. They are imported with the collector
off, then frozen out of its generations (`gc.freeze`), so later collections only see what the command makes.
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    from platform_infra.infra.cli import main as run

    gc.freeze()
    gc.enable()
    return run()
