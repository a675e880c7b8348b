"""A 1.6 charge point that keeps a ledger: every transaction message it sent and which were acked.

Built for accounting, not realism of physics: each transaction message carries a marker ``n``,
unique per charge point and increasing in send order (StartTransaction ``meterStart``, MeterValues
``sampledValue[0].value``, StopTransaction ``meterStop``), so what the cloud received can be matched
to what the charge point sent whatever ids and retries happened in between.

Like a real charge point it keeps its own ordered offline queue: messages produced while it is
disconnected wait, and the head is resent (at least once) until it gets a CALLRESULT; one CALL is
outstanding at a time; BootNotification goes once per life, not on every reconnect. The
transaction id of MeterValues and StopTransaction is the one StartTransaction.conf gave it (the
edge's or the cloud's), filled in at send time. Calls from the edge are answered (Accepted).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from sim.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")
BOOT = {"chargePointVendor": "Ledger", "chargePointModel": "Accounting"}
STAMP = "2026-11-28T10:00:00.000Z"


@dataclass(slots=True)
class TxMessage:
    n: int
    action: str
    local_tx: int
    payload: dict[str, Any]
    attempts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Acked:
    n: int
    action: str
    local_tx: int
    transaction_id: int | None  # as sent (MeterValues/Stop) or as answered (Start)


class _Lost(Exception):
    """The connection went away while a CALL was outstanding."""


@dataclass(slots=True)
class _Conn:
    ws: ClientConnection
    waiting: dict[str, asyncio.Future[list[Any]]] = field(default_factory=dict)
    closed: bool = False


class LedgerChargePoint:
    def __init__(
        self,
        cp_id: str,
        url: str,
        *,
        password: str | None = None,
        ssl: SSLContext | None = None,
        answer_timeout_s: float = 10.0,
        retry_s: float = 0.05,
        reconnect_s: float = 0.05,
    ) -> None:
        self.cp_id = cp_id
        self.url = url.rstrip("/") + "/" + cp_id
        self.password = password
        self.ssl = ssl  # for a wss:// url: trust this (the edge's self-signed certificate)
        self.answer_timeout_s = answer_timeout_s
        self.retry_s = retry_s
        self.reconnect_s = reconnect_s
        self.queue: collections.deque[TxMessage] = collections.deque()
        self.sent: dict[int, TxMessage] = {}  # every message produced, by marker
        self.acked: list[Acked] = []
        self.tx_ids: dict[int, int] = {}  # local transaction -> id from StartTransaction.conf
        self.call_errors: list[tuple[str, str]] = []
        self.closes: list[tuple[int | None, str]] = []
        self.connect_errors: list[str] = []
        self.connects = 0
        self.produced_offline = 0  # messages produced while not connected (its own queue's work)
        self.online = False
        self.booted = False
        self._markers = itertools.count(1)
        self._local_txs = itertools.count(1)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: _Conn | None = None

    # -- producing ----------------------------------------------------------------------------------
    def _add(self, action: str, local_tx: int, payload: dict[str, Any]) -> TxMessage:
        n = next(self._markers)
        if action == "StartTransaction":
            payload["meterStart"] = n
        elif action == "MeterValues":
            payload["meterValue"] = [{"timestamp": STAMP, "sampledValue": [{"value": str(n)}]}]
        else:
            payload["meterStop"] = n
        msg = TxMessage(n=n, action=action, local_tx=local_tx, payload=payload)
        if not self.online:
            self.produced_offline += 1
        self.queue.append(msg)
        self.sent[n] = msg
        self._wake.set()
        return msg

    def start_transaction(self, connector_id: int = 1, id_tag: str = "TAG-1") -> int:
        local_tx = next(self._local_txs)
        # The timestamp makes each start unique (retries of one start keep it).
        stamp = f"2026-11-28T10:{local_tx // 60 % 60:02d}:{local_tx % 60:02d}.000Z"
        self._add(
            "StartTransaction",
            local_tx,
            {"connectorId": connector_id, "idTag": id_tag, "timestamp": stamp},
        )
        return local_tx

    def meter_values(self, local_tx: int, count: int = 1, connector_id: int = 1) -> None:
        for _ in range(count):
            self._add("MeterValues", local_tx, {"connectorId": connector_id})

    def stop_transaction(self, local_tx: int) -> None:
        self._add("StopTransaction", local_tx, {"timestamp": STAMP, "reason": "Local"})

    def transaction(self, meter_values: int) -> int:
        local_tx = self.start_transaction()
        self.meter_values(local_tx, meter_values)
        self.stop_transaction(local_tx)
        return local_tx

    @property
    def drained(self) -> bool:
        return not self.queue

    def acked_markers(self) -> set[int]:
        return {a.n for a in self.acked}

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> LedgerChargePoint:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"ledger-{self.cp_id}"
        )
        return self

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.ws.close()

    async def drop(self) -> None:
        """Close the socket as a network fault would; the loop reconnects."""
        if self._conn is not None:
            await self._conn.ws.close()

    async def _run(self) -> None:
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.cp_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        while True:
            try:
                ws = await connect(
                    self.url,
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers=headers,
                    open_timeout=3,
                    ping_interval=None,
                    close_timeout=1,
                    compression=None,
                    proxy=None,
                    **({"ssl": self.ssl} if self.ssl is not None else {}),
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self.connect_errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.reconnect_s)
                continue
            self.connects += 1
            conn = _Conn(ws)
            self._conn = conn
            reader = asyncio.get_running_loop().create_task(self._read(conn))
            try:
                await self._session(conn)
            except (_Lost, ConnectionClosed):
                pass
            finally:
                self.online = False
                self._conn = None
                await cancel_and_wait([reader])
                with contextlib.suppress(Exception):
                    await ws.close()
                self.closes.append((ws.close_code, ws.close_reason or ""))
            await asyncio.sleep(self.reconnect_s)

    async def _read(self, conn: _Conn) -> None:
        try:
            async for text in conn.ws:
                frame = orjson.loads(text)
                if frame[0] == 2:
                    await conn.ws.send(orjson.dumps([3, frame[1], _answer(frame[2])]).decode())
                    continue
                fut = conn.waiting.pop(frame[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            self._wake.set()
            for fut in conn.waiting.values():
                if not fut.done():
                    fut.set_exception(_Lost())

    async def _call(self, conn: _Conn, message_id: str, action: str, payload: Any) -> list[Any]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        conn.waiting[message_id] = fut
        await conn.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        try:
            async with asyncio.timeout(self.answer_timeout_s):
                return await fut
        except TimeoutError:
            conn.waiting.pop(message_id, None)
            return [4, message_id, "Timeout", "no answer in time", {}]

    async def _session(self, conn: _Conn) -> None:
        boots = itertools.count(1)
        while not self.booted:
            answer = await self._call(
                conn, f"{self.cp_id}-boot-{next(boots)}", "BootNotification", BOOT
            )
            if answer[0] == 3 and answer[2].get("status") == "Accepted":
                self.booted = True
            else:
                await asyncio.sleep(self.retry_s)
        self.online = True
        while True:
            if conn.closed:
                raise _Lost()
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            msg = self.queue[0]
            payload = dict(msg.payload)
            if msg.action != "StartTransaction":
                payload["transactionId"] = self.tx_ids[msg.local_tx]
            msg.attempts += 1
            answer = await self._call(
                conn, f"{self.cp_id}-{msg.n}-{msg.attempts}", msg.action, payload
            )
            if answer[0] != 3:
                self.call_errors.append((msg.action, f"{answer[2]}: {answer[3]}"))
                await asyncio.sleep(self.retry_s)
                continue
            tx_id = payload.get("transactionId")
            if msg.action == "StartTransaction":
                tx_id = int(answer[2]["transactionId"])
                self.tx_ids[msg.local_tx] = tx_id
            self.queue.popleft()
            self.acked.append(
                Acked(n=msg.n, action=msg.action, local_tx=msg.local_tx, transaction_id=tx_id)
            )


def _answer(action: str) -> dict[str, Any]:
    if action == "GetConfiguration":
        return {"configurationKey": []}
    if action == "TriggerMessage":
        return {"status": "Rejected"}
    return {"status": "Accepted"}
