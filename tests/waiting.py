"""Wait on a condition with a deadline (no sleep-and-hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_for(pred: Callable[[], Any], timeout: float, what: str = "condition", every: float = 0.05) -> Any:
    """Poll ``pred`` (sync or async) until truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = pred()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(every)
