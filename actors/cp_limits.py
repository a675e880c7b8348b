"""The ChargePoint's load-management and transaction-judgement side: limits from the energy node
become TxProfiles (actors.cp_energy), connectors are reported as demand, the cloud's later verdict
on an offline-accepted id is applied, and energy caps are watched."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import orjson

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cp_base import QuietReconnect
from actors.cp_cloud_caps import CloudProfiles
from actors.cp_downstream import DownCall
from actors.cp_energy import RETRY_AFTER_S, Answer, TxRetry
from actors.cp_state import connector_number
from actors.energy_messages import ENERGY_CAP
from actors.messages import (
    ApplyLimit,
    CallChargePoint,
    ChargePointAnswered,
    CloudVerdict,
    LateDecision,
    LateVerdict,
)
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import (
    Call,
)

log = logging.getLogger(__name__)
PROFILED = "tx_profiled"  # a 2.0.1 transaction whose start the energy side has taken in
LATE_STOP = "late_stop"  # the cloud's late rejection stops it (sent again on each connection)

RUNNING = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})  # 1.6 statuses in a transaction
_PROFILE_ACTIONS = frozenset(
    {
        "SetChargingProfile",
        "ClearChargingProfile",
        "RemoteStartTransaction",
        "RequestStartTransaction",
    }
)


class LimitsAndCaps(CloudProfiles):
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
                calls = self.energy.connected(self.version, rebooted=True)
        elif not self.energy_ready:
            self.energy_ready = True
            calls = self.energy.connected(self.version)
        else:
            calls = []
        for c in calls:
            await self._edge_call(c)
        if self.energy.booted_tx and self.energy_ready:
            shown = self._shown_running(call)
            if shown is not None:
                for c in self.energy.shown_running(shown, self._running_tx(shown)):
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

    def _shown_running(self, call: Call) -> int | None:
        """The connector whose running transaction ``call`` shows alive, if it does: a status
        of charging or suspended (2.0.1: Occupied) on it, MeterValues or an Updated
        TransactionEvent naming the transaction."""
        payload = call.payload
        if call.action == "StatusNotification":
            if payload.get("status") in RUNNING or payload.get("connectorStatus") == "Occupied":
                number = payload.get("evseId", payload.get("connectorId"))
                return number if isinstance(number, int) and number > 0 else None
            return None
        if call.action == "MeterValues":
            tx_id = payload.get("transactionId")
        elif call.action == "TransactionEvent" and payload.get("eventType") == "Updated":
            tx_id = (payload.get("transactionInfo") or {}).get("transactionId")
        else:
            return None
        tx = self.state.transactions.get(str(tx_id)) if tx_id is not None else None
        if tx is None or tx.get("state") != "running":
            return None
        return connector_number(str(tx.get("connector", "")))

    async def _quiet_reconnect(self, msg: QuietReconnect) -> None:
        """Accepted on an earlier connection and back without a word for QUIET_RECONNECT_S. A
        charge point does not boot again on a mere reconnect and may stay silent until its next
        meter interval (10 s and more), while what it held may have gone with a restart of its
        controller (it would then give the car its full current): learn what it takes and
        install its profiles now, the running transactions' included, rather than at its first
        message."""
        link = self.link
        if link is None or link.conn_no != msg.conn_no or self.energy_ready:
            return
        if self.heard_on == msg.conn_no or self.state.registration != "Accepted":
            # It called (a BootNotification the cloud has yet to answer, say): the answer opens
            # the way (_answered_call), as a boot's must.
            return
        self.energy_ready = True
        for c in self.energy.connected(self.version):
            await self._edge_call(c)

    async def _cloud_call_done(self, call: DownCall, answer: dict[str, Any]) -> None:
        """The cloud's TxProfile, once the charge point accepted it (in a SetChargingProfile or
        a remote start), caps the edge's (actors.cp_cloud_caps). A ClearChargingProfile of the
        cloud's drops what it names from those, and if the charge point accepted it, it may have
        removed the edge's profiles (without criteria it removes them all, and the car gets its
        full current): those it may have removed are installed again at once."""
        if call.action not in _PROFILE_ACTIONS:
            return
        if not self.broker.energy_managed:
            return
        try:
            request = orjson.loads(call.text)[3]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            return
        if not isinstance(request, dict):
            return
        accepted = answer.get("status") == "Accepted"
        if call.action == "SetChargingProfile":
            if accepted:
                await self._cloud_profile_set(request)
            return
        if call.action != "ClearChargingProfile":  # a remote start
            if accepted:
                await self._remote_start_accepted(request)
            return
        held = []
        if self._cloud_profiles_cleared(request):
            # The caps it dropped, before the edge's profiles go again with them.
            held = await self._cloud_caps_again(force=False, send=False)
        calls = []
        if accepted and self.energy_ready:
            calls = self.energy.cloud_cleared(request, self.broker.now(), self._running_tx)
        if calls:
            log.info(
                "%s: the cloud cleared charging profiles; the edge's installed again", self.cp_id
            )
        for c in calls or held:
            await self._edge_call(c)

    async def _apply_limit(self, msg: ApplyLimit) -> None:
        connector = msg.limit.connector_id
        tx_id = self._running_tx(connector)
        limit = msg.limit
        if tx_id is not None and self.state.transactions[tx_id].get("energy_blocked"):
            limit = replace(
                limit, limit_a=0.0, binding_source=ENERGY_CAP, reason="energy cap reached"
            )
        if self.link is None:
            self.energy.keep(limit, tx_id)
            return
        for c in self.energy.limit(limit, msg.default_limit_a, tx_id, self.broker.now):
            if msg.trigger_monotonic_ns and c.replace_key:
                self.profile_triggers[c.replace_key] = msg.trigger_monotonic_ns
            await self._edge_call(c)

    async def _edge_answered(self, msg: ChargePointAnswered) -> None:
        answer = Answer(tag=msg.tag, ok=msg.ok, payload=msg.payload, error=msg.error)
        calls, outcome, later = self.energy.answered(
            answer, self.broker.now(), running_tx=self._running_tx
        )
        if answer.tag == "caps":
            for unread in self.energy.caps_unread:
                log.warning("%s: its charging capabilities: %s", self.cp_id, unread)
        for c in calls:
            await self._edge_call(c)
        if later is not None:
            self.send_after(RETRY_AFTER_S, later)  # comes back to _tx_retry

        if outcome is not None:
            self.ctx.system.send(f"{self.broker.node}/profiles", outcome)

    async def _tx_retry(self, msg: TxRetry) -> None:
        running = self._running_tx(msg.connector_id) == msg.tx_id
        if not running or self.link is None or not self.energy_ready:
            self.energy.drop_retry(msg)
            return
        for c in self.energy.retry(msg):
            await self._edge_call(c)

    async def _started_by(self, call: Call, answer: dict[str, Any]) -> None:
        """A transaction the charge point now knows the id of: its limit can go as a TxProfile."""
        if call.action == "StartTransaction" and isinstance(answer.get("transactionId"), int):
            await self._transaction_started(
                int(call.payload.get("connectorId", 0)), str(answer["transactionId"])
            )
        elif call.action == "TransactionEvent" and call.payload.get("eventType") in (
            "Started",
            "Updated",
        ):
            # The first event that names the EVSE: a transaction that starts at authorization
            # (TxStartPoint) names it only once the cable is in, in an Updated event.
            evse = call.payload.get("evse") or {}
            info = call.payload.get("transactionInfo") or {}
            tx = self.state.transactions.get(str(info.get("transactionId")))
            if tx is None or tx.get("state") != "running":
                # Superseded as heard of late (cp_state._heard_late): its start's TxProfile
                # would take the connector's limit from the running one's (fourth review).
                return
            if "id" in evse and not tx.get(PROFILED):
                tx[PROFILED] = True  # kept with the state: a restarted actor does not redo it
                self.dirty = True
                await self._transaction_started(int(evse["id"]), str(info["transactionId"]))

    async def _transaction_started(self, connector: int, tx_id: str) -> None:
        # The connector's cap is this transaction's now: not the last one's, a remote start's
        # if one was waiting for it, or one the cloud set once the charge point had started it
        # (its TransactionEvent can come before its answer to the remote start). The TxProfile
        # goes below, capped.
        level = self.energy.caps.stack_level
        self._take_remote_start_profile(connector)
        # Its level above the edge's: the edge's station profiles go again at it too.
        raised = self.energy.caps.stack_level != level
        held = await self._cloud_caps_again(
            force=False, send=False, station_again=raised, max_again=raised
        )
        for c in held:
            if c.replace_key != f"tx:{connector}":  # another connector's cap changed too
                await self._edge_call(c)
        for c in self.energy.transaction_started(connector, tx_id):
            await self._edge_call(c)

    def _cloud_verdict(self, msg: CloudVerdict) -> None:
        tx = self.state.transactions.get(str(msg.edge_id))
        if tx is None:
            return
        if msg.id_token is not None and (
            msg.id_token != tx.get("id_tag") or tx.get("cloud_status") == msg.status
        ):
            # 2.0.1: the verdict on another id than the transaction's (a stop token), or again
            # (the event of an id carried twice): judged once.
            return
        refused_before = tx.get("cloud_status")
        if refused_before in (None, "Accepted"):
            refused_before = None
            tx["cloud_status"] = msg.status
            self.dirty = True
            if msg.status == "Accepted" and tx.get("energy_cap_wh") is None:
                return
        # else a 2.0.1 verdict after the cloud refused the transaction (Invalid, then Accepted
        # on a later event): the refusal stands (actors.authorization.on_late_answer); the
        # authorizer records that it changes nothing.
        authorizer = self.ctx.system.lookup(f"{self.broker.node}/authorizer")
        if authorizer is None:
            raise RuntimeError("no authorizer in this node")  # retried, then a dead letter
        # Durable, committed with the cloud_status it set: a crash before the authorizer
        # decided would otherwise leave a refused transaction judged and never acted on.
        self.send_durable(
            authorizer,
            LateVerdict(
                charge_point_id=self.cp_id,
                transaction_id=str(msg.edge_id),
                local_path=str(tx.get("local_path", "fallback:accept")),
                local_energy_cap_wh=tx.get("energy_cap_wh"),
                cloud_status=msg.status,
                running=tx.get("state") == "running",
                energy_delivered_wh=self._delivered_wh(tx),
                reply_to=self.path,
                refused_before=refused_before,
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
            # Kept with the transaction: a charge point away now (its link fell with the
            # cloud's, say) gets the stop when it is back (_late_stops_again).
            tx[LATE_STOP] = True
            await self._late_stop(msg.transaction_id)
        elif msg.action in ("cap_energy", "let_run") and msg.energy_cap_wh is not None:
            tx["energy_cap_wh"] = msg.energy_cap_wh
            await self._check_energy_caps()
        elif msg.action == "suspend_energy":
            tx["energy_cap_wh"] = msg.energy_cap_wh or 0
            tx["energy_blocked"] = True
        elif msg.action == "lift_cap":
            tx.pop("energy_cap_wh", None)
            tx.pop("energy_blocked", None)

    async def _late_stop(self, tx_id: str) -> None:
        # 1.6: the id the edge minted (an int); 2.0.1: the station's own string.
        v16 = self.version is OcppVersion.V16
        await self._edge_call(
            CallChargePoint(
                action="RemoteStopTransaction" if v16 else "RequestStopTransaction",
                payload={"transactionId": int(tx_id) if v16 else tx_id},
                tag="late-rejection",
            )
        )

    async def _late_stops_again(self) -> None:
        """On a new connection, or a restart of the actor under a live one: the stops the
        cloud's late rejection asked for, of the transactions still running (one sent while
        the charge point was away was lost, one queued behind another call was lost with the
        actor's memory)."""
        for tx_id, tx in list(self.state.transactions.items()):
            if tx.get(LATE_STOP) and tx.get("state") == "running":
                await self._late_stop(tx_id)

    async def _check_energy_caps(self) -> None:
        for tx_id, tx in self.state.transactions.items():
            cap = tx.get("energy_cap_wh")
            if tx.get("state") != "running" or cap is None or tx.get("energy_blocked"):
                continue
            delivered = self._delivered_wh(tx)
            if delivered >= float(cap):
                # No more energy: the energy node is told (ConnectorReport.energy_blocked: its
                # maximum becomes 0 A), and every limit the broker sends it is 0 A from now on.
                tx["energy_blocked"] = True
                self.dirty = True
                audit(
                    self,
                    AuditKind.LIMIT,
                    decision="0 A",
                    charge_point_id=self.cp_id,
                    reason=f"energy cap of {cap:g} Wh reached ({delivered:g} Wh delivered)",
                    inputs={
                        "limit_a": 0,
                        "binding_source": ENERGY_CAP,
                        "transaction_id": tx_id,
                        "connector_id": connector_number(str(tx.get("connector", ""))),
                    },
                )
