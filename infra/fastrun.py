"""Keep a Pulumi program's run linear in the number of resources it registers.

Two costs grow faster than the program itself once it registers hundreds of containers (each one ~90
Outputs, each Output an asyncio task):

- Python's cyclic garbage collector walks every live task and future on each collection, and collections
  are triggered by allocations, so the walks add up quadratically. The collector is paused while the
  program registers its resources, then restored.
- The SDK's final `wait_for_rpcs` (pulumi/runtime/stack.py) waits on every still-pending Output with
  `asyncio.wait(FIRST_COMPLETED)` in a loop, each pass re-registering callbacks on all of them
  (python/cpython#74741). Awaiting the tracked Outputs once, all together, before the program returns
  leaves that loop nothing to do. Failed Outputs stay tracked, so the SDK still re-raises their errors.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

from pulumi.runtime.settings import SETTINGS


async def settle_outputs() -> None:
    """Wait until every Output the SDK tracks has resolved (new ones created meanwhile included)."""
    while True:
        with SETTINGS.lock:
            pending = [task for task in SETTINGS.outputs if not task.done()]
        if not pending:
            return
        await asyncio.wait(pending)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block; the collector's previous state afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
