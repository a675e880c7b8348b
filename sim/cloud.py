"""A small simulated CSMS ("the cloud") on the ``ocpp`` package over ``websockets.asyncio.server``.

Charge points connect to ``ws://127.0.0.1:<port>/<anything>/<charge point id>`` with subprotocol
``ocpp1.6`` or ``ocpp2.0.1`` (optional HTTP Basic auth, user = id). The cloud records every frame it
receives, per charge point and in order, before the ``ocpp`` package sees it, so tests can account
for each message (including ones the package would reject). Faults are injected at the same point:
an action can be answered late, or with a CALLERROR, a given number of times. ``stop()`` and
``start()`` take it down and bring it back on the same port, keeping what it knew (like a CSMS whose
database survives an outage).

Exceptions: :class:`CloudError` ├── :class:`CloudNotConnectedError` └── :class:`CloudCallError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from drivers.ports import free_tcp_port
from sim.clock import Clock, SystemClock
from sim.cloud_calls import CloudCallError, CloudCalls, CloudError, CloudNotConnectedError
from sim.cloud_handlers import CloudChargePoint, V16Cloud, V201Cloud
from sim.ocpp_lib import (
    OCPPError,
    UnknownCallErrorCodeError,
    V16ChargePoint,
    V201ChargePoint,
    bind,
    error_code,
    error_description,
    snake_key,
    to_camel_dict,
    v16_call,
    v201_call,
)
from sim.tasks import cancel_and_wait

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")

__all__ = [
    "CloudCallError",
    "CloudError",
    "CloudNotConnectedError",
    "Fault",
    "ReceivedMessage",
    "SimCloud",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    seq: int
    charge_point_id: str
    # 2 CALL, 3 CALLRESULT, 4 CALLERROR (answers to the cloud's own calls)
    message_type: int
    message_id: str
    action: str | None
    payload: Any
    received_utc: datetime
    received_s: float


@dataclass(slots=True, kw_only=True)
class Fault:
    action: str
    delay_s: float = 0.0
    call_error: str | None = None
    # How many more times it fires; None means until cleared.
    times: int | None = None
    charge_point_id: str | None = None


class _Wire:
    """The connection as the ``ocpp`` package sees it: records and faults each received frame."""

    def __init__(self, cloud: SimCloud, cp: CloudChargePoint, ws: ServerConnection) -> None:
        self.cloud = cloud
        self.cp = cp
        self.ws = ws

    async def recv(self) -> str | bytes:
        while True:
            raw = await self.ws.recv()
            frame = self.cloud._record(self.cp.charge_point_id, raw)
            if frame is None or frame[0] != 2:
                return raw
            fault = self.cloud._fault_for(self.cp.charge_point_id, str(frame[2]))
            if fault is None:
                return raw
            if fault.delay_s > 0:
                await asyncio.sleep(fault.delay_s)
            if fault.call_error is None:
                return raw
            error = [4, frame[1], fault.call_error, "injected by the simulated cloud", {}]
            await self.ws.send(orjson.dumps(error).decode())

    async def send(self, message: str) -> None:
        await self.ws.send(message)


class SimCloud(CloudCalls):
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        id_tags: Iterable[str] | None = None,
        passwords: Mapping[str, str] | None = None,
        heartbeat_interval_s: float = 60.0,
        boot_status: str = "Accepted",
        response_timeout_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.host = host
        self._port = port
        # None accepts every id tag; otherwise the rest are Invalid.
        self.id_tags: set[str] | None = None if id_tags is None else set(id_tags)
        self.passwords = dict(passwords) if passwords is not None else None
        self.heartbeat_interval_s = heartbeat_interval_s
        self.boot_status = boot_status
        self.response_timeout_s = response_timeout_s
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.charge_points: dict[str, CloudChargePoint] = {}
        self.faults: list[Fault] = []
        self.rejected_connections = 0
        self._messages: dict[str, list[ReceivedMessage]] = {}
        self._seq = itertools.count()
        self._tx_ids = itertools.count(1)
        self._server: Server | None = None
        self._closed: dict[str, asyncio.Future[None]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        # Not bind(0) the first time: a port from the ephemeral range could be taken by an
        # outgoing connection while stopped, and start() must reopen the same one.
        self._port = self._port or free_tcp_port(self.host)
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            subprotocols=[*SUBPROTOCOLS],  # type: ignore[list-item]
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and stop listening; ``start()`` reopens the same port."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> SimCloud:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port == 0:
            raise CloudError("the simulated cloud has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """Base URL; a charge point appends its id."""
        return f"ws://{self.host}:{self.port}/ocpp"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- what the cloud decides --------------------------------------------------------------------

    def id_tag_status(self, id_tag: str) -> str:
        return "Accepted" if self.id_tags is None or id_tag in self.id_tags else "Invalid"

    def next_transaction_id(self) -> int:
        return next(self._tx_ids)

    # -- records -----------------------------------------------------------------------------------

    def messages(self, charge_point_id: str) -> list[ReceivedMessage]:
        """Every frame received from the charge point, in order."""
        return list(self._messages.get(charge_point_id, []))

    def received(self, charge_point_id: str, action: str | None = None) -> list[ReceivedMessage]:
        """The CALLs received from the charge point, in order, optionally of one action."""
        return [
            m
            for m in self._messages.get(charge_point_id, [])
            if m.message_type == 2 and (action is None or m.action == action)
        ]

    def count(self, charge_point_id: str, action: str) -> int:
        return len(self.received(charge_point_id, action))

    def connected(self, charge_point_id: str) -> bool:
        cp = self.charge_points.get(charge_point_id)
        return cp is not None and cp.connected

    def _record(self, charge_point_id: str, raw: str | bytes) -> list[Any] | None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, list) or len(frame) < 3:
            return None
        kind = frame[0]
        action = str(frame[2]) if kind == 2 else None
        payload = frame[3] if kind == 2 and len(frame) > 3 else frame[2] if kind == 3 else frame[2:]
        self._messages.setdefault(charge_point_id, []).append(
            ReceivedMessage(
                seq=next(self._seq),
                charge_point_id=charge_point_id,
                message_type=int(kind),
                message_id=str(frame[1]),
                action=action,
                payload=payload,
                received_utc=self.clock.utc(),
                received_s=self.clock.monotonic(),
            )
        )
        return frame

    # -- fault injection ---------------------------------------------------------------------------

    def inject_fault(
        self,
        action: str,
        *,
        delay_s: float = 0.0,
        call_error: str | None = None,
        times: int | None = None,
        charge_point_id: str | None = None,
    ) -> Fault:
        fault = Fault(
            action=action,
            delay_s=delay_s,
            call_error=call_error,
            times=times,
            charge_point_id=charge_point_id,
        )
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def _fault_for(self, charge_point_id: str, action: str) -> Fault | None:
        for fault in self.faults:
            if fault.action != action or fault.charge_point_id not in (None, charge_point_id):
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            return fault
        return None

    # -- connections -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        charge_point_id = _charge_point_id(request.path)
        if not charge_point_id:
            self.rejected_connections += 1
            return connection.respond(http.HTTPStatus.NOT_FOUND, "no charge point id in the path\n")
        if self.passwords is None:
            return None
        if _basic_auth_ok(request.headers, charge_point_id, self.passwords):
            return None
        self.rejected_connections += 1
        response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="sim-cloud"'
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        charge_point_id = _charge_point_id(ws.request.path if ws.request else "")
        subprotocol = ws.subprotocol
        if subprotocol not in SUBPROTOCOLS:
            self.rejected_connections += 1
            await ws.close(1002, "an OCPP subprotocol is required")
            return
        cp = self.charge_points.get(charge_point_id)
        if cp is None:
            cp = CloudChargePoint(charge_point_id=charge_point_id)
            self.charge_points[charge_point_id] = cp
        cp.subprotocol = str(subprotocol)
        cp.connected = True
        cp.connect_count += 1
        version: Any = V16Cloud(self, cp) if subprotocol == "ocpp1.6" else V201Cloud(self, cp)
        peer_cls = V16ChargePoint if subprotocol == "ocpp1.6" else V201ChargePoint
        wire = _Wire(self, cp, ws)
        peer = bind(
            peer_cls,
            charge_point_id,
            wire,
            response_timeout_s=self.response_timeout_s,
            handlers=version.handlers(),
        )
        cp.peer = peer
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed[charge_point_id] = closed
        try:
            await peer.start()
        except ConnectionClosed:
            await self._drain(peer, wire)
        finally:
            if cp.peer is peer:  # not if the charge point has already reconnected
                cp.peer = None
                cp.connected = False
            if not closed.done():
                closed.set_result(None)

    async def _drain(self, peer: Any, wire: _Wire) -> None:
        """Read what arrived before the close. The ``ocpp`` package handles frames one at a time
        and stops at the first failed send, so an answer queued behind a call we could no longer
        answer (a charge point that answers Reset and closes at once) would be lost."""
        while True:
            try:
                raw = await wire.recv()
            except ConnectionClosed:
                return
            if raw[:3] in ("[3,", "[4,", b"[3,", b"[4,"):
                await peer.route_message(raw)

    # -- calls to a charge point -------------------------------------------------------------------

    async def call(self, charge_point_id: str, action: str, payload: Mapping[str, Any]) -> Any:
        """Send ``action`` with a camelCase ``payload``; return the camelCase answer.

        Raises CloudCallError on a CALLERROR (or an answer that fails validation) and
        CloudNotConnectedError when the charge point is not connected or drops before answering.
        """
        cp = self.charge_points.get(charge_point_id)
        if cp is None or cp.peer is None:
            raise CloudNotConnectedError(f"charge point {charge_point_id!r} is not connected")
        module = v16_call if cp.subprotocol == "ocpp1.6" else v201_call
        request = getattr(module, action)(**{snake_key(k): v for k, v in payload.items()})
        peer = cp.peer
        closed = self._closed[charge_point_id]
        # The call runs in its own task so a dropped connection can end the wait; cancelling it is
        # safe only because the peer object dies with the connection (no orphan reply can follow).
        task = asyncio.create_task(peer.call(request, suppress=False))
        await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            # An answer read just before the close is already queued: let the call take it.
            await asyncio.wait({task}, timeout=0.1)
        if not task.done():
            await cancel_and_wait([task])
            raise CloudNotConnectedError(
                f"charge point {charge_point_id!r} dropped during {action}"
            )
        try:
            result = task.result()
        except (OCPPError, UnknownCallErrorCodeError) as exc:
            raise CloudCallError(action, error_code(exc), error_description(exc)) from exc
        return to_camel_dict(result)


def _charge_point_id(path: str) -> str:
    segments = [s for s in urlsplit(path).path.split("/") if s]
    return unquote(segments[-1]) if segments else ""


def _basic_auth_ok(headers: Headers, charge_point_id: str, passwords: Mapping[str, str]) -> bool:
    header = headers.get("Authorization")
    if header is None:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep) and user == charge_point_id and passwords.get(charge_point_id) == password
