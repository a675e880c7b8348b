"""What the parts of the CloudLink actor share: the session, the call in flight, helpers.

Split by concern: CloudLinkBase -> CloudLinkAnswers (what the cloud answers) -> CloudLink.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.broker_context import BrokerContext
from actors.messages import (
    CloudLinkChanged,
    CloudUnavailable,
    CloudVerdict,
    EnqueueCall,
    RelayCall,
)
from actors.outbox import Outbox, TxMap
from drivers.ocpp.connection import LinkError, OcppConnection
from supervisors.actor import Actor, ActorContext
from supervisors.timers import DeadlineTimer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamUp:
    session: int
    conn: OcppConnection
    previous_key: bool = False  # opened with the edge's previous key (the new one was refused)


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
    """The link's one deadline timer fired: whatever is due (a relay waited too long, the charge
    point stops waiting for the call in flight, the call has failed) is handled, and the timer is
    armed again for the next deadline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pump:
    pass


@dataclass(slots=True)
class Inflight:
    seq: int
    kind: str  # "relay" | "outbox" | "preamble"
    message_id: str
    action: str
    live: bool  # the charge point is waiting for this answer
    key: bytes = b""  # outbox key
    # what the charge point waits on (CloudLinkBase.live): the RelayCall, or the outbox key
    owner: object = None
    answer_at: float = math.inf  # monotonic: the waiting charge point is answered by the edge
    call_at: float = math.inf  # monotonic: the call has failed


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
        self.relay_due: dict[str, float] = {}  # queued relay -> monotonic time it stops waiting
        # RelayCall.queue relays not yet answered by the cloud: what to queue if they cannot be.
        self.queue_relays: dict[str, RelayCall] = {}
        self.deadline = DeadlineTimer()
        self.preamble: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        # The calls the charge point waits on, by message id: the RelayCall, or the outbox key of
        # an EnqueueCall. Its owner, not the id alone, says whose answer it is: a charge point that
        # reconnects may use an id again (unique per connection), and an answer to its earlier
        # call, still on its way, went to the new one (a StartTransaction's transactionId to a
        # later call). See _detach.
        self.live: dict[str, object] = {}
        self.retry_at = 0.0
        self.timeouts_in_a_row = 0
        self.connecting = False
        self.cp_left_at = -1e9
        self.new_key_refused = False  # the edge's own session: the cloud refused its rotated key
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

    def _verdict_to_cp(self, msg: CloudVerdict) -> None:
        """The cloud's verdict on a transaction the edge authorized, into the charge point
        actor's durable mailbox in this unit of work: the one that acknowledges the cloud's
        answer (the outbox item taken out, or the mint that joins it). Told in memory only, a
        crash before the charge point judged it lost it, and the transaction ran on."""
        ref = self.ctx.system.lookup(self.broker.cp_path(self.cp_id))
        if ref is None:
            self._tell_cp(msg)  # no such actor: a dead letter, as any message
        else:
            self.send_durable(ref, msg)

    def _owns(self, message_id: str, owner: object) -> bool:
        """Whether the charge point waits on this call (``owner``) for ``message_id``'s answer."""
        current = self.live.get(message_id)
        return current is not None and (
            current is owner or (isinstance(owner, bytes) and current == owner)
        )

    def _unavailable(self, message_id: str, reason: str, owner: object = None) -> None:
        """The charge point is answered by the edge: for ``owner``'s call only, if given."""
        if message_id in self.live and (owner is None or self._owns(message_id, owner)):
            del self.live[message_id]
            self._tell_cp(CloudUnavailable(message_id=message_id, reason=reason))

    def _relay_not_answered(self, message_id: str, reason: str) -> None:
        """A relay the cloud will not answer in time (or at all): the charge point is answered by
        the edge; a ``queue`` relay first goes into the durable outbox, and the charge point's
        answer waits for that commit (acknowledged means delivered or durable). If the cloud
        still answers a relay that was in flight, the queued copy reaches it again later: at
        least once."""
        relay = self.queue_relays.pop(message_id, None)
        if relay is None or not self._owns(message_id, relay):
            self._unavailable(message_id, reason)
            return
        del self.live[message_id]

        def committed() -> None:
            self._tell_cp(CloudUnavailable(message_id=message_id, reason=f"{reason}: queued"))
            self.ref.tell(Pump())

        self._queue_relay(relay, reason, committed)

    def _queue_relay(self, relay: RelayCall, reason: str, committed: Callable[[], None]) -> None:
        """A ``queue`` relay the cloud did not answer, into the durable outbox."""
        self.outbox.append(
            self,
            EnqueueCall(
                message_id=relay.message_id,
                action=relay.action,
                text=relay.text,
                received_utc=relay.received_utc,
                live=False,
            ),
            after_commit=committed,
        )
        audit(
            self,
            AuditKind.MESSAGE_BUFFERED,
            decision=relay.action,
            charge_point_id=self.cp_id,
            reason=f"{reason}: queued for replay, in order",
            inputs={
                "action": relay.action,
                "message_id": relay.message_id,
                "queue_depth": len(self.outbox),
            },
        )

    async def _send_up(self, text: str) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            await conn.send(text)
        except LinkError as exc:
            log.info("%s: upstream send failed: %s", self.cp_id, exc)

    def _start(
        self,
        kind: str,
        message_id: str,
        action: str,
        *,
        live: bool,
        key: bytes = b"",
        answer_at: float | None = None,
        owner: object = None,
    ) -> None:
        self.seq += 1
        now = time.monotonic()
        if answer_at is None:
            answer_at = now + self.cloud.answer_deadline_s
        inflight = Inflight(
            seq=self.seq,
            kind=kind,
            message_id=message_id,
            action=action,
            live=live,
            key=key,
            owner=owner if owner is not None else (key or None),
            answer_at=answer_at if live else math.inf,
            call_at=now + self.cloud.call_timeout_s,
        )
        self.inflight = inflight
        self._arm_deadline(min(inflight.answer_at, inflight.call_at))

    def _arm_deadline(self, at: float) -> None:
        """The link's one deadline timer (supervisors.timers), not three per relayed message."""
        self.deadline.arm(self, at, Deadline())

    def _next_deadline(self) -> float:
        at = min(self.relay_due.values(), default=math.inf)
        inflight = self.inflight
        if inflight is not None:
            at = min(at, inflight.answer_at, inflight.call_at)
        return at

    def _take_inflight(self) -> Inflight | None:
        """End the call in flight (its deadlines go with it)."""
        inflight, self.inflight = self.inflight, None
        return inflight

    def _ready(self) -> None:
        self.ready = True
        self.retry_at = 0.0
        self.stats["last_error"] = None
        self._tell_cp(CloudLinkChanged(online=True))


def _tx_id(payload: dict[str, Any]) -> int | None:
    value = payload.get("transactionId")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
