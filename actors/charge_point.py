"""The ChargePoint actor: one per charge point, the edge's side of its websocket.

It decodes and validates every frame, keeps the state cache (:mod:`actors.cp_state`), and decides:
transaction-related calls go durably into the CloudLink's ordered outbox before anything is
answered; the rest are relayed while the cloud is there and answered by the edge while it is not
(BootNotification, Heartbeat, StatusNotification, DataTransfer, Authorize through the local rules,
StartTransaction with an edge-minted id persisted before the answer). Calls towards the charge
point (from the cloud, or the edge's own, e.g. charging profiles) go one at a time; a call for a
charge point that is not connected is answered with a CALLERROR at once, never silence.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.broker_context import BrokerContext, Link
from actors.cp_downstream import DownCall, DownQueue
from actors.cp_energy import Answer, EnergySide
from actors.cp_state import ChargePointState
from actors.messages import (
    AnswerToCloud,
    ApplyLimit,
    AuthorizedLocally,
    AuthorizeLocally,
    CallChargePoint,
    CallFromCloud,
    ChargePointAnswered,
    ChargePointConnected,
    ChargePointDisconnected,
    ChargePointLinkState,
    CloudAnswered,
    CloudAuthorized,
    CloudLinkChanged,
    CloudUnavailable,
    CloudVerdict,
    ConnectorsReported,
    EdgeTransactionMinted,
    EnqueueCall,
    FrameFromChargePoint,
    LateDecision,
    LatestForNewSession,
    LateVerdict,
    RelayCall,
    TransactionMapped,
)
from actors.ocpp_rules import (
    EMPTY_ANSWER_ACTIONS,
    Delivery,
    EdgeIdRange,
    IdTokenVerdict,
    authorize_answer,
    boot_notification_answer,
    data_transfer_answer,
    heartbeat_answer,
    id_token_info,
    next_edge_transaction_id,
    offline_policy,
    start_dedup_key,
    start_transaction_answer,
)
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkError
from drivers.ocpp.framing import (
    Call,
    CallError,
    CallResult,
    FrameError,
    call_error_text,
    call_result_text,
    call_text,
    parse_frame,
)
from drivers.ocpp.validation import validate_call
from supervisors.actor import Actor, ActorContext

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


@dataclass(frozen=True, slots=True, kw_only=True)
class DownCallTimedOut:
    message_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StrictCheck:
    conn_no: int


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


class ChargePoint(Actor):
    def __init__(self, ctx: ActorContext, broker: BrokerContext, cp_id: str) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.cp_id = cp_id
        cfg = broker.charge_point(cp_id)
        self.auto_registered = cfg is None
        self.link: Link | None = None
        self.pending: dict[str, Pending] = {}
        self.down = DownQueue()
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
        )
        self.energy_ready = False  # energy calls wait for the first answer on a connection

    # -- lifecycle ------------------------------------------------------------------------------
    async def started(self) -> None:
        self.state = ChargePointState(self.cp_id, self.load("state"))
        self.link = self.broker.links.get(self.cp_id)  # a connection outlives our restarts
        if self.link is not None:
            self.state.ocpp_version = self.link.version.value

    def report(self) -> dict[str, Any]:
        link = self.link
        return {
            "connected": link is not None,
            "remote": None if link is None else link.conn.remote_address,
            "rtt_ms": None if link is None else round(link.conn.latency_s * 1000, 2),
            "cloud_online": self.cloud_online,
            "pending_calls": len(self.pending),
            "down_queue": len(self.down),
            "energy": self.energy.report(),
            **self.state.summary(),
        }

    @property
    def version(self) -> OcppVersion:
        if self.link is not None:
            return self.link.version
        return OcppVersion(self.state.ocpp_version or "1.6")

    def _cloud(self, msg: object) -> None:
        if self.broker.config.cloud is not None:
            self.ctx.system.send(self.broker.cloud_path(self.cp_id), msg)

    def _persist_state(self) -> None:
        self.persist("state", self.state.to_dict())
        self.dirty = False

    # -- messages -------------------------------------------------------------------------------
    async def receive(self, msg: object) -> Any:
        if isinstance(msg, FrameFromChargePoint):
            if self.link is not None and msg.conn_no == self.link.conn_no:
                await self._frame(msg.text)
        elif isinstance(msg, CloudAnswered):
            await self._cloud_answered(msg)
        elif isinstance(msg, CloudUnavailable):
            pending = self.pending.get(msg.message_id)
            if pending is not None and pending.stage == "cloud":
                await self._answer_locally(pending, msg.reason)
        elif isinstance(msg, AuthorizedLocally):
            await self._authorized(msg)
        elif isinstance(msg, CallFromCloud):
            await self._enqueue_down(
                DownCall(
                    origin="cloud",
                    message_id=msg.message_id,
                    action=msg.action,
                    text=msg.text,
                    session=msg.session,
                )
            )
        elif isinstance(msg, CallChargePoint):
            await self._edge_call(msg)
        elif isinstance(msg, StrictCheck):
            await self._strict_check(msg)
        elif isinstance(msg, DownCallTimedOut):
            await self._down_timed_out(msg.message_id)
        elif isinstance(msg, ChargePointConnected):
            await self._connected(msg)
        elif isinstance(msg, ChargePointDisconnected):
            await self._disconnected(msg)
        elif isinstance(msg, CloudLinkChanged):
            await self._cloud_changed(msg)
        elif isinstance(msg, TransactionMapped):
            self.state.mapped(msg.edge_id, msg.cloud_id)
            self._persist_state()
        elif isinstance(msg, ApplyLimit):
            await self._apply_limit(msg)
        elif isinstance(msg, ChargePointAnswered):
            await self._edge_answered(msg)
        elif isinstance(msg, CloudVerdict):
            self._cloud_verdict(msg)
        elif isinstance(msg, LateDecision):
            await self._late_decision(msg)
        else:
            return await super().receive(msg)
        if self.dirty:
            self._persist_state()
        return None

    # -- the link ---------------------------------------------------------------------------------
    async def _connected(self, msg: ChargePointConnected) -> None:
        link = self.broker.links.get(self.cp_id)
        if link is None or link.conn_no != msg.conn_no:
            return  # already replaced or gone
        old = self.link
        if old is not None and old.conn_no != link.conn_no:
            await old.conn.close(1000, "replaced by a newer connection")
            self.state.event("replaced", self.broker.now(), old.conn.remote_address)
        self.link = link
        self.energy_ready = False
        self.state.ocpp_version = link.version.value
        self.state.event("connected", self.broker.now(), f"{msg.remote_address} {msg.ocpp_version}")
        self._cloud(ChargePointLinkState(connected=True, version=link.version.value))
        self.dirty = True
        if self._strict() and not self.cloud_online:
            # Strict mode (2.0.1 Local Controller rule: with no cloud, the charge point queues by
            # itself). The session may still be coming up: give it one connect attempt; a failed
            # attempt is reported at once (CloudLinkChanged) and closes the socket then.
            cloud = self.broker.config.cloud
            grace = (cloud.open_timeout_s if cloud is not None else 10.0) + 1.0
            self.send_after(0.0 if self.cloud_heard else grace, StrictCheck(conn_no=link.conn_no))

        await self._pump_down()

    async def _strict_check(self, msg: StrictCheck) -> None:
        link = self.link
        if link is not None and link.conn_no == msg.conn_no and not self.cloud_online:
            log.info(
                "%s: cloud not reachable (strict mode): closing the charge point's socket",
                self.cp_id,
            )
            await link.conn.close(1013, "cloud unreachable, try again later")

    async def _disconnected(self, msg: ChargePointDisconnected) -> None:
        if self.link is None or self.link.conn_no != msg.conn_no:
            return
        self.link = None
        self.state.event("disconnected", self.broker.now(), f"code {msg.code} {msg.reason}".strip())
        self._cloud(ChargePointLinkState(connected=False, version=self.state.ocpp_version or ""))
        self.dirty = True
        self.pending.clear()  # the charge point will not read answers to calls on a dead socket
        self._report_connectors(urgent=True)
        for call in self.down.drain():
            self._down_failed(call, "charge point disconnected")
        if msg.code == 1009:
            audit(
                self,
                AuditKind.FRAME_REJECTED,
                decision="closed 1009",
                charge_point_id=self.cp_id,
                reason="frame larger than the configured limit",
                inputs={"close_code": 1009},
            )

    async def _cloud_changed(self, msg: CloudLinkChanged) -> None:
        self.cloud_online = msg.online
        self.cloud_heard = True
        if not msg.online and self._strict() and self.link is not None:
            log.info("%s: cloud lost (strict mode): closing the charge point's socket", self.cp_id)
            await self.link.conn.close(1013, "cloud unreachable, try again later")

    def _strict(self) -> bool:
        cloud = self.broker.config.cloud
        return cloud is not None and cloud.mode == "strict"

    async def _send(self, text: str) -> None:
        link = self.link
        if link is None:
            return
        try:
            await link.conn.send(text)
            self.state.count("frames_out")
        except LinkError as exc:
            log.info("%s: send failed (%s); the listener reports the close", self.cp_id, exc)

    async def _answered_call(self, call: Call) -> None:
        """After the charge point got an answer: the first one on a connection opens the way for
        the edge's own calls (never before its BootNotification is answered)."""
        if not self.broker.energy_managed:
            return
        if call.action == "BootNotification":
            if self.state.registration not in (None, "Accepted"):
                return
            calls = self.energy.booted(self.broker.now()) if self.energy_ready else []
            if not self.energy_ready:
                self.energy_ready = True
                calls = self.energy.connected(self.version)
        elif not self.energy_ready:
            self.energy_ready = True
            calls = self.energy.connected(self.version)
        else:
            calls = []
        for c in calls:
            await self._edge_call(c)
        if call.action in (
            "StatusNotification",
            "MeterValues",
            "StartTransaction",
            "StopTransaction",
            "TransactionEvent",
        ):
            self._report_connectors(
                urgent=call.action != "MeterValues" and call.action != "StatusNotification"
            )

    def _report_connectors(self, *, urgent: bool) -> None:
        if not self.broker.energy_managed:
            return
        reports = self.state.connector_reports(
            connected=self.link is not None, now=self.broker.now()
        )
        self.ctx.system.send(
            f"{self.broker.node}/demand",
            ConnectorsReported(charge_point_id=self.cp_id, reports=tuple(reports), urgent=urgent),
        )

    async def _apply_limit(self, msg: ApplyLimit) -> None:
        connector = msg.limit.connector_id
        tx_id = self._running_tx(connector)
        limit = msg.limit
        if tx_id is not None and self.state.transactions[tx_id].get("energy_blocked"):
            limit = replace(
                limit, limit_a=0.0, binding_source="energy cap", reason="energy cap reached"
            )
        if self.link is None:
            self.energy.limits[connector] = limit
            return
        for c in self.energy.limit(limit, msg.default_limit_a, tx_id, self.broker.now()):
            await self._edge_call(c)

    def _running_tx(self, connector: int) -> str | None:
        for tx_id, tx in self.state.transactions.items():
            if tx.get("state") == "running" and str(tx.get("connector", "")).split(":")[0] == str(
                connector
            ):
                return tx_id
        return None

    async def _edge_answered(self, msg: ChargePointAnswered) -> None:
        answer = Answer(tag=msg.tag, ok=msg.ok, payload=msg.payload, error=msg.error)
        retries, outcome, delay = self.energy.answered(answer, self.broker.now())
        for c in retries:
            if delay > 0:
                self.send_after(delay, c)  # comes back as a CallChargePoint to this actor
            else:
                await self._edge_call(c)

        if outcome is not None:
            self.ctx.system.send(f"{self.broker.node}/profiles", outcome)

    async def _started_by(self, call: Call, answer: dict[str, Any]) -> None:
        """A transaction the charge point now knows the id of: its limit can go as a TxProfile."""
        if call.action == "StartTransaction" and isinstance(answer.get("transactionId"), int):
            await self._transaction_started(
                int(call.payload.get("connectorId", 0)), str(answer["transactionId"])
            )
        elif call.action == "TransactionEvent" and call.payload.get("eventType") == "Started":
            evse = call.payload.get("evse") or {}
            info = call.payload.get("transactionInfo") or {}
            if "id" in evse and "transactionId" in info:
                await self._transaction_started(int(evse["id"]), str(info["transactionId"]))

    async def _transaction_started(self, connector: int, tx_id: str) -> None:
        for c in self.energy.transaction_started(connector, tx_id):
            await self._edge_call(c)

    # -- frames from the charge point -------------------------------------------------------------
    async def _frame(self, text: str) -> None:
        self.state.count("frames_in")
        version = self.version
        try:
            frame = parse_frame(text)
            if isinstance(frame, Call):
                validate_call(frame, version)
        except FrameError as err:
            await self._rejected(err, text, version)
            return
        if isinstance(frame, Call):
            if not self.bucket.take():
                self.state.count("rate_limited")
                await self._send(
                    call_error_text(frame.message_id, "GenericError", "too many calls: slow down")
                )
                if self.state.counters.get("rate_limited", 0) % 100 == 1:
                    audit(
                        self,
                        AuditKind.FRAME_REJECTED,
                        decision="rate limited",
                        charge_point_id=self.cp_id,
                        reason=f"more than {RATE_PER_S:g} calls/s sustained",
                        inputs={"action": frame.action},
                    )
                return
            await self._call(frame)
        else:
            await self._down_answered(frame)

    async def _rejected(self, err: FrameError, text: str, version: OcppVersion) -> None:
        self.state.count("frames_rejected")
        reply = err.reply(version)
        if reply is not None:
            await self._send(reply)
        log.warning("%s: frame rejected (%s): %s", self.cp_id, type(err).__name__, err)
        audit(
            self,
            AuditKind.FRAME_REJECTED,
            decision="answered CALLERROR" if reply else "ignored",
            charge_point_id=self.cp_id,
            reason=str(err)[:300],
            inputs={
                "error": type(err).__name__,
                "frame_head": text[:120],
                "frame_bytes": len(text),
            },
        )
        self.dirty = True

    async def _call(self, call: Call) -> None:
        now = self.broker.now()
        if self.state.on_call(call.action, call.payload, now):
            self.dirty = True
        if call.action in ("MeterValues", "TransactionEvent"):
            await self._check_energy_caps()
        version = self.version
        if call.action == "StartTransaction" and version is V16:
            known = self.state.start_keys.get(start_dedup_key(call.payload).text())
            if known is not None:
                # A retried start we already answered: same transaction, never a second one.
                tx = self.state.transactions.get(known, {})
                await self._send(
                    call_result_text(
                        call.message_id,
                        {
                            "transactionId": int(known),
                            "idTagInfo": tx.get("id_tag_info", {"status": "Accepted"}),
                        },
                    )
                )
                return
        policy = offline_policy(version, call.action, call.payload)
        if policy.delivery is Delivery.LATEST:
            self._cloud(
                LatestForNewSession(
                    key="/".join(map(str, policy.coalesce_key)),
                    action=call.action,
                    payload_json=orjson.dumps(call.payload).decode(),
                )
            )
        self.pending[call.message_id] = Pending(call=call, stage="cloud")
        if self.broker.config.cloud is None:
            # A site without a cloud: the edge is the central system for its charge points.
            await self._answer_locally(self.pending[call.message_id], "no cloud configured")
        elif policy.delivery in (Delivery.TRANSACTION, Delivery.QUEUE):
            self.send_durable(
                self._cloud_ref(),
                EnqueueCall(
                    message_id=call.message_id,
                    action=call.action,
                    text=call.raw,
                    received_utc=now.isoformat(timespec="milliseconds"),
                ),
            )
        else:
            # The CloudLink knows best whether the cloud can answer (up, connecting, or away).
            self._cloud(RelayCall(message_id=call.message_id, action=call.action, text=call.raw))

    def _cloud_ref(self) -> Any:
        ref = self.ctx.system.lookup(self.broker.cloud_path(self.cp_id))
        if ref is None:
            raise RuntimeError(f"no CloudLink actor for {self.cp_id}")
        return ref

    async def _cloud_answered(self, msg: CloudAnswered) -> None:
        pending = self.pending.pop(msg.message_id, None)
        if pending is None:
            return
        call = pending.call
        try:
            answer = parse_frame(msg.text)
        except FrameError:
            answer = None
        if isinstance(answer, CallResult):
            if call.action == "StartTransaction" and self.version is V16:
                tx_id = answer.payload.get("transactionId")
                if isinstance(tx_id, int):
                    self.state.start_transaction(
                        transaction_id=tx_id,
                        payload=call.payload,
                        message_id=call.message_id,
                        edge_minted=False,
                        id_tag_info=answer.payload.get("idTagInfo", {}),
                        start_key=start_dedup_key(call.payload).text(),
                    )
                    self.dirty = True
            elif call.action == "BootNotification":
                self.state.registration = answer.payload.get("status")
                self.dirty = True
            elif call.action == "Authorize":
                info = answer.payload.get("idTagInfo") or answer.payload.get("idTokenInfo")
                if isinstance(info, dict):
                    self.ctx.system.send(
                        f"{self.broker.node}/authorizer",
                        CloudAuthorized(
                            charge_point_id=self.cp_id,
                            id_token=_id_token(call.payload),
                            id_tag_info=info,
                        ),
                    )
        await self._send(msg.text)
        await self._answered_call(call)
        if isinstance(answer, CallResult):
            await self._started_by(call, answer.payload)

    # -- the edge's own answers --------------------------------------------------------------------
    async def _answer_locally(self, pending: Pending, reason: str) -> None:
        call = pending.call
        version = self.version
        now = self.broker.now()
        if call.action in ("Authorize", "StartTransaction") or (
            call.action == "TransactionEvent"
            and call.payload.get("idToken")
            and call.payload.get("eventType") == "Started"
        ):
            pending.stage = "auth"
            self.ctx.system.send(
                f"{self.broker.node}/authorizer",
                AuthorizeLocally(
                    charge_point_id=self.cp_id,
                    message_id=call.message_id,
                    id_token=_id_token(call.payload),
                    reply_to=self.path,
                ),
            )
            return
        self.pending.pop(call.message_id, None)
        if call.action == "BootNotification":
            payload = boot_notification_answer(now, interval_s=HEARTBEAT_INTERVAL_S)
            self.state.registration = "Accepted"
            self.dirty = True
        elif call.action == "Heartbeat":
            payload = heartbeat_answer(now)
        elif call.action == "DataTransfer":
            payload = data_transfer_answer("UnknownVendorId")
        elif call.action in EMPTY_ANSWER_ACTIONS[version]:
            payload = {}
        else:
            await self._send(
                call_error_text(
                    call.message_id, "NotSupported", f"the cloud is not reachable ({reason})"
                )
            )
            return
        await self._send(call_result_text(call.message_id, payload))
        await self._answered_call(call)
        await self._started_by(call, payload)

    async def _authorized(self, msg: AuthorizedLocally) -> None:
        pending = self.pending.pop(msg.message_id, None)
        if pending is None:
            return
        call = pending.call
        version = self.version
        verdict = IdTokenVerdict(
            status=msg.status
            if msg.status in ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
            or version is V201
            else "Invalid",
            expiry_utc=None,
            parent_id_tag=msg.parent_id,
        )
        if call.action == "Authorize":
            await self._send(call_result_text(call.message_id, authorize_answer(version, verdict)))
            await self._answered_call(call)
            return
        if call.action == "TransactionEvent":
            await self._send(call_result_text(call.message_id, id_token_info(version, verdict)))
            await self._answered_call(call)
            await self._started_by(call, {})
            return
        # 1.6 StartTransaction answered by the edge: mint, persist, tell the cloud link, commit,
        # and only then answer (the transaction must be durable before the charge point uses it).
        cloud = self.broker.config.cloud
        id_range = cloud.edge_transaction_ids if cloud is not None else EdgeIdRange()
        edge_id = next_edge_transaction_id(
            self.state.edge_tx_hwm, id_range, self.state.running_edge_ids()
        )
        answer = start_transaction_answer(edge_id, verdict)
        self.state.start_transaction(
            transaction_id=edge_id,
            payload=call.payload,
            message_id=call.message_id,
            edge_minted=True,
            id_tag_info=answer["idTagInfo"],
            start_key=start_dedup_key(call.payload).text(),
        )
        tx = self.state.transactions[str(edge_id)]
        tx["local_path"] = msg.path
        if msg.energy_cap_wh is not None:
            tx["energy_cap_wh"] = msg.energy_cap_wh
        self.send_durable(
            self._cloud_ref(), EdgeTransactionMinted(message_id=call.message_id, edge_id=edge_id)
        )
        audit(
            self,
            AuditKind.AUTHORIZATION,
            decision=msg.status,
            charge_point_id=self.cp_id,
            reason=f"StartTransaction answered by the edge ({msg.reason})",
            inputs={
                "path": msg.path,
                "edge_transaction_id": edge_id,
                "connector_id": call.payload.get("connectorId"),
            },
        )
        self._persist_state()
        await self.commit()
        await self._send(call_result_text(call.message_id, answer))
        await self._answered_call(call)
        await self._transaction_started(int(call.payload.get("connectorId", 0)), str(edge_id))

    # -- transactions the cloud judges later, and energy caps -----------------------------------
    def _cloud_verdict(self, msg: CloudVerdict) -> None:
        tx = self.state.transactions.get(str(msg.edge_id))
        if tx is None:
            return
        tx["cloud_status"] = msg.status
        self.dirty = True
        if msg.status == "Accepted" and tx.get("energy_cap_wh") is None:
            return
        self.ctx.system.send(
            f"{self.broker.node}/authorizer",
            LateVerdict(
                charge_point_id=self.cp_id,
                transaction_id=str(msg.edge_id),
                local_path=str(tx.get("local_path", "fallback:accept")),
                local_energy_cap_wh=tx.get("energy_cap_wh"),
                cloud_status=msg.status,
                running=tx.get("state") == "running",
                energy_delivered_wh=self._delivered_wh(tx),
                reply_to=self.path,
            ),
        )

    def _delivered_wh(self, tx: dict[str, Any]) -> float:
        meter = self.state.meter.get(str(tx.get("connector")), {})
        energy, start = meter.get("energy_wh"), tx.get("meter_start_wh")
        if not isinstance(energy, int | float) or not isinstance(start, int | float):
            return 0.0
        return max(0.0, float(energy) - float(start))

    async def _late_decision(self, msg: LateDecision) -> None:
        tx = self.state.transactions.get(msg.transaction_id)
        if tx is None:
            return
        self.dirty = True
        if msg.action == "stop":
            await self._edge_call(
                CallChargePoint(
                    action="RemoteStopTransaction",
                    payload={"transactionId": int(msg.transaction_id)},
                    tag="late-rejection",
                )
            )
        elif msg.action in ("cap_energy", "let_run") and msg.energy_cap_wh is not None:
            tx["energy_cap_wh"] = msg.energy_cap_wh
            await self._check_energy_caps()
        elif msg.action == "suspend_energy":
            tx["energy_cap_wh"] = msg.energy_cap_wh or 0
            tx["energy_blocked"] = True
        elif msg.action == "lift_cap":
            tx.pop("energy_cap_wh", None)
            tx.pop("energy_blocked", None)

    async def _check_energy_caps(self) -> None:
        for tx_id, tx in self.state.transactions.items():
            cap = tx.get("energy_cap_wh")
            if tx.get("state") != "running" or cap is None or tx.get("energy_blocked"):
                continue
            delivered = self._delivered_wh(tx)
            if delivered >= float(cap):
                # No more energy: the energy node is told (ConnectorReport) and limits it to 0 A.
                tx["energy_blocked"] = True
                self.dirty = True
                audit(
                    self,
                    AuditKind.LIMIT,
                    decision="0 A",
                    charge_point_id=self.cp_id,
                    reason=f"energy cap of {cap:g} Wh reached ({delivered:g} Wh delivered)",
                    inputs={"limit_a": 0, "binding_source": "energy cap", "transaction_id": tx_id},
                )

    # -- calls towards the charge point -----------------------------------------------------------
    async def _edge_call(self, msg: CallChargePoint) -> None:
        store = self.ctx.system.require_store()
        message_id = f"edge-{store.next_id():x}"
        call = DownCall(
            origin="edge",
            message_id=message_id,
            action=msg.action,
            text=call_text(message_id, msg.action, msg.payload),
            reply_to=msg.reply_to,
            tag=msg.tag,
            replace_key=msg.replace_key,
        )
        await self._enqueue_down(call)

    async def _enqueue_down(self, call: DownCall) -> None:
        if self.link is None:
            self._down_failed(call, "charge point not connected")
            return
        self.down.add(call)
        await self._pump_down()

    async def _pump_down(self) -> None:
        if self.link is None:
            return
        call = self.down.next()
        if call is None:
            return
        self.send_after(DOWN_TIMEOUT_S, DownCallTimedOut(message_id=call.message_id))
        await self._send(call.text)

    async def _down_answered(self, frame: CallResult | CallError) -> None:
        call = self.down.complete(frame.message_id)
        if call is None:
            log.info("%s: answer to unknown call %s dropped", self.cp_id, frame.message_id)
            return
        if call.origin == "cloud":
            self._cloud(AnswerToCloud(session=call.session, text=frame.raw))
        elif call.reply_to:
            if isinstance(frame, CallResult):
                ok, payload, error = True, frame.payload, ""
            else:
                ok, payload, error = False, {}, f"{frame.code}: {frame.description}"
            self.ctx.system.send(
                call.reply_to,
                ChargePointAnswered(
                    charge_point_id=self.cp_id,
                    action=call.action,
                    tag=call.tag,
                    ok=ok,
                    payload=payload,
                    error=error,
                ),
            )
        await self._pump_down()

    async def _down_timed_out(self, message_id: str) -> None:
        call = self.down.complete(message_id)
        if call is None:
            return
        self._down_failed(call, f"no answer within {DOWN_TIMEOUT_S:g} s")
        await self._pump_down()

    def _down_failed(self, call: DownCall, reason: str) -> None:
        if call.origin == "cloud":
            code = "GenericError"
            self._cloud(
                AnswerToCloud(
                    session=call.session, text=call_error_text(call.message_id, code, reason)
                )
            )
        elif call.reply_to:
            self.ctx.system.send(
                call.reply_to,
                ChargePointAnswered(
                    charge_point_id=self.cp_id,
                    action=call.action,
                    tag=call.tag,
                    ok=False,
                    payload={},
                    error=reason,
                ),
            )


def _id_token(payload: dict[str, Any]) -> str:
    if "idTag" in payload:
        return str(payload["idTag"])
    token = payload.get("idToken")
    if isinstance(token, dict):
        return f"{token.get('type', 'Central')}:{token.get('idToken', '')}"
    return ""
