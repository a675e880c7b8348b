"""Calls towards the charge point: the cloud's and the edge's own, one outstanding at a time;
a call for a charge point that is not connected gets a CALLERROR at once, never silence."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import orjson

from actors import credentials
from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cp_base import DOWN_TIMEOUT_S, ChargePointBase, DownCallTimedOut
from actors.cp_downstream import DownCall
from actors.messages import (
    AnswerToCloud,
    CallChargePoint,
    ChargePointAnswered,
)
from actors.ocpp_rules import utc_text
from config.ocpp import Secret
from drivers.ocpp.framing import (
    CallError,
    CallResult,
    call_error_text,
    call_text,
    call_text_json,
)

log = logging.getLogger(__name__)


class DownstreamCalls(ChargePointBase):
    async def _edge_call(self, msg: CallChargePoint) -> None:
        store = self.ctx.system.require_store()
        message_id = f"edge-{store.next_id():x}"
        call = DownCall(
            origin="edge",
            message_id=message_id,
            action=msg.action,
            text=call_text_json(message_id, msg.action, msg.payload_json)
            if msg.payload_json
            else call_text(message_id, msg.action, msg.payload),
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
        link = self.link
        if link is None:
            return
        call = self.down.next()
        if call is None:
            return
        due = time.monotonic() + DOWN_TIMEOUT_S
        self.down_due = (call.message_id, due)
        self.down_timer.arm(self, due, DownCallTimedOut())
        await self._send(call.text)
        if call.replace_key and self.profile_triggers:
            trigger = self.profile_triggers.pop(call.replace_key, 0)
            if trigger:
                # Stamped when the frame reaches the socket: held to the end of the loop's
                # turn (drivers/ocpp/connection.py), it is not written yet.
                link.conn.when_written(self.broker.profile_writes.written, trigger)

    async def _down_answered(self, frame: CallResult | CallError) -> None:
        call = self.down.complete(frame.message_id)
        if call is None:
            # %r: the charge point chose the id (a newline in it would forge a log line)
            log.info("%s: answer to unknown call %r dropped", self.cp_id, frame.message_id)
            return
        if call.origin == "cloud":
            # After what the edge keeps of the accepted call (the cloud's profiles as caps, a
            # remote start's TxProfile, a rotated key: below) is committed. Relayed at once, a
            # node killed before the commit lost it while the cloud had the charge point's
            # Accepted: the edge's next TxProfile went above the cloud's limit, or the charge
            # point's new key was refused. An answer that changes nothing goes at once.
            self._cloud_once_committed(AnswerToCloud(session=call.session, text=frame.raw))
            if isinstance(frame, CallResult) and call.action in credentials.ACTIONS:
                self._key_rotated(call, frame.payload)
            if isinstance(frame, CallResult):
                await self._cloud_call_done(call, frame.payload)
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

    async def _cloud_call_done(self, call: DownCall, answer: dict[str, Any]) -> None:
        """The charge point answered a call of the cloud's (CALLRESULT): what else it needs."""

    async def _down_deadline(self) -> None:
        self.down_timer.fired()
        inflight = self.down.inflight
        message_id, due = self.down_due
        if inflight is None or inflight.message_id != message_id:
            return
        if due > time.monotonic() + 0.001:  # a timer may run up to the clock's resolution early
            self.down_timer.arm(self, due, DownCallTimedOut())
            return
        call = self.down.complete(message_id)
        if call is None:
            return
        self._down_failed(call, f"no answer within {DOWN_TIMEOUT_S:g} s")
        await self._pump_down()

    def _key_rotated(self, call: DownCall, answer: dict[str, Any]) -> None:
        """The cloud set the charge point's HTTP Basic key and it accepted: keep it for the
        listener and the cloud session (:mod:`actors.credentials`)."""
        try:
            payload = orjson.loads(call.text)[3]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return
        if not isinstance(payload, dict):
            return
        new = credentials.rotation(call.action, payload, answer)
        if new is None:
            return
        site_password, site_cloud_password = self._site_keys()
        record = credentials.rotated(
            self._stored_key(),
            new,
            site_password=site_password,
            site_cloud_password=site_cloud_password,
            action=call.action,
            now_utc=utc_text(self.broker.now()),
        )
        self.stage(credentials.put_op(self.cp_id, record))
        log.info("%s: the cloud rotated its key (%s, accepted)", self.cp_id, call.action)
        audit(
            self,
            AuditKind.KEY_ROTATED,
            decision="key rotated",
            charge_point_id=self.cp_id,
            reason=f"the cloud's {call.action} of the charge point's key was accepted: the "
            "listener and its cloud session use the new key"
            + ("; the previous one until it connects with the new" if record.previous else ""),
            inputs={"action": call.action, "message_id": call.message_id},
        )

    def _site_keys(self) -> tuple[Secret | None, Secret | None]:
        """The site file's password and cloud password for this charge point."""
        cp = self.broker.charge_point(self.cp_id)
        return (None, None) if cp is None else (cp.ocpp.password, cp.ocpp.cloud_password)

    def _stored_key(self) -> credentials.StoredKey | None:
        return credentials.load(self.ctx.system.require_store(), self.cp_id)

    def _key_status(self) -> dict[str, Any] | None:
        return credentials.status(self._stored_key(), self._site_keys()[0])

    def _new_key_used(self) -> None:
        """Connected with its rotated key: the previous one is no longer accepted."""
        stored = self._stored_key()
        if stored is None or stored.previous is None:
            return
        current, _ = credentials.listener_passwords(stored, self._site_keys()[0])
        if current != stored.password:
            return  # the site file overrides the rotation: nothing of it is in use
        self.stage(credentials.put_op(self.cp_id, replace(stored, previous=None)))
        log.info("%s: connected with its rotated key; the previous key is retired", self.cp_id)

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
