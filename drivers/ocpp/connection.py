"""One OCPP-J websocket, either side: send and receive text, close, link quality.

The same wrapper comes out of the listener (a charge point's socket) and the upstream client (a
session to the cloud), so the actors above never see websockets' types or exceptions.

Exceptions (the upstream client's connect errors are in :mod:`drivers.ocpp.upstream`)::

    LinkError (Exception)
    ├── LinkClosed          the websocket is closed; .code, .reason (1006 when it just vanished)
    └── ConnectFailed       (upstream) the session to the cloud could not be opened
"""

from __future__ import annotations

import asyncio
import logging
import struct
import weakref
from collections.abc import Callable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import Side, State

from drivers.ocpp.codes import OcppVersion

ABNORMAL_CLOSURE = 1006
log = logging.getLogger(__name__)


class LinkError(Exception):
    """Base of every error the OCPP websocket layer raises."""


class LinkClosed(LinkError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


def _closed(exc: ConnectionClosed) -> LinkClosed:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return LinkClosed(ABNORMAL_CLOSURE, "")
    return LinkClosed(int(frame.code), frame.reason)


# The header of an unmasked, unfragmented text frame (RFC 6455 5.2): FIN + opcode 1, then the
# payload length in 7 bits, or 126 + 16 bits, or 127 + 64 bits.
_SHORT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """What websockets' ``Frame(Opcode.TEXT, data).serialize(mask=False)`` puts before the data."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 65536:
        return _HEADER_16(0x81, 126, length)
    return _HEADER_64(0x81, 127, length)


class _Held:
    """The frames the connections of one event loop sent in its current turn, written to their
    sockets together at the start of its next turn (one callback for all of them).

    Why: a profile batch wakes hundreds of charge point actors in one turn, each writing one
    frame. Written at once, each frame's send() came between two actors' Python work and woke
    its peer, whose process then competed for the cores (and their caches) with the actors
    still to run. Held to the turn's end, the batch's Python work runs first and the writes
    follow together: bench/fanout.py --cps 250, four alternating pairs on 2 cores, batch ->
    last frame written p50 48-77 -> 22-35 ms, the broker's CPU p50 22-28 -> 20-25 ms, the
    frames the same. A frame waits for the rest of its turn at most (the next turn runs this
    callback before the I/O callbacks its poll found)."""

    # Not the loop itself: _HELD's value would keep its key, every loop that ever held a frame,
    # alive (and all it references) after it is closed. hold() runs in the loop (send).
    __slots__ = ("conns",)

    def __init__(self) -> None:
        self.conns: list[OcppConnection] = []

    def hold(self, conn: OcppConnection) -> None:
        if not self.conns:
            asyncio.get_running_loop().call_soon(self.flush)
        self.conns.append(conn)

    def flush(self) -> None:
        conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn._write_held()
            except Exception:  # one socket's failure must not hold the others' frames back
                log.exception("writing a held frame to %r failed", conn)


_HELD: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Held] = weakref.WeakKeyDictionary()


def _held_for(loop: asyncio.AbstractEventLoop) -> _Held:
    held = _HELD.get(loop)
    if held is None:
        held = _HELD[loop] = _Held()
    return held


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "" if address is None else str(address)


class OcppConnection:
    """An open OCPP-J websocket for one charge point, with the version it speaks.

    ``send`` and ``recv`` raise :class:`LinkClosed` once the socket is gone. ``recv`` has one
    caller at a time (websockets refuses two concurrent readers).
    """

    def __init__(
        self,
        websocket: Connection,
        *,
        charge_point_id: str,
        ocpp_version: OcppVersion,
        auto_registered: bool = False,
        key_used: str = "",
    ) -> None:
        self._ws = websocket
        self.charge_point_id = charge_point_id
        self.ocpp_version = ocpp_version
        self.auto_registered = auto_registered
        self.key_used = key_used  # which of its passwords it authenticated with (server.py)
        self.remote_address = format_address(websocket.remote_address)
        # Fixed at the handshake: whether a text frame is the header and the bytes as they are
        # (the server side masks nothing; no extension such as permessage-deflate transforms
        # them; websockets' debug log of each frame is off).
        protocol = websocket.protocol
        self._plain_frames = (
            protocol.side is Side.SERVER and not protocol.extensions and not protocol.debug
        )
        # A plain frame sent in this turn of the loop, not yet written (_Held), and what is to
        # run once it is (when_written).
        self._held: bytes = b""
        self._on_written: list[tuple[Callable[[int], None], int]] = []
        self._holder: _Held | None = None

    def __repr__(self) -> str:
        return (
            f"<OcppConnection {self.charge_point_id!r} OCPP {self.ocpp_version} "
            f"peer={self.remote_address}>"
        )

    @property
    def latency_s(self) -> float:
        """Round-trip time of the last websocket ping, 0.0 before the first one answers."""
        return float(self._ws.latency)

    @property
    def closed(self) -> bool:
        return self._ws.close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    async def send(self, text: str) -> None:
        ws = self._ws
        protocol = ws.protocol
        if (
            protocol.state is State.OPEN
            and ws.send_in_progress is None
            and not ws.paused
            and not ws.transport.is_closing()
        ):
            # What ``ws.send`` does for one text frame on an open socket with room in its write
            # buffer, without its async context manager; anything else (closing, a full buffer
            # to wait for) takes websockets' own path below. Without an extension the frame is
            # written as websockets' Protocol.send_text would serialize it, without its Frame
            # object, checks and BytesIO. CPU for 500 frames on loopback (bench/fanout.py, no
            # permessage-deflate, as the charge points there), against ws.send's 6-8 ms: 0.87 of
            # it through Protocol.send_text, 0.74 written directly (five alternating pairs).
            data = text.encode()
            if (
                self._plain_frames
                and not protocol.writes
                and not protocol.expect_continuation_frame
            ):
                frame = text_frame_header(len(data)) + data
                if self._held:
                    # A second frame in one turn: both now, so that the buffer's high-water
                    # mark holds the next one back as before (ws.paused).
                    frame, self._held = self._held + frame, b""
                    ws.transport.write(frame)
                    self._written()
                else:
                    self._held = frame
                    holder = self._holder
                    if holder is None:
                        holder = self._holder = _held_for(asyncio.get_running_loop())
                    holder.hold(self)
            else:
                self._write_held()
                protocol.send_text(data)
                ws.send_data()
            return
        self._write_held()
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    def when_written(self, fn: Callable[[int], None], arg: int) -> None:
        """``fn(arg)`` once the frame sent last is written to the socket (at once if it is)."""
        if self._held:
            self._on_written.append((fn, arg))
        else:
            fn(arg)

    def _write_held(self) -> None:
        """The frame held for the end of the turn, now (before anything else is written: the
        order of frames, a close after them). Dropped if the websocket closes meanwhile (a
        close frame written by websockets itself, the peer's answered): no frame may follow
        it, and a frame written just before it would have been no more use to the peer."""
        held = self._held
        if not held:
            return
        self._held = b""
        ws = self._ws
        if ws.protocol.state is State.OPEN and not ws.transport.is_closing():
            ws.transport.write(held)
        self._written()

    def _written(self) -> None:
        hooks = self._on_written
        if hooks:
            self._on_written = []
            for fn, arg in hooks:
                fn(arg)

    async def recv(self) -> str:
        if self._held:
            # Before reading: a frame read now that is not UTF-8 closes the link at once
            # (websockets for a text frame, below for a binary one), and no frame may follow
            # the close frame; the one held would have been dropped, though sent before it.
            self._write_held()
        try:
            message = await self._ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        if isinstance(message, str):
            return message
        # OCPP-J frames are text. The ocpp package accepts JSON sent as binary, so we do too
        # rather than break a charge point that works with it; invalid UTF-8 ends the link.
        try:
            return bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            reason = "binary frame is not UTF-8 text"
            await self._ws.close(CloseCode.INVALID_DATA, reason)
            raise LinkClosed(int(CloseCode.INVALID_DATA), reason) from None

    async def ping(self) -> float:
        """Measure the round trip now; return it in seconds (also kept in ``latency_s``)."""
        try:
            pong = await self._ws.ping()
            return float(await pong)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with the websocket closing handshake; returns once the TCP link is gone."""
        self._write_held()
        await self._ws.close(code, reason)

    async def wait_closed(self) -> None:
        await self._ws.wait_closed()
