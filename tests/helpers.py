"""Waiting helpers for tests: wait for a condition, never sleep to let things settle.

Every timeout in tests scales from one unit (``TIMEOUT_UNIT_S``), so a slow CI machine can stretch
them all with one environment variable.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

TIMEOUT_UNIT_S = float(os.environ.get("EDGE_TEST_TIMEOUT_UNIT_S", "1.0"))


def timeout_s(units: float) -> float:
    return units * TIMEOUT_UNIT_S


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,  # noqa: ASYNC109  (scaled units, see timeout_s)
    *,
    what: str = "condition",
    interval_s: float = 0.005,
) -> None:
    """Poll ``condition`` until it is true; fail with ``what`` after ``timeout`` units."""
    deadline = time.monotonic() + timeout_s(timeout)
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s(timeout):.1f}s waiting for {what}")
        await asyncio.sleep(interval_s)


def wait_for_sync(
    condition: Callable[[], bool],
    timeout: float = 5.0,
    *,
    what: str = "condition",
    interval_s: float = 0.01,
) -> None:
    deadline = time.monotonic() + timeout_s(timeout)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s(timeout):.1f}s waiting for {what}")
        time.sleep(interval_s)
