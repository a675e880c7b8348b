"""Hand-over from a node's asyncio thread to its Thespian actor: a queue plus a wake-up pipe.

The Thespian actor owns the pipe's read end and returns ``ThespianWatch([fd])`` from every
``receiveMessage``; the asyncio thread never calls Thespian (direct cross-thread sends stalled 5 of 5
runs and once crashed the transport). Messages the other way go through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import contextlib
import os
import queue
from typing import Any


class PipeBridge:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._items: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()

    @property
    def fileno(self) -> int:
        return self._read_fd

    def post(self, target: Any, message: Any) -> None:
        """From any thread: queue ``message`` for ``target`` and wake the Thespian side."""
        self._items.put((target, message))
        with contextlib.suppress(BlockingIOError):  # a full pipe already means "wake up"
            os.write(self._write_fd, b"\x01")

    def drain(self) -> list[tuple[Any, Any]]:
        """On the Thespian side: everything posted so far, in order."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 4096):
                pass
        out = []
        while True:
            try:
                out.append(self._items.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
