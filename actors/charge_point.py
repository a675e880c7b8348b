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
from typing import Any

import orjson

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cp_base import (
    HEARTBEAT_INTERVAL_S,
    QUIET_RECONNECT_S,
    RATE_PER_S,
    V16,
    V201,
    CloudCapDue,
    DownCallTimedOut,
    Pending,
    QuietReconnect,
    StrictCheck,
    _id_token,
)
from actors.cp_downstream import DownCall
from actors.cp_energy import TxRetry
from actors.cp_limits import LimitsAndCaps
from actors.cp_state import ChargePointState
from actors.messages import (
    ApplyLimit,
    AuthorizedLocally,
    AuthorizeLocally,
    CacheClearedAtChargePoint,
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
    EdgeTransactionMinted,
    EnqueueCall,
    FrameFromChargePoint,
    LateDecision,
    LatestForNewSession,
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
    kept_across_links,
    next_edge_transaction_id,
    offline_policy,
    retry_key,
    start_dedup_key,
    start_transaction_answer,
    transaction_id_of,
)
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import (
    Call,
    CallResult,
    FrameError,
    call_error_text,
    call_result_text,
    parse_frame,
)
from drivers.ocpp.validation import validate_call

log = logging.getLogger(__name__)


class ChargePoint(LimitsAndCaps):
    # The cloud's late verdict and the authorizer's decision on it (actors.cp_limits): durable
    # from the cloud's acknowledged answer to the decision kept with the transaction.
    DURABLE = frozenset({CloudVerdict, LateDecision})

    async def started(self) -> None:
        self.state = ChargePointState(self.cp_id, self.load("state"))
        self.link = self.broker.links.get(self.cp_id)  # a connection outlives our restarts
        if self.link is not None:
            self.state.ocpp_version = self.link.version.value
        if self.broker.energy_managed:
            await self._cloud_caps_again(force=False, send=False, restored=True)
            if self.link is not None and self.state.registration == "Accepted":
                # Restarted under a live connection: what the last incarnation learned of the
                # charge point (its version, its stack level) is gone, and a limit sent before
                # it is learned again would go as 1.6 at level 0: as on a reconnect, learn it
                # and install the station's profiles (the TxProfiles follow the energy node's
                # next limits, or its full batch).
                self.energy_ready = True
                for c in self.energy.connected(self.version):
                    await self._edge_call(c)
        if self.link is not None:
            # Restarted under a live connection: a stop the cloud's late rejection asked for
            # may have waited in the last incarnation's queue of calls (lost with it).
            await self._late_stops_again()

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
            "key_rotation": self._key_status(),
            **self.state.summary(),
        }

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, FrameFromChargePoint):
            if self.link is not None and msg.conn_no == self.link.conn_no:
                await self._frame(msg.text)
        elif isinstance(msg, ApplyLimit):  # early: a profile batch brings one to every CP at once
            await self._apply_limit(msg)
        elif isinstance(msg, CloudAnswered):
            await self._cloud_answered(msg)
        elif isinstance(msg, CloudUnavailable):
            pending = self._pending_for(msg.message_id)
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
        elif isinstance(msg, TxRetry):
            await self._tx_retry(msg)
        elif isinstance(msg, StrictCheck):
            await self._strict_check(msg)
        elif isinstance(msg, QuietReconnect):
            await self._quiet_reconnect(msg)
        elif isinstance(msg, CloudCapDue):
            await self._cloud_cap_due(msg)
        elif isinstance(msg, DownCallTimedOut):
            await self._down_deadline()
        elif isinstance(msg, ChargePointConnected):
            await self._connected(msg)
        elif isinstance(msg, ChargePointDisconnected):
            await self._disconnected(msg)
        elif isinstance(msg, CloudLinkChanged):
            await self._cloud_changed(msg)
        elif isinstance(msg, TransactionMapped):
            self.state.mapped(msg.edge_id, msg.cloud_id)
            self._persist_state()
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

    async def _connected(self, msg: ChargePointConnected) -> None:
        link = self.broker.links.get(self.cp_id)
        if link is None or link.conn_no != msg.conn_no:
            return  # already replaced or gone
        old = self.link
        if old is not None and old.conn_no != link.conn_no:
            await old.conn.close(1000, "replaced by a newer connection")
            self.state.event("replaced", self.broker.now(), old.conn.remote_address)
        self.link = link
        if link.conn.key_used == "password":
            self._new_key_used()
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
        if self.broker.energy_managed and self.state.registration == "Accepted":
            self.send_after(QUIET_RECONNECT_S, QuietReconnect(conn_no=link.conn_no))
        await self._late_stops_again()
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
        self.profile_triggers.clear()  # its queued profile calls fail below: nothing is written
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
        if self.link is not None:
            self.heard_on = self.link.conn_no
        version = self.version
        key = retry_key(version, call.action, call.payload)
        if self._retried(call, key) or await self._sent_before(call, key):
            # The same message again: its first copy told the state all it says (again, a start
            # or a Started event forgot the sample the new car sent since, a sample overwrote a
            # newer one).
            return
        now = self.broker.now()
        if self.state.on_call(call.action, call.payload, now):
            self.dirty = True
        if call.action in ("MeterValues", "TransactionEvent"):
            await self._check_energy_caps()
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
        self.pending[call.message_id] = Pending(call=call, stage="cloud", retry_key=key)
        if self.broker.config.cloud is None:
            # A site without a cloud: the edge is the central system for its charge points.
            await self._answer_locally(self.pending[call.message_id], "no cloud configured")
        elif policy.delivery is Delivery.QUEUE:
            # Live while the cloud answers, durable when it does not (RelayCall.queue): measured
            # at 500 charge points, the durable hand-over of every MeterValues without a
            # transaction was 0.4 ms of broker CPU each and most of the round trip's p99.
            self._cloud(
                RelayCall(
                    message_id=call.message_id,
                    action=call.action,
                    text=call.raw,
                    queue=True,
                    received_utc=now.isoformat(timespec="milliseconds"),
                )
            )
        elif policy.delivery is Delivery.TRANSACTION:
            start_ref = ""
            if call.action == "StartTransaction" and version is V16:
                # Its message id may come again on a later connection: the copy's own name.
                start_ref = f"{call.message_id}@{self.ctx.system.require_store().next_id():x}"
                self.pending[call.message_id].queued_as = start_ref
            if key is not None and kept_across_links(version, call.action, call.payload):
                self.state.queued(key, start_ref or call.message_id, _transaction_of(call))
                self.dirty = True
            self.send_durable(
                self._cloud_ref(),
                EnqueueCall(
                    message_id=call.message_id,
                    action=call.action,
                    text=call.raw,
                    received_utc=now.isoformat(timespec="milliseconds"),
                    start_ref=start_ref,
                ),
            )
        else:
            # The CloudLink knows best whether the cloud can answer (up, connecting, or away).
            self._cloud(RelayCall(message_id=call.message_id, action=call.action, text=call.raw))

    async def _sent_before(self, call: Call, key: str | None) -> bool:
        """``call`` is a transaction message queued for the cloud before, whose answer the charge
        point did not read (its link dropped, the edge restarted, or it stopped waiting): the
        copy queued is that message (queued again, the cloud got two stops for one session, two
        events with one seqNo, two starts: two transactions, the first never stopped). The
        retry gets the cloud's answer to it if one came, else the edge's, at once, as while the
        cloud is away (a 1.6 start: the queued copy's transaction, its id minted for it)."""
        record = None if key is None else self.state.sent.get(key)
        if record is None:
            return False
        answer = record.get("answer")
        if isinstance(answer, dict):
            await self._send(call_result_text(call.message_id, answer))
            await self._answered_call(call)
            await self._started_by(call, answer)
            return True
        start = call.action == "StartTransaction" and self.version is V16
        pending = Pending(
            call=call,
            stage="cloud",
            queued_as=str(record["ref"]) if start else None,
            retry_key=key,
        )
        self.pending[call.message_id] = pending
        await self._answer_locally(pending, f"a retried {call.action}, its first copy queued")
        return True

    async def _cloud_call_done(self, call: DownCall, answer: dict[str, Any]) -> None:
        if call.action == "ClearCache" and answer.get("status") == "Accepted":
            # The edge answers this charge point offline from its own cache: the cloud that
            # cleared the charge point's (a tag revoked, say) must not see it accepted offline
            # from the edge's. Durable, committed before the cloud gets the Accepted.
            authorizer = self.ctx.system.lookup(f"{self.broker.node}/authorizer")
            if authorizer is None:
                raise RuntimeError("no authorizer in this node")  # the cloud is not answered
            self.send_durable(
                authorizer,
                CacheClearedAtChargePoint(charge_point_id=self.cp_id, message_id=call.message_id),
            )
        await super()._cloud_call_done(call, answer)

    async def _cloud_answered(self, msg: CloudAnswered) -> None:
        pending = self._pending_for(msg.message_id, take=True)
        if pending is None:
            return
        call = pending.call
        text = msg.text
        try:
            answer = parse_frame(text)
        except FrameError:
            answer = None
        if answer is not None and call.message_id != msg.message_id:
            # The answer to an earlier copy of a retried call: the retry's now.
            frame = orjson.loads(text)
            frame[1] = call.message_id
            text = orjson.dumps(frame).decode()
        if isinstance(answer, CallResult):
            if call.action == "StartTransaction" and self.version is V16:
                self.state.sent.pop(pending.retry_key or "", None)
                self.dirty = True
                tx_id = answer.payload.get("transactionId")
                if isinstance(tx_id, int):
                    self.state.start_transaction(
                        transaction_id=tx_id,
                        payload=call.payload,
                        message_id=pending.queued_as or call.message_id,
                        edge_minted=False,
                        id_tag_info=answer.payload.get("idTagInfo", {}),
                        start_key=start_dedup_key(call.payload).text(),
                        now=self.broker.now(),
                    )
                    self.dirty = True
            elif pending.retry_key is not None:
                # Kept for a retry: the charge point may never read it (its link drops).
                self.dirty |= self.state.cloud_answered(pending.retry_key, answer.payload)
            elif call.action == "BootNotification":
                self.state.registration = answer.payload.get("status")
                self.dirty = True
            self._learn(call, answer.payload)
        await self._send(text)
        await self._answered_call(call)
        if isinstance(answer, CallResult):
            await self._started_by(call, answer.payload)

    def _learn(self, call: Call, answer: dict[str, Any]) -> None:
        """The cloud's verdict on an id in its answer, into the node's authorization cache:
        an Authorize's, and a start's, a stop's or a TransactionEvent's with an id (OCPP 1.6
        3.5.1: every IdTagInfo the Central System returns). Only the Authorize answers were
        learned: a tag the cloud answered Invalid at a StartTransaction (revoked since its last
        Authorize) was still Accepted offline from the cache, and a charge point that starts
        without an Authorize (local pre-authorization) taught the cache nothing."""
        if call.action not in _ANSWERS_WITH_ID_INFO:
            return
        info = answer.get("idTagInfo") or answer.get("idTokenInfo")
        token = _id_token(call.payload)
        concurrent = isinstance(info, dict) and info.get("status") == "ConcurrentTx"
        if concurrent and call.action != "Authorize":
            # Of that transaction, not of the id: cached, the driver's tag was refused offline
            # after the other transaction had ended.
            return
        if isinstance(info, dict) and token:
            self.ctx.system.send(
                f"{self.broker.node}/authorizer",
                CloudAuthorized(charge_point_id=self.cp_id, id_token=token, id_tag_info=info),
            )

    async def _answer_locally(self, pending: Pending, reason: str) -> None:
        call = pending.call
        version = self.version
        now = self.broker.now()
        # A TransactionEvent with an idToken is answered with its idTokenInfo, whichever event
        # carries it (with TxStartPoint EVConnected, say, the id comes in an Updated event).
        if call.action in ("Authorize", "StartTransaction") or (
            call.action == "TransactionEvent" and call.payload.get("idToken")
        ):
            pending.stage = "auth"
            # Unique across connections and restarts: the answer is this call's only if it
            # echoes it (the message id may be the same on the charge point's next connection).
            pending.ask_ref = self.ctx.system.require_store().next_id()
            self.ctx.system.send(
                f"{self.broker.node}/authorizer",
                AuthorizeLocally(
                    charge_point_id=self.cp_id,
                    message_id=call.message_id,
                    id_token=_id_token(call.payload),
                    reply_to=self.path,
                    ask_ref=pending.ask_ref,
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

    async def _event_authorized(self, call: Call, msg: AuthorizedLocally) -> None:
        """2.0.1: the edge authorized the id a transaction runs under. How (and any cap of the
        site's fallback) is kept with the transaction, durable before the station gets its
        answer, as for a 1.6 start: the cloud's later verdict is judged by it, caps count."""
        info = call.payload.get("transactionInfo") or {}
        tx_id = str(info.get("transactionId"))
        tx = self.state.transactions.get(tx_id)
        token = (call.payload.get("idToken") or {}).get("idToken")
        if tx is None or tx.get("local_path") is not None or token != tx.get("id_tag"):
            return  # not its id (a stop token), or authorized before
        tx["local_path"] = msg.path
        if msg.energy_cap_wh is not None:
            tx["energy_cap_wh"] = msg.energy_cap_wh
        audit(
            self,
            AuditKind.AUTHORIZATION,
            decision=msg.status,
            charge_point_id=self.cp_id,
            reason=f"TransactionEvent answered by the edge ({msg.reason})",
            inputs={
                "path": msg.path,
                "transaction_id": tx_id,
                "evse_id": (call.payload.get("evse") or {}).get("id"),
            },
        )
        self._persist_state()
        await self.commit()

    async def _authorized(self, msg: AuthorizedLocally) -> None:
        pending = self._pending_for(msg.message_id)
        if pending is None or pending.stage != "auth" or pending.ask_ref != msg.ask_ref:
            # Asked for a call of an earlier connection (gone: its charge point reads no answer
            # on it), whose message id a new call reused: that call's tag is another one.
            log.info(
                "%s: authorization of an earlier call %r dropped (its connection is gone)",
                self.cp_id,
                msg.message_id,
            )
            return
        call = pending.call
        del self.pending[call.message_id]
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
            await self._event_authorized(call, msg)
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
        start_ref = pending.queued_as or call.message_id  # the copy in the outbox
        self.state.start_transaction(
            transaction_id=edge_id,
            payload=call.payload,
            message_id=start_ref,
            edge_minted=True,
            id_tag_info=answer["idTagInfo"],
            start_key=start_dedup_key(call.payload).text(),
            now=self.broker.now(),
        )
        tx = self.state.transactions[str(edge_id)]
        tx["local_path"] = msg.path
        if msg.energy_cap_wh is not None:
            tx["energy_cap_wh"] = msg.energy_cap_wh
        self.send_durable(
            self._cloud_ref(),
            EdgeTransactionMinted(message_id=call.message_id, edge_id=edge_id, start_ref=start_ref),
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


# Calls whose answer carries the cloud's verdict on the id they name (idTagInfo / idTokenInfo).
_ANSWERS_WITH_ID_INFO = frozenset(
    {"Authorize", "StartTransaction", "StopTransaction", "TransactionEvent"}
)


def _transaction_of(call: Call) -> str | None:
    """The transaction a charge point's transaction message belongs to (None: a 1.6 start)."""
    if call.action == "TransactionEvent":
        info = call.payload.get("transactionInfo") or {}
        tx_id = info.get("transactionId") if isinstance(info, dict) else None
        return None if tx_id is None else str(tx_id)
    number = transaction_id_of(call)
    return None if number is None else str(number)
