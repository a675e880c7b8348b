"""What every part of the ChargePoint actor shares: its state, its link, its helpers.

The actor is split by concern (ChargePointBase -> DownstreamCalls -> LimitsAndCaps ->
ChargePoint) so that each module stays one concept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from actors.broker_context import BrokerContext, Link
from actors.cp_downstream import DownQueue
from actors.cp_energy import EnergySide
from actors.cp_state import ChargePointState
from actors.messages import ConnectorsReported
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkError
from drivers.ocpp.framing import (
    Call,
)
from supervisors.actor import Actor, ActorContext
from supervisors.timers import DeadlineTimer

log = logging.getLogger(__name__)

V16, V201 = OcppVersion.V16, OcppVersion.V201
DOWN_TIMEOUT_S = 30.0
HEARTBEAT_INTERVAL_S = 300
RATE_PER_S = 20.0
RATE_BURST = 100.0


@dataclass(slots=True)
class Pending:
    """A charge point CALL waiting for the cloud or for a local decision."""

    call: Call
    stage: str  # "cloud" | "auth"
    started: float = field(default_factory=time.monotonic)
    # A 1.6 StartTransaction queued for the cloud, or a retry of one: the queued copy's
    # reference (EnqueueCall.start_ref; the transaction the edge mints is that copy's)
    queued_as: str | None = None
    # A transaction-related call: what a retry of it has the same (ocpp_rules.retry_key)
    retry_key: str | None = None
    # A call retried on the same connection while an earlier copy still waited: the earlier
    # copies' message ids, whose answers (the cloud's, the authorizer's) are its own
    stands_for: frozenset[str] = frozenset()
    # Stage "auth": the AuthorizeLocally's ask_ref; only the answer echoing it is this call's
    ask_ref: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DownCallTimedOut:
    """The charge point's one down-call timer fired: the call in flight has failed if its
    deadline has passed, else the timer is armed for it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StrictCheck:
    conn_no: int


# A charge point accepted on an earlier connection that has not spoken this long after it came
# back gets the edge's own calls anyway (LimitsAndCaps._quiet_reconnect). One that rebooted sends
# its BootNotification first thing, well within it.
QUIET_RECONNECT_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietReconnect:
    conn_no: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudCapDue:
    """A cloud TxProfile's value may change now (actors.cp_cloud_caps)."""

    at_utc: str


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ChargePointBase(Actor):
    state: ChargePointState

    def __init__(self, ctx: ActorContext, broker: BrokerContext, cp_id: str) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.cp_id = cp_id
        cfg = broker.charge_point(cp_id)
        self.auto_registered = cfg is None
        self.link: Link | None = None
        self.pending: dict[str, Pending] = {}
        self.down = DownQueue()
        self.down_due: tuple[str, float] = ("", math.inf)  # the call in flight, its deadline
        self.down_timer = DeadlineTimer()  # supervisors.timers: one, not one per call
        self.cloud_online = False
        self.cloud_heard = False  # whether the CloudLink has said up or down at all yet
        self.bucket = TokenBucket(RATE_PER_S, RATE_BURST)
        self.dirty = False
        energy = cfg.energy if cfg is not None else None
        self.energy = EnergySide(
            cp_id,
            reply_to=ctx.path,
            max_current_a=float(getattr(energy, "max_current_a", 32.0)),
            phases=int(getattr(energy, "phases", 3)),
            nominal_voltage_v=broker.nominal_voltage_v,
            default_limit_a=broker.default_limit_a,
        )
        self.energy_ready = False  # energy calls wait for the first answer on a connection
        self.heard_on = 0  # the last connection (conn_no) the charge point sent a CALL on
        # replace_key of a profile call -> the trigger of the batch it came from (ProfileWrites)
        self.profile_triggers: dict[str, int] = {}

    def _retried(self, call: Call, key: str | None) -> bool:
        """``call`` is a transaction message sent again on this connection while its first copy
        still waits (the charge point stopped waiting before answer_deadline_s): it takes that
        copy's place, and gets its answer, the cloud's or the edge's, whichever comes first.
        Queued again, the cloud got the message twice (two StartTransactions: two transactions,
        the first never stopped; two StopTransactions for one)."""
        if key is None:  # not a transaction message: nothing to scan for (every frame comes here)
            return False
        first = next((p for p in self.pending.values() if p.retry_key == key), None)
        if first is None:
            return False
        del self.pending[first.call.message_id]
        self.pending[call.message_id] = Pending(
            call=call,
            stage=first.stage,
            started=first.started,
            queued_as=first.queued_as,
            retry_key=key,
            stands_for=first.stands_for | {first.call.message_id},
            ask_ref=first.ask_ref,
        )
        return True

    def _pending_for(self, message_id: str, *, take: bool = False) -> Pending | None:
        """The call waiting for ``message_id``'s answer: its own, or a retry's that took an
        earlier copy's place (Pending.stands_for)."""
        key: str | None = message_id
        if message_id not in self.pending:
            key = next((k for k, p in self.pending.items() if message_id in p.stands_for), None)
        if key is None:
            return None
        return self.pending.pop(key) if take else self.pending[key]

    @property
    def version(self) -> OcppVersion:
        if self.link is not None:
            return self.link.version
        return OcppVersion(self.state.ocpp_version or "1.6")

    def _cloud(self, msg: object) -> None:
        if self.broker.config.cloud is not None:
            self.ctx.system.send(self.broker.cloud_path(self.cp_id), msg)

    def _cloud_once_committed(self, msg: object) -> None:
        """To the cloud link once what handling this message changed is committed (at once if
        it changed nothing): an answer the cloud reads as "kept" must not precede the record."""
        if self.broker.config.cloud is not None:
            self.send_once_committed(self.broker.cloud_path(self.cp_id), msg)

    def _cloud_ref(self) -> Any:
        ref = self.ctx.system.lookup(self.broker.cloud_path(self.cp_id))
        if ref is None:
            raise RuntimeError(f"no CloudLink actor for {self.cp_id}")
        return ref

    def _persist_state(self) -> None:
        self.persist("state", self.state.to_dict())
        self.dirty = False

    def _report_connectors(self, *, urgent: bool) -> None:
        """The connectors as the energy node counts them (ConnectorsReported, batched by the
        node's demand actor)."""
        if not self.broker.energy_managed:
            return
        reports = self.state.connector_reports(
            connected=self.link is not None,
            now=self.broker.now(),
            cloud_caps=self.energy.cloud_caps,
            phases=self.energy.phases,
        )
        self.ctx.system.send(
            f"{self.broker.node}/demand",
            ConnectorsReported(charge_point_id=self.cp_id, reports=tuple(reports), urgent=urgent),
        )

    async def _send(self, text: str) -> None:
        link = self.link
        if link is None:
            return
        try:
            await link.conn.send(text)
            self.state.count("frames_out")
        except LinkError as exc:
            log.info("%s: send failed (%s); the listener reports the close", self.cp_id, exc)

    def _strict(self) -> bool:
        cloud = self.broker.config.cloud
        return cloud is not None and cloud.mode == "strict"


def _id_token(payload: dict[str, Any]) -> str:
    if "idTag" in payload:
        return str(payload["idTag"])
    token = payload.get("idToken")
    if isinstance(token, dict):
        return f"{token.get('type', 'Central')}:{token.get('idToken', '')}"
    return ""
