"""What the parts of the CloudLink actor share: the session, the call in flight, helpers.

Split by concern: CloudLinkBase -> CloudLinkAnswers (what the cloud answers) -> CloudLink.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field
from typing import Any

from actors.broker_context import BrokerContext
from actors.messages import (
    CloudLinkChanged,
    CloudUnavailable,
    RelayCall,
)
from actors.outbox import Outbox, TxMap
from drivers.ocpp.connection import LinkError, OcppConnection
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamUp:
    session: int
    conn: OcppConnection


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamDown:
    session: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamFailed:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudFrame:
    session: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    seq: int
    kind: str  # "answer": the charge point stops waiting; "call": the call has failed


@dataclass(frozen=True, slots=True, kw_only=True)
class Pump:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayWaited:
    """A relay still queued after answer_deadline_s: the charge point is answered by the edge."""

    message_id: str


@dataclass(slots=True)
class Inflight:
    seq: int
    kind: str  # "relay" | "outbox" | "preamble"
    message_id: str
    action: str
    live: bool  # the charge point is waiting for this answer
    key: bytes = b""  # outbox key
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class CloudLinkBase(Actor):
    outbox: Outbox
    txmap: TxMap
    latest: dict[str, list[str]]
    version: str | None

    def __init__(self, ctx: ActorContext, broker: BrokerContext, cp_id: str) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.cp_id = cp_id
        cloud = broker.config.cloud
        assert cloud is not None
        self.cloud = cloud
        self.conn: OcppConnection | None = None
        self.session = 0
        self.ready = False
        self.cp_connected = False
        self.inflight: Inflight | None = None
        self.seq = 0
        self.relays: collections.deque[RelayCall] = collections.deque()
        self.relay_timers: dict[str, asyncio.TimerHandle] = {}
        self.preamble: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self.live: set[str] = set()
        self.retry_at = 0.0
        self.timeouts_in_a_row = 0
        self.connecting = False
        self.cp_left_at = -1e9
        self.wake = asyncio.Event()
        self.stats: dict[str, Any] = {
            "connects": 0,
            "relayed": 0,
            "delivered": 0,
            "replayed": 0,
            "dead_lettered": 0,
            "last_error": None,
        }

    def _tell_cp(self, msg: object) -> None:
        self.ctx.system.send(self.broker.cp_path(self.cp_id), msg)

    def _unavailable(self, message_id: str, reason: str) -> None:
        if message_id in self.live:
            self.live.discard(message_id)
            self._tell_cp(CloudUnavailable(message_id=message_id, reason=reason))

    async def _send_up(self, text: str) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            await conn.send(text)
        except LinkError as exc:
            log.info("%s: upstream send failed: %s", self.cp_id, exc)

    def _start(
        self, kind: str, message_id: str, action: str, *, live: bool, key: bytes = b""
    ) -> None:
        self.seq += 1
        inflight = Inflight(
            seq=self.seq, kind=kind, message_id=message_id, action=action, live=live, key=key
        )
        if live:
            inflight.timers.append(
                self.send_after(self.cloud.answer_deadline_s, Deadline(seq=self.seq, kind="answer"))
            )
        inflight.timers.append(
            self.send_after(self.cloud.call_timeout_s, Deadline(seq=self.seq, kind="call"))
        )
        self.inflight = inflight

    def _cancel_relay_timers(self) -> None:
        for timer in self.relay_timers.values():
            timer.cancel()
        self.relay_timers.clear()

    def _take_inflight(self) -> Inflight | None:
        """End the call in flight; its timers go (measured: 17k stale timers alive at 500
        charge points before this, a third of what the garbage collector walked)."""
        inflight, self.inflight = self.inflight, None
        if inflight is not None:
            for timer in inflight.timers:
                timer.cancel()
        return inflight

    def _ready(self) -> None:
        self.ready = True
        self.retry_at = 0.0
        self.stats["last_error"] = None
        self._tell_cp(CloudLinkChanged(online=True))


def _tx_id(payload: dict[str, Any]) -> int | None:
    value = payload.get("transactionId")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
