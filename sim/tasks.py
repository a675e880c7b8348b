"""Stopping tasks reliably.

On Python 3.11 a cancellation can be swallowed: ``asyncio.wait_for`` returns the inner result if it
completed just as the cancel arrived (the ``ocpp`` package awaits every answer that way). A task
cancelled once may then carry on, and ``await task`` hangs. So cancel until it is really done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, retry_s: float = 0.05) -> None:
    """Cancel ``tasks`` and wait until every one has finished, cancelling again if needed."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)


def failure(task: asyncio.Task[Any]) -> BaseException | None:
    """The exception a finished task ended with, None if it returned or was cancelled."""
    if task.cancelled():
        return None
    return task.exception()
