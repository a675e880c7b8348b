"""Handing a charge point's TCP connection to the broker node that serves it (broker shards).

With several broker nodes, one listens on the OCPP port (the front) and each charge point is
served by the node its identity maps to. The front reads the HTTP request line of a new
connection with ``MSG_PEEK`` (the bytes stay in the socket for the websocket handshake), takes
the identity from its path and, when another node serves it, passes the socket itself over a
Unix socket (``SCM_RIGHTS``) to that node, which adopts it into its own websocket server: the
handshake, and every frame after it, happen in the serving node. Nothing is proxied.

Behind TLS (``wss://``, security profile 2) the request line is encrypted and a TLS session cannot
change process after its handshake: the front then does the handshake itself, reads the request
line from the decrypted stream (:class:`Sniffer`) and, for another node's charge point, passes
that node one end of a local socket pair instead, relaying between the charge point's TLS
connection and the other end (:class:`Relay`); the serving node gets the charge point's address
with it. Its websocket handshake and frames still run in the serving node; the front decrypts,
encrypts and copies their bytes (TLS termination in front, by the front).
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
MAX_PEER_TEXT = 256  # bytes of a hand-over message: "r" and the charge point's address


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


def _target(line: bytes) -> str | None:
    """The request-target of a ``GET <target> HTTP/1.x`` request line, else None."""
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


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
            return _target(data[:end])
        if len(data) >= max_bytes:
            return None
        # More of the line is on its way; the socket stays readable while the peeked bytes
        # wait, so poll a little later rather than spin.
        await asyncio.sleep(_PEEK_PAUSE_S[min(pause, len(_PEEK_PAUSE_S) - 1)])
        pause += 1


class Sniffer(asyncio.Protocol):
    """The first protocol of a TLS connection at the front: keeps what arrives until the request
    line is complete (``line`` resolves with its target, None if it is no OCPP request line),
    for :meth:`take` to hand on to the protocol that serves the connection."""

    def __init__(self, max_bytes: int = MAX_REQUEST_LINE) -> None:
        self.max_bytes = max_bytes
        self.data = bytearray()
        self.line: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.line.done():
            return
        end = self.data.find(b"\r\n")
        if end >= 0:
            self.line.set_result(_target(bytes(self.data[:end])))
        elif len(self.data) >= self.max_bytes:
            self.line.set_result(None)

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        if not self.line.done():
            self.line.set_exception(ConnectionError("closed before its request line"))

    def take(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
        """Hand the connection, and every byte received so far, to ``protocol``."""
        data, self.data = bytes(self.data), bytearray()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)


class Relay(asyncio.Protocol):
    """One side of a relay: what its transport receives is written to ``other``; a full write
    buffer on its own transport pauses reading on ``other``; either side's end closes both."""

    def __init__(self, ended: Callable[[], None] | None = None) -> None:
        self.other: asyncio.Transport | None = None
        self.ended = ended  # called once its own transport is gone

    def data_received(self, data: bytes) -> None:
        if self.other is not None and not self.other.is_closing():
            self.other.write(data)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost closes the other side

    def connection_lost(self, exc: Exception | None) -> None:
        if self.other is not None and not self.other.is_closing():
            self.other.close()
        if self.ended is not None:
            ended, self.ended = self.ended, None
            ended()

    def pause_writing(self) -> None:
        if self.other is not None and not self.other.is_closing():
            self.other.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and not self.other.is_closing():
            self.other.resume_reading()


async def relay_to(
    path: Path,
    transport: asyncio.Transport,
    sniffer: Sniffer,
    peer: str,
    limit: asyncio.Semaphore,
    ended: Callable[[], None] | None = None,
) -> None:
    """Serve the connection ``transport`` (decrypted, read so far by ``sniffer``) from the node
    listening on ``path``: pass it one end of a local socket pair, with the charge point's
    address ``peer``, and relay between ``transport`` and the other end; ``ended`` is called
    when the charge point's side is gone (either side's end closes both). :class:`HandoverError`
    when that node does not take it (``transport`` is left to the caller then)."""
    loop = asyncio.get_running_loop()
    near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        async with limit:
            await _hand_over(path, far, b"r" + peer.encode())
    except BaseException:
        near.close()
        raise
    finally:
        far.close()
    local, outward = Relay(), Relay(ended)
    near.setblocking(False)
    try:
        local_transport, _ = await loop.connect_accepted_socket(lambda: local, near)
    except BaseException:
        near.close()
        transport.close()
        raise
    assert isinstance(local_transport, asyncio.Transport)
    local.other = transport
    if transport.is_closing():  # the charge point went while the node took the other end
        local_transport.close()
        if ended is not None:
            ended()
        return
    outward.other = local_transport
    sniffer.take(transport, outward)  # what the charge point sent so far goes first


async def hand_over(path: Path, sock: socket.socket, limit: asyncio.Semaphore) -> None:
    """Pass ``sock`` to the node listening on the Unix socket ``path``; the caller then closes
    its own copy. :class:`HandoverError` when that node does not take it. ``limit``: the
    caller's bound on hand-overs at once (at most ``BACKLOG``)."""
    async with limit:
        await _hand_over(path, sock)


async def _hand_over(path: Path, sock: socket.socket, message: bytes = b"c") -> None:
    loop = asyncio.get_running_loop()
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.setblocking(False)
    try:
        try:
            await loop.sock_connect(link, str(path))
            # "c" (a connection before its handshake) or "r" and the charge point's address
            # (a relayed one), with the descriptor; a fresh local socket has room for it.
            socket.send_fds(link, [message], [sock.fileno()])
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
    ``adopt`` (the node's websocket server), with the charge point's address when the front
    relays it (None: the socket is the charge point's own). Only from this user
    (``SO_PEERCRED``)."""

    def __init__(
        self, path: Path, adopt: Callable[[socket.socket, str | None], Awaitable[None]]
    ) -> None:
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
            message, fds, _, _ = socket.recv_fds(link, MAX_PEER_TEXT, 1)
            if not fds:
                return
            conn = socket.socket(fileno=fds[0])
            conn.setblocking(False)
            self.adopted += 1
            peer = message[1:].decode(errors="replace") if message[:1] == b"r" else None
            try:
                await self.adopt(conn, peer)
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
