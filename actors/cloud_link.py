"""The CloudLink actor: one charge point's session to the cloud and its durable ordered outbox.

- Session: ``<cloud url>/<charge point id>`` with the charge point's subprotocol and credentials,
  reconnected with backoff and jitter by a linked task. A new session first replays the cached
  BootNotification and the latest status reports (a charge point does not boot again just because
  the edge's upstream reconnected), then carries traffic.
- One outstanding CALL upstream. Live relays (the charge point is waiting) go before the outbox;
  the outbox goes strictly in order: an item is retried (timeout or CALLERROR; backoff, attempts
  kept) before anything behind it, and after ``max_attempts`` it is dead-lettered with an alarm and
  an audit record, never silently dropped.
- OCPP 1.6 ids: the cloud's answer to a StartTransaction the edge answered itself maps the edge id
  to the cloud's; every later message up and every call down is rewritten (both ways, persisted).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from dataclasses import replace
from typing import Any

import orjson

from actors import credentials
from actors.audit import audit
from actors.audit_records import AuditKind
from actors.cloud_link_answers import CloudLinkAnswers
from actors.cloud_link_base import (
    CloudFrame,
    Deadline,
    Inflight,
    Pump,
    UpstreamDown,
    UpstreamFailed,
    UpstreamUp,
    _tx_id,
)
from actors.messages import (
    AnswerToCloud,
    ChargePointLinkState,
    CloudLinkChanged,
    CloudVerdict,
    EdgeTransactionMinted,
    EnqueueCall,
    LatestForNewSession,
    ReconnectUpstream,
    RelayCall,
    TransactionMapped,
)
from actors.ocpp_rules import rewrite_up
from actors.outbox import Outbox, TxMap
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkError
from drivers.ocpp.framing import Call, call_text, parse_frame
from drivers.ocpp.upstream import (
    ConnectFailed,
    Unauthorized,
    connect_upstream,
    tls_client_context,
)
from supervisors.intensity import Backoff, backoff_delay_s

log = logging.getLogger(__name__)

__all__ = ["CloudLink", "Deadline", "Inflight"]


class CloudLink(CloudLinkAnswers):
    DURABLE = frozenset({EnqueueCall, EdgeTransactionMinted})

    async def started(self) -> None:
        store = self.ctx.system.require_store()
        self.outbox = Outbox(store, self.cp_id)
        self.txmap = TxMap(self.load("txmap"))
        self.latest: dict[str, list[str]] = self.load("latest", {})
        self.version: str | None = self.load("version")
        cp = self.broker.charge_point(self.cp_id)
        if self.version is None and cp is not None and cp.ocpp.ocpp_version is not None:
            self.version = cp.ocpp.ocpp_version.value
        self.connecting = self._wants_upstream()
        self.spawn(self._link_loop(), name="upstream")

    def report(self) -> dict[str, Any]:
        return {
            "online": self.ready,
            "session": self.session,
            "queue_depth": len(self.outbox),
            "inflight": None if self.inflight is None else self.inflight.action,
            "relays_waiting": len(self.relays),
            "dead_letters": self.outbox.dead_count(),
            **self.stats,
        }

    def _wants_upstream(self) -> bool:
        """A session is kept while the charge point is connected (and ``linger_s`` after: it often
        comes straight back, and calls meanwhile get a CALLERROR rather than "not connected"),
        while anything waits for delivery, and always in strict mode (whether the cloud is there
        decides whether charge points may connect)."""
        if self.version is None:
            return False
        lingering = time.monotonic() - self.cp_left_at < self.cloud.linger_s
        return self.cp_connected or lingering or len(self.outbox) > 0 or self.cloud.mode == "strict"

    def _password(self) -> tuple[str | None, bool]:
        """The HTTP Basic password for this session, and whether it is the edge's previous key."""
        cp = self.broker.charge_point(self.cp_id)
        if cp is not None:
            stored = credentials.load(self.ctx.system.require_store(), cp.id)
            password = credentials.cloud_password(stored, cp.ocpp.cloud_password)
            if password is not None:
                return password, False
        if self.cp_id == self.cloud.edge_identity:
            return self._edge_password()
        return None, False

    def _edge_password(self) -> tuple[str | None, bool]:
        """The edge's own key at the cloud, and whether it is the previous one: the rotated key,
        or the previous while the cloud refuses the rotated one (:mod:`actors.credentials`)."""
        stored = credentials.load_edge(self.ctx.system.require_store(), self.cp_id)
        password = credentials.cloud_password(stored, self.cloud.edge_password)
        if (
            self.new_key_refused
            and stored is not None
            and stored.previous is not None
            and password == stored.password
        ):
            return stored.previous, True
        return password, False

    async def _link_loop(self) -> None:
        attempt, session = 0, self.session
        backoff = Backoff(
            min_s=self.cloud.reconnect_min_s, max_s=self.cloud.reconnect_max_s, jitter=0.3
        )
        ssl_context = (
            tls_client_context(self.cloud.tls_ca_file)
            if self.cloud.url.startswith("wss:")
            else None
        )
        while True:
            if not self._wants_upstream():
                self.wake.clear()
                await self.wake.wait()
                continue
            assert self.version is not None
            # read at each attempt: the cloud may have rotated it
            password, previous_key = self._password()
            try:
                conn = await connect_upstream(
                    self.cloud.url,
                    self.cp_id,
                    OcppVersion(self.version),
                    password=password,
                    ssl_context=ssl_context,
                    open_timeout_s=self.cloud.open_timeout_s,
                    ping_interval_s=self.cloud.ping_interval_s,
                    ping_timeout_s=self.cloud.ping_timeout_s,
                    max_frame_bytes=self.cloud.max_frame_bytes,
                )
            except ConnectFailed as exc:
                if isinstance(exc, Unauthorized) and self.cp_id == self.cloud.edge_identity:
                    # After a rotation of the edge's key: try the other of its two keys next.
                    self.new_key_refused = not self.new_key_refused
                self.ref.tell(UpstreamFailed(reason=str(exc)))
                await asyncio.sleep(backoff_delay_s(backoff, attempt, random.random()))
                attempt += 1
                continue
            attempt = 0
            session += 1
            self.ref.tell(UpstreamUp(session=session, conn=conn, previous_key=previous_key))
            try:
                while True:
                    self.ref.tell(CloudFrame(session=session, text=await conn.recv()))
            except LinkError as exc:
                self.ref.tell(UpstreamDown(session=session, reason=str(exc) or type(exc).__name__))
            await asyncio.sleep(backoff_delay_s(backoff, 0, random.random()))

    async def terminate(self, reason: object) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close(1001, "edge stopping")

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, CloudFrame):
            if msg.session == self.session:
                await self._cloud_frame(msg.text)
        elif isinstance(msg, RelayCall):
            self._detach(msg.message_id)
            self.live[msg.message_id] = msg
            if msg.queue:
                self.queue_relays[msg.message_id] = msg
            if self.ready or self.connecting or self.conn is not None:
                # Up, or on its way up: wait (at most answer_deadline_s) rather than answer alone.
                self.relays.append(msg)
                due = time.monotonic() + self.cloud.answer_deadline_s
                self.relay_due[msg.message_id] = due
                self._arm_deadline(due)
            else:
                self._relay_not_answered(msg.message_id, "cloud offline")
        elif isinstance(msg, EnqueueCall):
            self._enqueue(msg)
        elif isinstance(msg, EdgeTransactionMinted):
            start_ref = msg.start_ref or msg.message_id
            cloud_id = self.txmap.edge_minted(start_ref, msg.edge_id)
            self.persist("txmap", self.txmap.to_dict())
            if cloud_id is not None:
                # The cloud answered this start before the edge minted its id (the charge point
                # waited no longer, or asked again): its id, and its verdict, are the edge's.
                self._tell_cp(TransactionMapped(edge_id=msg.edge_id, cloud_id=cloud_id))
                status = self.txmap.cloud_status(start_ref)
                self._verdict_to_cp(
                    CloudVerdict(edge_id=msg.edge_id, cloud_id=cloud_id, status=status)
                )
        elif isinstance(msg, Deadline):
            await self._deadline(msg)
        elif isinstance(msg, AnswerToCloud):
            if msg.session == self.session and self.conn is not None:
                await self._send_up(msg.text)
        elif isinstance(msg, LatestForNewSession):
            self._latest(msg)
        elif isinstance(msg, ChargePointLinkState):
            await self._cp_link(msg)
        elif isinstance(msg, UpstreamUp):
            await self._up(msg)
            if self.cp_id == self.cloud.edge_identity:
                self._edge_key_used(previous=msg.previous_key)
        elif isinstance(msg, ReconnectUpstream):
            if self.conn is not None:
                log.info("%s: reconnecting to the cloud (%s)", self.cp_id, msg.reason)
                self.new_key_refused = False
                await self.conn.close(1000, msg.reason)  # the link loop opens the next session
        elif isinstance(msg, UpstreamDown):
            if msg.session == self.session:
                await self._down(msg.reason)
        elif isinstance(msg, UpstreamFailed):
            self.stats["last_error"] = msg.reason
            if self.connecting:  # the first attempt failed: the charge point must know now
                self._tell_cp(CloudLinkChanged(online=False, reason=msg.reason))
            self.connecting = False
            self.relay_due.clear()

            for relay in self.relays:
                self._relay_not_answered(relay.message_id, f"cloud unreachable: {msg.reason}")
            self.relays.clear()
        elif not isinstance(msg, Pump):
            return await super().receive(msg)
        await self._pump()
        return None

    async def _cp_link(self, msg: ChargePointLinkState) -> None:
        if self.cp_connected and not msg.connected:
            self.cp_left_at = time.monotonic()
            self.send_after(self.cloud.linger_s + 0.05, Pump())  # then close if nothing is left
        self.cp_connected = msg.connected
        if msg.version and msg.version != self.version:
            self.version = msg.version
            self.persist("version", msg.version)
            if self.conn is not None:  # the upstream must speak the charge point's version
                await self.conn.close(1000, "charge point changed OCPP version")
        if self.conn is None and self._wants_upstream() and not self.wake.is_set():
            self.connecting = True
        self.wake.set()

    def _latest(self, msg: LatestForNewSession) -> None:
        previous = self.latest.get(msg.key)
        if previous == [msg.action, msg.payload_json]:
            return
        if previous is not None and not self.ready:
            audit(
                self,
                AuditKind.MESSAGE_COALESCED,
                decision=msg.action,
                charge_point_id=self.cp_id,
                reason="the cloud is away: only the newest report per key is kept for it",
                inputs={"action": msg.action, "key": msg.key},
            )
        self.latest[msg.key] = [msg.action, msg.payload_json]
        self.persist("latest", self.latest)

    def _enqueue(self, msg: EnqueueCall) -> None:
        if msg.live:
            self._detach(msg.message_id)
        key = self.outbox.append(self, msg, after_commit=lambda: self.ref.tell(Pump()))
        if msg.live:
            self.live[msg.message_id] = key
            if self.ready:
                # Behind the call in flight or a backlog, the charge point waits at most
                # answer_deadline_s, as for a relay: the message is durable, the edge answers.
                due = time.monotonic() + self.cloud.answer_deadline_s
                self.relay_due[msg.message_id] = due
                self._arm_deadline(due)
        if not self.ready:
            audit(
                self,
                AuditKind.MESSAGE_BUFFERED,
                decision=msg.action,
                charge_point_id=self.cp_id,
                reason="the cloud is away: queued for replay, in order",
                inputs={
                    "action": msg.action,
                    "message_id": msg.message_id,
                    "queue_depth": len(self.outbox),
                },
            )
            self._unavailable(msg.message_id, "cloud offline: queued for replay")
        self.wake.set()

    async def _up(self, msg: UpstreamUp) -> None:
        if self.conn is not None:
            await self.conn.close(1000, "superseded")
        self.connecting = False
        self.conn, self.session, self.ready = msg.conn, msg.session, False
        self._take_inflight()
        self.timeouts_in_a_row = 0
        self.stats["connects"] += 1
        self.preamble.clear()
        # Boot first (a new session must start with it), then the latest of everything else;
        # not the cached boot if the charge point's own BootNotification waits to go (it would
        # reach the cloud twice).
        boot_waiting = any(r.action == "BootNotification" for r in self.relays)
        for key in sorted(self.latest, key=lambda k: (not k.startswith("BootNotification"), k)):
            action, payload_json = self.latest[key]
            if boot_waiting and action == "BootNotification":
                continue
            self.preamble.append((action, orjson.loads(payload_json)))

        log.info(
            "%s: cloud link up (session %d, %d queued)", self.cp_id, msg.session, len(self.outbox)
        )
        audit(
            self,
            AuditKind.CLOUD_LINK,
            decision="up",
            charge_point_id=self.cp_id,
            reason=f"session {msg.session} open",
            inputs={"queued": len(self.outbox)},
        )
        if not self.preamble:
            self._ready()

    def _edge_key_used(self, *, previous: bool) -> None:
        """The edge's own session is open: with its rotated key, the previous one is retired;
        with the previous one, the cloud did not keep the rotation (said once per session)."""
        stored = credentials.load_edge(self.ctx.system.require_store(), self.cp_id)
        if stored is None or stored.previous is None:
            return
        if previous:
            log.warning(
                "%s: the cloud refused the edge's rotated key; connected with the previous one",
                self.cp_id,
            )
            return
        if credentials.cloud_password(stored, self.cloud.edge_password) != stored.password:
            return  # the site file's edge_password overrides the rotation
        self.stage(credentials.edge_put_op(self.cp_id, replace(stored, previous=None)))
        log.info(
            "%s: connected with the edge's rotated key; the previous key is retired", self.cp_id
        )

    async def _down(self, reason: str) -> None:
        was_ready = self.ready
        self.conn, self.ready = None, False
        self.stats["last_error"] = reason
        inflight = self._take_inflight()
        if inflight is not None and self._owns(inflight.message_id, inflight.owner):
            self._relay_not_answered(inflight.message_id, f"cloud link lost: {reason}")
        for relay in self.relays:
            self._relay_not_answered(relay.message_id, "cloud link lost")
        self.relays.clear()
        self.relay_due.clear()
        for message_id in list(self.live):
            self._unavailable(message_id, "cloud link lost")
        if was_ready:
            self._tell_cp(CloudLinkChanged(online=False, reason=reason))
        log.info("%s: cloud link down: %s (%d queued)", self.cp_id, reason, len(self.outbox))
        audit(
            self,
            AuditKind.CLOUD_LINK,
            decision="down",
            charge_point_id=self.cp_id,
            reason=reason,
            inputs={"queued": len(self.outbox)},
        )
        self.wake.set()

    def _detach(self, message_id: str) -> None:
        """A new call with ``message_id`` while the charge point still waits on one with that id:
        an earlier connection's (ids are unique per connection; a charge point whose counter
        starts again on reconnecting, within answer_deadline_s, reuses them). That one's answer
        goes to nobody now (its connection is gone); a ``queue`` relay not yet answered goes into
        the durable outbox at once, as it would at its deadline (nothing lost)."""
        old = self.live.pop(message_id, None)
        if old is None:
            return
        self.relay_due.pop(message_id, None)
        log.info(
            "%s: call %r of an earlier connection still waited on: its answer goes to nobody",
            self.cp_id,
            message_id,
        )
        if not isinstance(old, RelayCall):
            return  # an outbox item: durable already, its answer is dropped
        self.relays = collections.deque(r for r in self.relays if r is not old)
        if old.queue and self.queue_relays.get(message_id) is old:
            del self.queue_relays[message_id]
            self._queue_relay(old, "its charge point reconnected", lambda: self.ref.tell(Pump()))

    async def _pump(self) -> None:
        if self.conn is None or self.inflight is not None:
            return
        if not self.ready:
            if self.preamble and time.monotonic() >= self.retry_at:
                action, payload = self.preamble[0]
                message_id = f"edge-{self.ctx.system.require_store().next_id():x}"
                self._start("preamble", message_id, action, live=False)
                await self._send_up(call_text(message_id, action, payload))
            return
        if self.relays:
            relay = self.relays.popleft()
            self.relay_due.pop(relay.message_id, None)
            live = self._owns(relay.message_id, relay)
            self._start("relay", relay.message_id, relay.action, live=live, owner=relay)
            self.stats["relayed"] += 1
            await self._send_up(relay.text)
            return
        if time.monotonic() < self.retry_at:
            return
        head = self.outbox.head()
        if head is None:
            if not self._wants_upstream() and self.conn is not None:
                await self.conn.close(1000, "nothing left to deliver")
            return
        key, item = head
        text = item["text"]
        live = self._owns(item["message_id"], key)
        due = self.relay_due.pop(item["message_id"], None) if live else None
        if self.version == OcppVersion.V16.value:
            call = parse_frame(text)
            assert isinstance(call, Call)
            tx_id = _tx_id(call.payload)
            if (
                tx_id is not None
                and tx_id in self.cloud.edge_transaction_ids
                and tx_id not in self.txmap.e2c
            ):
                self._dead_letter(
                    key, item, "its StartTransaction never got a cloud transaction id"
                )
                await self._pump()
                return
            text = rewrite_up(call, self.txmap.e2c)
        self._start(
            "outbox",
            item["message_id"],
            item["action"],
            live=live,
            key=key,
            answer_at=due,  # the charge point's wait began when it was queued
        )
        await self._send_up(text)
