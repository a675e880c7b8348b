"""Calls towards the charge point: the cloud's and the edge's own, one outstanding at a time;
a call for a charge point that is not connected gets a CALLERROR at once, never silence."""

from __future__ import annotations

import logging
import time

from actors.cp_base import DOWN_TIMEOUT_S, ChargePointBase, DownCallTimedOut
from actors.cp_downstream import DownCall
from actors.messages import (
    AnswerToCloud,
    CallChargePoint,
    ChargePointAnswered,
)
from drivers.ocpp.framing import (
    CallError,
    CallResult,
    call_error_text,
    call_text,
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
        due = time.monotonic() + DOWN_TIMEOUT_S
        self.down_due = (call.message_id, due)
        self.down_timer.arm(self, due, DownCallTimedOut())
        await self._send(call.text)
        if call.replace_key and self.profile_triggers:
            trigger = self.profile_triggers.pop(call.replace_key, 0)
            if trigger:
                self.broker.profile_writes.written(trigger)

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
