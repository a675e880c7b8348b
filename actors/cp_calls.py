"""Calls towards the charge point: the cloud's and the edge's own, one outstanding at a time;
a call for a charge point that is not connected gets a CALLERROR at once, never silence."""

from __future__ import annotations

import logging
import math
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
        self._arm_down(due)
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

    def _arm_down(self, at: float) -> None:
        """One timer per charge point for its call in flight, not one per call (a site-wide
        decrease sends a SetChargingProfile to every charge point: each left a timer that fired
        30 s later into a later step). Deadlines are ``now + DOWN_TIMEOUT_S``, so the armed timer
        is almost never later than a new one: it fires, finds its call answered, and is armed
        for the call in flight then."""
        if at >= self.down_timer_at:
            return
        if self.down_timer is not None:
            self.down_timer.cancel()
        self.down_timer_at = at
        self.down_timer = self.send_after(max(0.0, at - time.monotonic()), DownCallTimedOut())

    async def _down_deadline(self) -> None:
        self.down_timer, self.down_timer_at = None, math.inf
        inflight = self.down.inflight
        message_id, due = self.down_due
        if inflight is None or inflight.message_id != message_id:
            return
        if due > time.monotonic() + 0.001:  # a timer may run up to the clock's resolution early
            self._arm_down(due)
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
