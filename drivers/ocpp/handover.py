"""Handing a charge point's TCP connection to the broker node that serves it (broker shards).

With several broker nodes, one listens on the OCPP port (the front) and each charge point is
served by the node its identity maps to. The front reads the HTTP request line of a new
connection with ``MSG_PEEK`` (the bytes stay in the socket for the websocket handshake), takes
the identity from its path and, when another node serves it, passes the socket itself over a
Unix socket (``SCM_RIGHTS``) to that node, which adopts it into its own websocket server: the
handshake, and every frame after it, happen in the serving node. Nothing is proxied.

Plain ``ws://`` only: behind TLS the request line is encrypted, and a TLS session cannot change
process after its handshake (TLS with several broker nodes needs termination in front of the
edge, or a port per node).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from drivers.control import bind_control_socket, peer_uid

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192  # bytes peeked for the request line at most (a URL this long is refused)
# Hand-overs under way at once, per front, and the Unix socket's backlog: a burst of charge
# points (a site coming back) connects at once, and an AF_UNIX connect to a full backlog fails
# (measured: 95 of 300 refused with the backlog of 16 of a control socket).
MAX_CONCURRENT = 64
BACKLOG = 256
_PEEK_PAUSE_S = (0.0005, 0.002, 0.01)  # between peeks while the request line is incomplete


class HandoverError(Exception):
    pass


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def request_target(sock: socket.socket, *, max_bytes: int = MAX_REQUEST_LINE) -> str | None:
    """The request-target of the ``GET <target> HTTP/1.1`` line waiting on ``sock`` (a
    non-blocking socket), read with ``MSG_PEEK``: the bytes stay for the websocket handshake.

    None when the first line is not such a request line (or longer than ``max_bytes``): the
    caller lets its own websocket server answer it. :class:`ConnectionError` when the peer
    closes first. No timeout of its own: the caller bounds the wait."""
    await _readable(sock)
    pause = 0
    while True:
        data = sock.recv(max_bytes, socket.MSG_PEEK)
        if not data:
            raise ConnectionError("closed before its request line")
        end = data.find(b"\r\n")
        if end >= 0:
            parts = data[:end].split(b" ")
            if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
                return None
            try:
                return parts[1].decode("ascii")
            except UnicodeDecodeError:
                return None
        if len(data) >= max_bytes:
            return None
        # More of the line is on its way; the socket stays readable while the peeked bytes
        # wait, so poll a little later rather than spin.
        await asyncio.sleep(_PEEK_PAUSE_S[min(pause, len(_PEEK_PAUSE_S) - 1)])
        pause += 1


async def hand_over(path: Path, sock: socket.socket, limit: asyncio.Semaphore) -> None:
    """Pass ``sock`` to the node listening on the Unix socket ``path``; the caller then closes
    its own copy. :class:`HandoverError` when that node does not take it. ``limit``: the
    caller's bound on hand-overs at once (at most ``BACKLOG``)."""
    async with limit:
        await _hand_over(path, sock)


async def _hand_over(path: Path, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.setblocking(False)
    try:
        try:
            await loop.sock_connect(link, str(path))
            # One byte with the descriptor; a fresh local socket has room for it.
            socket.send_fds(link, [b"c"], [sock.fileno()])
            # The node closes its end once it holds the socket: the hand-over is done then.
            await loop.sock_recv(link, 1)
        except OSError as exc:
            raise HandoverError(f"node socket {path}: {exc}") from exc
    finally:
        link.close()


class Tasks:
    """The background tasks of a listener (accept loops, connections being passed on): kept
    referenced while they run, cancelled together at its stop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class HandoverServer:
    """A broker node's end: takes the connections the front passes and hands each to
    ``adopt`` (the node's websocket server). Only from this user (``SO_PEERCRED``)."""

    def __init__(self, path: Path, adopt: Callable[[socket.socket], Awaitable[None]]) -> None:
        self.path = path
        self.adopt = adopt
        self.adopted = 0
        self.refused = 0
        self._sock: socket.socket | None = None
        self._tasks = Tasks()

    async def start(self) -> None:
        self._sock = bind_control_socket(self.path)
        self._sock.listen(BACKLOG)
        self._sock.setblocking(False)
        self._tasks.spawn(self._accept_loop(self._sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            link, _ = await loop.sock_accept(sock)
            self._tasks.spawn(self._take(link))

    async def _take(self, link: socket.socket) -> None:
        try:
            if peer_uid(link) != os.getuid():
                self.refused += 1
                log.warning("hand-over from another user refused on %s", self.path)
                return
            await _readable(link)
            _, fds, _, _ = socket.recv_fds(link, 1, 1)
            if not fds:
                return
            conn = socket.socket(fileno=fds[0])
            conn.setblocking(False)
            self.adopted += 1
            try:
                await self.adopt(conn)
            except Exception:
                conn.close()
                log.exception("a connection handed over on %s could not be adopted", self.path)
        except OSError as exc:
            log.warning("hand-over on %s failed: %s", self.path, exc)
        finally:
            link.close()

    async def close(self) -> None:
        await self._tasks.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
