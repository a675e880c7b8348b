"""A digital input exposed as a file (a GPIO sysfs ``value``, a relay daemon's output file).

The only code that reads the contact file. :class:`ContactReader` returns the file's text (the
pure :func:`actors.grid_limits.parse_contact` decides what it means) and raises only
:class:`ContactReadError`. The read runs in a thread of its own with a deadline, one at a time,
so a file on a hung mount cannot stall the actor's loop nor pile up threads.

::

    ContactReadError        the file is missing, unreadable, too long, not text, or too slow
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
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


class ContactReader:
    """Reads one contact file off the event loop, one read at a time.

    Each read runs in a daemon thread of its own, not the loop's default executor: a read that
    never returns (a FIFO no writer opened, a file on a hung mount) holds that one thread, and a
    poll while it waits starts no other but waits for it again (its answer, when it comes, is
    the file as it is then). Stuck reads in the default executor filled it, one per poll, and
    queued the node's other users (host name lookups) behind them; a daemon thread does not hold
    the process's exit either.
    """

    def __init__(self, path: Path, *, timeout_s: float = 1.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._pending: asyncio.Future[str] | None = None

    async def read(self) -> str:
        """The file's text; :class:`ContactReadError` on any failure."""
        if self._pending is None or self._pending.done():
            self._pending = self._start()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(self._pending)
        except TimeoutError:
            raise ContactReadError(self.path, f"no answer within {self.timeout_s:g} s") from None

    def _start(self) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        # A read that ends after its poll timed out is not awaited: its error is not news.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(result: str | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or "")

        def work() -> None:
            result: str | None = None
            error: BaseException | None = None
            try:
                result = read_contact_now(self.path)
            except BaseException as exc:  # handed to the loop (ContactReadError, as a rule)
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name=f"contact {self.path}", daemon=True).start()
        return future
