"""A digital input exposed as a file (a GPIO sysfs ``value``, a relay daemon's output file).

The only code that reads the contact file. :func:`read_contact` returns the file's text (the
pure :func:`actors.grid_limits.parse_contact` decides what it means) and raises only
:class:`ContactReadError`. The read runs in a worker thread with a deadline, so a file on a hung
mount cannot stall the actor's loop.

::

    ContactReadError        the file is missing, unreadable, too long, not text, or too slow
"""

from __future__ import annotations

import asyncio
from pathlib import Path

MAX_BYTES = 64  # a contact file holds "0" or "1" and maybe a newline


class ContactReadError(OSError):
    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"contact file {str(path)!r}: {message}")


def read_contact_now(path: Path) -> str:
    """Read the file in the calling thread (for tools and the worker thread below)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ContactReadError(path, "does not exist") from None
    except OSError as exc:
        raise ContactReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ContactReadError(path, f"holds more than {MAX_BYTES} bytes; expected '0' or '1'")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ContactReadError(path, "is not ASCII text; expected '0' or '1'") from None


async def read_contact(path: Path, *, timeout_s: float = 1.0) -> str:
    """The file's text, read off the event loop; :class:`ContactReadError` on any failure."""
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(read_contact_now, path)
    except TimeoutError:
        raise ContactReadError(path, f"no answer within {timeout_s:g} s") from None
