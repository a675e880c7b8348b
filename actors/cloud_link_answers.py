"""What the cloud sends a CloudLink: answers to the call in flight (delivered, failed and
retried with backoff, dead-lettered with an alarm after max_attempts; 1.6 transaction ids
mapped), and calls for the charge point (ids mapped back)."""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Any

import orjson

from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cloud_link_base import CloudLinkBase, Deadline, Inflight, Pump
from actors.messages import (
    CallFromCloud,
    CloudAnswered,
    CloudVerdict,
    TransactionMapped,
)
from actors.ocpp_rules import rewrite_down
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import Call, CallError, CallResult, FrameError, parse_frame
from drivers.ocpp.validation import validate_call

log = logging.getLogger(__name__)


class CloudLinkAnswers(CloudLinkBase):
    async def _cloud_frame(self, text: str) -> None:
        try:
            frame = parse_frame(text)
            if isinstance(frame, Call):
                validate_call(frame, OcppVersion(self.version or "1.6"))
        except FrameError as err:
            reply = err.reply(OcppVersion(self.version or "1.6"))
            log.warning("%s: bad frame from the cloud: %s", self.cp_id, err)
            if reply is not None:
                await self._send_up(reply)
            return
        if isinstance(frame, Call):
            down_text = (
                rewrite_down(frame, self.txmap.c2e)
                if self.version == OcppVersion.V16.value
                else frame.raw
            )
            self._tell_cp(
                CallFromCloud(
                    session=self.session,
                    message_id=frame.message_id,
                    action=frame.action,
                    text=down_text,
                )
            )
            return
        inflight = self.inflight
        if inflight is None or inflight.message_id != frame.message_id:
            log.info(
                "%s: late or unknown answer %r from the cloud dropped", self.cp_id, frame.message_id
            )
            return
        self._take_inflight()
        self.timeouts_in_a_row = 0
        if inflight.kind == "relay":
            if self.queue_relays.get(inflight.message_id) is inflight.owner:
                del self.queue_relays[inflight.message_id]
            if self._owns(inflight.message_id, inflight.owner):
                del self.live[inflight.message_id]
                self._tell_cp(CloudAnswered(message_id=inflight.message_id, text=frame.raw))
        elif inflight.kind == "preamble":
            self._preamble_answered(frame)
        elif isinstance(frame, CallResult):
            self._delivered(inflight, frame)
        else:
            self._failed(inflight, f"CALLERROR {frame.code}: {frame.description}")

    def _preamble_answered(self, frame: CallResult | CallError) -> None:
        action, _ = self.preamble[0]
        if action == "BootNotification" and (
            not isinstance(frame, CallResult) or frame.payload.get("status") != "Accepted"
        ):
            # Not registered (yet): nothing else may go; ask again after the interval it gave.
            interval = 60
            if isinstance(frame, CallResult):
                interval = max(10, int(frame.payload.get("interval") or 60))
            log.warning(
                "%s: the cloud did not accept the replayed boot; retry in %d s",
                self.cp_id,
                interval,
            )
            self.retry_at = time.monotonic() + interval
            self.send_after(interval, Pump())
            return
        self.preamble.popleft()
        if not self.preamble:
            self._ready()

    def _delivered(self, inflight: Inflight, frame: CallResult) -> None:
        item = self.outbox.pop(self, inflight.key)
        self.stats["delivered"] += 1
        self.retry_at = 0.0
        if inflight.action == "StartTransaction" and isinstance(
            frame.payload.get("transactionId"), int
        ):
            cloud_id = frame.payload["transactionId"]
            status = str((frame.payload.get("idTagInfo") or {}).get("status", "Accepted"))
            start_ref = (item or {}).get("start_ref") or inflight.message_id
            edge_id = self.txmap.cloud_answered(start_ref, cloud_id, status)
            self.persist("txmap", self.txmap.to_dict())
            if edge_id is not None:
                self._tell_cp(TransactionMapped(edge_id=edge_id, cloud_id=cloud_id))
                # The edge answered this start itself; the cloud's verdict may differ.
                self._verdict_to_cp(CloudVerdict(edge_id=edge_id, cloud_id=cloud_id, status=status))
        elif (
            inflight.action == "TransactionEvent"
            and not self._owns(inflight.message_id, inflight.key)
            and item is not None
        ):
            self._event_verdict(item, frame)
        if self._owns(inflight.message_id, inflight.key):
            del self.live[inflight.message_id]
            self._tell_cp(CloudAnswered(message_id=inflight.message_id, text=frame.raw))
        elif item is not None:
            self.stats["replayed"] += 1
            audit(
                self,
                AuditKind.MESSAGE_REPLAYED,
                decision=inflight.action,
                charge_point_id=self.cp_id,
                reason="delivered to the cloud after the edge had answered it",
                inputs={
                    "action": inflight.action,
                    "message_id": inflight.message_id,
                    "attempts": item.get("attempts", 0) + 1,
                    "received_utc": item.get("received_utc"),
                },
            )

    def _event_verdict(self, item: dict[str, Any], frame: CallResult) -> None:
        """2.0.1: the cloud's idTokenInfo for a TransactionEvent the edge had answered itself
        (the cloud away, or too slow): the transaction is the station's, its id the same at the
        edge and the cloud; the charge point actor judges it (CloudVerdict)."""
        info = frame.payload.get("idTokenInfo")
        if not isinstance(info, dict) or not isinstance(info.get("status"), str):
            return  # no verdict (the cloud owes one for an event with an idToken)
        try:
            payload = orjson.loads(item["text"])[3]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            return
        if not isinstance(payload, dict):
            return
        id_token, info_tx = payload.get("idToken"), payload.get("transactionInfo")
        token = id_token.get("idToken") if isinstance(id_token, dict) else None
        tx_id = info_tx.get("transactionId") if isinstance(info_tx, dict) else None
        if not isinstance(token, str) or not isinstance(tx_id, str):
            return
        self._verdict_to_cp(
            CloudVerdict(edge_id=tx_id, cloud_id=tx_id, status=info["status"], id_token=token)
        )

    def _failed(self, inflight: Inflight, reason: str) -> None:
        self.stats["last_error"] = reason
        if inflight.kind == "relay":
            if self._owns(inflight.message_id, inflight.owner):
                self._relay_not_answered(inflight.message_id, reason)
            return
        self._unavailable(inflight.message_id, reason, owner=inflight.key)
        item = self.outbox.peek(inflight.key)
        if item is None:
            return
        attempts = int(item.get("attempts", 0)) + 1
        if attempts >= self.cloud.max_attempts:
            self._dead_letter(inflight.key, item, f"{attempts} attempts failed, last: {reason}")
            return
        self.outbox.update(self, inflight.key, {**item, "attempts": attempts, "last_error": reason})
        delay = min(
            self.cloud.retry_backoff_max_s, self.cloud.retry_backoff_min_s * 2 ** (attempts - 1)
        )
        self.retry_at = time.monotonic() + delay
        self.send_after(delay, Pump())

    def _dead_letter(self, key: bytes, item: dict[str, Any], reason: str) -> None:
        self.outbox.dead_letter(self, key, {**item, "reason": reason})
        self.stats["dead_lettered"] += 1
        self.retry_at = 0.0
        self._unavailable(item["message_id"], reason, owner=key)
        log.error(  # %r: the message id is the charge point's (see cp_calls' unknown answer)
            "ALARM %s: %s %r dead-lettered: %s",
            self.cp_id,
            item["action"],
            item["message_id"],
            reason,
        )
        audit(
            self,
            AuditKind.MESSAGE_DEAD_LETTERED,
            decision=item["action"],
            charge_point_id=self.cp_id,
            reason=reason,
            inputs={
                "action": item["action"],
                "message_id": item["message_id"],
                "received_utc": item.get("received_utc"),
            },
        )

    async def _deadline(self, msg: Deadline) -> None:
        """The link's deadline timer: answer what has waited too long, fail a call the cloud
        never answered, then arm the timer for the next deadline."""
        self.deadline.fired()
        now = time.monotonic() + 0.001  # the loop may run a timer up to its clock resolution early
        due = [message_id for message_id, at in self.relay_due.items() if at <= now]
        if due:
            for message_id in due:
                del self.relay_due[message_id]
            gone = set(due)
            waiting = {r.message_id for r in self.relays}
            self.relays = collections.deque(r for r in self.relays if r.message_id not in gone)
            for message_id in due:
                # A relay waits for the session; a queued message for the calls ahead of it.
                reason = (
                    "the cloud session did not come up in time"
                    if message_id in waiting
                    else "queued behind calls the cloud has not answered within "
                    f"{self.cloud.answer_deadline_s:g} s"
                )
                self._relay_not_answered(message_id, reason)
        inflight = self.inflight
        if inflight is not None and inflight.answer_at <= now:
            inflight.answer_at = math.inf
            if self._owns(inflight.message_id, inflight.owner):
                self._relay_not_answered(
                    inflight.message_id,
                    f"the cloud did not answer within {self.cloud.answer_deadline_s:g} s",
                )
        if inflight is not None and inflight.call_at <= now:
            await self._call_timed_out(inflight)
        self._arm_deadline(self._next_deadline())

    async def _call_timed_out(self, inflight: Inflight) -> None:
        self._take_inflight()
        self.timeouts_in_a_row += 1
        reason = f"no answer within {self.cloud.call_timeout_s:g} s"
        if inflight.kind == "preamble":
            self.retry_at = time.monotonic() + self.cloud.retry_backoff_min_s
        else:
            self._failed(inflight, reason)
        if self.timeouts_in_a_row >= 3 and self.conn is not None:
            log.warning(
                "%s: %d calls in a row unanswered: reconnecting", self.cp_id, self.timeouts_in_a_row
            )
            await self.conn.close(1001, "calls unanswered")
