"""The edge's own voice at the cloud: a session under ``[cloud] edge_identity``.

It plays the charge point role for its CloudLink (so the session, boot replay, reconnects and
backoff are the same machinery), and:

- syncs the audit trail of every node to the cloud, in id order per node, at least once: batches
  of records as DataTransfer (vendorId ``site-edge``, messageId ``AuditRecords``, data = JSON
  ``{"node": ..., "records": [...]}``); the cloud deduplicates by each record's ``uid``
  (``<node>:<id>``): an id is unique within its node's store, not across nodes (each node counts
  its own, so the broker's and the energy node's first records share ids). The high-water mark
  per node is persisted only after the cloud accepted a batch, so what is not yet synced is exactly
  what ``run.py status`` shows as ``unsynced``;
- takes the calls the cloud addresses to the edge: SendLocalList / GetLocalListVersion and
  DataTransfer ``RulesBundle`` / ``RulesRollback`` go to the authorizer, ``GridLimit`` to the energy
  node (kept in the broker's store before it is answered Accepted, and sent again to the energy
  node when this actor starts and when the energy node's source asks: CloudLimitWanted);
  ChangeConfiguration ``AuthorizationKey`` rotates the edge's own key (kept in the store,
  answered Accepted, then the session reconnects with it: :mod:`actors.credentials`), any other
  configuration key is answered NotSupported; GetConfiguration (Core profile, so a CSMS that reads
  every charge point's settings does not see a failure) answers that the edge has no readable key
  (``AuthorizationKey`` is write-only: neither listed nor reported unknown); any other call gets a
  NotSupported CALLERROR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson

from actors import credentials
from actors.audit import audit
from actors.audit_records import AuditKind, record_to_json
from actors.broker_context import BrokerContext
from actors.cloud_limit_push import BadCloudLimit, cloud_limit_push
from actors.energy_messages import CloudLimitPushed, CloudLimitWanted
from actors.messages import (
    AnswerToCloud,
    CallFromCloud,
    ChargePointLinkState,
    CloudAnswered,
    CloudLinkChanged,
    CloudUnavailable,
    EdgeCallFromCloud,
    LatestForNewSession,
    ReconnectUpstream,
    RelayCall,
)
from actors.ocpp_rules import utc_text
from config.energy_limits import CloudLimitConfig
from config.ocpp import Secret
from drivers.ocpp.framing import (
    Call,
    CallResult,
    FrameError,
    call_error_text,
    call_result_text,
    call_text,
    parse_frame,
)
from drivers.store import audit_log
from drivers.store.env import read_other
from supervisors.actor import Actor, ActorContext

log = logging.getLogger(__name__)

VENDOR_ID = "site-edge"
SYNC_INTERVAL_S = 2.0
ENERGY_ALLOCATOR = "energy/allocator"
CLOUD_LIMITS_KEY = "cloud_limits"  # the last accepted push per cloud source (its config name)
BATCH_RECORDS = 200
BATCH_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncTick:
    pass


class EdgeEndpoint(Actor):
    def __init__(
        self, ctx: ActorContext, broker: BrokerContext, identity: str, nodes: tuple[str, ...]
    ) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.identity = identity
        self.nodes = nodes
        self.inflight: tuple[str, str, int, int] | None = None  # (message id, node, last id, count)
        self.online = False
        self.synced_total = 0
        self.last_error: str | None = None

    async def started(self) -> None:
        self.hwm: dict[str, int] = self.load("audit_hwm", {})
        self.cloud_limits: dict[str, dict[str, Any]] = self.load(CLOUD_LIMITS_KEY, {})
        # Again to the energy node: one sent just before this node died may not have reached it
        # (its source also asks when it starts; a source takes a push once, by its seq).
        for doc in self.cloud_limits.values():
            self.ctx.system.send(ENERGY_ALLOCATOR, _pushed_from(doc))
        cloud = self._cloud_path()
        boot = {"chargePointVendor": "site-edge", "chargePointModel": "edge-runtime"}
        self.ctx.system.send(
            cloud,
            LatestForNewSession(
                key="BootNotification",
                action="BootNotification",
                payload_json=orjson.dumps(boot).decode(),
            ),
        )
        self.ctx.system.send(cloud, ChargePointLinkState(connected=True, version="1.6"))
        self.send_after(SYNC_INTERVAL_S, SyncTick())

    def _cloud_path(self) -> str:
        return self.broker.cloud_path(self.identity)

    def report(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "online": self.online,
            "synced_total": self.synced_total,
            "synced_up_to": dict(self.hwm),
            "unsynced": self.unsynced(),
            "last_error": self.last_error,
            "key_rotation": credentials.edge_status(
                credentials.load_edge(self.ctx.system.require_store(), self.identity),
                self._site_password(),
            ),
        }

    def _site_password(self) -> Secret | None:
        cloud = self.broker.config.cloud
        return None if cloud is None else cloud.edge_password

    def unsynced(self) -> dict[str, int]:
        out = {}
        for node in self.nodes:
            with read_other(self.broker.config.storage_dir / node) as store:
                if store is None:
                    continue
                after = self.hwm.get(node, 0)
                out[node] = sum(
                    1 for _ in store.scan("audit", start=(after + 1).to_bytes(8, "big"))
                )
        return out

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, SyncTick):
            self._sync()
            self.send_after(SYNC_INTERVAL_S, SyncTick())
        elif isinstance(msg, CloudLinkChanged):
            self.online = msg.online
            if msg.online:
                self._sync()
        elif isinstance(msg, CloudAnswered):
            self._answered(msg)
        elif isinstance(msg, CloudUnavailable):
            if self.inflight is not None and self.inflight[0] == msg.message_id:
                self.inflight = None
                self.last_error = msg.reason
        elif isinstance(msg, CallFromCloud):
            await self._call_from_cloud(msg)
        elif isinstance(msg, CloudLimitWanted):
            doc = self.cloud_limits.get(msg.source)
            if doc is not None:
                self.ctx.system.send(msg.reply_to, _pushed_from(doc))
        else:
            return await super().receive(msg)
        return None

    # -- audit sync -----------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.inflight is not None or not self.online:
            return
        for node in self.nodes:
            batch = self._batch(node)
            if batch:
                store = self.ctx.system.require_store()
                message_id = f"edge-{store.next_id():x}"
                data = orjson.dumps({"node": node, "records": batch}).decode()
                text = call_text(
                    message_id,
                    "DataTransfer",
                    {"vendorId": VENDOR_ID, "messageId": "AuditRecords", "data": data},
                )
                self.inflight = (message_id, node, int(batch[-1]["id"]), len(batch))
                self.ctx.system.send(
                    self._cloud_path(),
                    RelayCall(message_id=message_id, action="DataTransfer", text=text),
                )
                return

    def _batch(self, node: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        size = 0
        with read_other(self.broker.config.storage_dir / node) as store:
            if store is None:
                return out
            for record in audit_log.records_after(
                store, self.hwm.get(node, 0), limit=BATCH_RECORDS
            ):
                doc = {**record_to_json(record), "node": node, "uid": f"{node}:{record.id}"}
                size += len(orjson.dumps(doc))
                if out and size > BATCH_BYTES:
                    break
                out.append(doc)
        return out

    def _answered(self, msg: CloudAnswered) -> None:
        inflight = self.inflight
        if inflight is None or inflight[0] != msg.message_id:
            return
        self.inflight = None
        try:
            frame = parse_frame(msg.text)
        except FrameError:
            frame = None
        if isinstance(frame, CallResult) and frame.payload.get("status") == "Accepted":
            _, node, last, count = inflight
            self.synced_total += count
            self.hwm[node] = last
            self.persist("audit_hwm", self.hwm)
            self.last_error = None
            self._sync()  # keep going while there is more
        else:
            self.last_error = f"the cloud did not accept an audit batch: {msg.text[:200]}"

    # -- calls addressed to the edge ------------------------------------------------------------
    async def _call_from_cloud(self, msg: CallFromCloud) -> None:
        try:
            frame = parse_frame(msg.text)
        except FrameError:
            return
        if not isinstance(frame, Call):
            return
        payload = frame.payload
        authorizer = f"{self.broker.node}/authorizer"
        if msg.action in ("SendLocalList", "GetLocalListVersion"):
            self.ctx.system.send(
                authorizer,
                EdgeCallFromCloud(
                    session=msg.session,
                    message_id=msg.message_id,
                    action=msg.action,
                    payload=payload,
                    reply_path=self._cloud_path(),
                ),
            )
            return
        if msg.action == "DataTransfer" and payload.get("vendorId") == VENDOR_ID:
            kind = payload.get("messageId")
            if kind in ("RulesBundle", "RulesRollback"):
                self.ctx.system.send(
                    authorizer,
                    EdgeCallFromCloud(
                        session=msg.session,
                        message_id=msg.message_id,
                        action=str(kind),
                        payload=payload,
                        reply_path=self._cloud_path(),
                    ),
                )
                return
            if kind == "GridLimit":
                self._grid_limit(msg, payload)
                return
            self._answer(msg, call_result_text(msg.message_id, {"status": "UnknownMessageId"}))
            return
        if msg.action == "DataTransfer":
            self._answer(msg, call_result_text(msg.message_id, {"status": "UnknownVendorId"}))
            return
        if msg.action == "ChangeConfiguration":
            self._change_configuration(msg, payload)
            return
        if msg.action == "GetConfiguration":
            asked = payload.get("key") or []
            unknown = [k for k in asked if isinstance(k, str) and k != "AuthorizationKey"]
            answer: dict[str, Any] = {"configurationKey": []}
            if unknown:
                answer["unknownKey"] = unknown
            self._answer(msg, call_result_text(msg.message_id, answer))
            return
        self._answer(
            msg,
            call_error_text(
                msg.message_id, "NotSupported", f"the edge itself does not take {msg.action}"
            ),
        )

    def _change_configuration(self, msg: CallFromCloud, payload: dict[str, Any]) -> None:
        """The edge's only configuration key is its key at the cloud (write-only)."""
        if payload.get("key") != "AuthorizationKey":
            self._answer(msg, call_result_text(msg.message_id, {"status": "NotSupported"}))
            return
        inputs = {"action": msg.action, "message_id": msg.message_id}
        problem = credentials.edge_key_problem(payload.get("value"))
        if problem is not None:
            log.warning(
                "%s: the cloud's new key for the edge is refused: %s", self.identity, problem
            )
            audit(
                self,
                AuditKind.KEY_ROTATED,
                decision="key refused",
                charge_point_id=self.identity,
                reason=f"the cloud's new key for the edge's own session is refused: {problem}; "
                "the key in use stays",
                inputs=inputs,
            )
            self._answer(msg, call_result_text(msg.message_id, {"status": "Rejected"}))
            return
        store = self.ctx.system.require_store()
        record = credentials.edge_rotated(
            credentials.load_edge(store, self.identity),
            str(payload["value"]),
            site_password=self._site_password(),
            action=msg.action,
            now_utc=utc_text(self.broker.now()),
        )
        self.stage(credentials.edge_put_op(self.identity, record))
        # Only once the key is on disk: the cloud may drop the old one as soon as it reads
        # Accepted, and the session that follows must find the new one.
        self._answer_once_committed(msg, call_result_text(msg.message_id, {"status": "Accepted"}))
        self.send_once_committed(self._cloud_path(), ReconnectUpstream(reason="key rotated"))
        log.info("%s: the cloud rotated the edge's key; reconnecting with it", self.identity)
        audit(
            self,
            AuditKind.KEY_ROTATED,
            decision="key rotated",
            charge_point_id=self.identity,
            reason="the cloud set the edge's own key (AuthorizationKey): the session reconnects "
            "with it"
            + ("; the previous one is kept should the cloud refuse it" if record.previous else ""),
            inputs=inputs,
        )

    def _grid_limit(self, msg: CallFromCloud, payload: dict[str, Any]) -> None:
        """Checked whole here (actors.cloud_limit_push): answered Accepted only if the energy
        node's cloud source will take it, else Rejected with the reason (logged). Accepted only
        once it is in this node's store: it was answered as it left for the energy node, and an
        energy node killed before it stored the push (or the link to it going down with the push
        in it) lost it for good, the site above a limit the edge had acknowledged. Kept, it goes
        again to the energy node's source when that starts (CloudLimitWanted), expiry and all."""
        energy = self.broker.config.energy
        sources = {
            g.source.name: g.source.node
            for g in getattr(energy, "grid_limits", ())
            if isinstance(g, CloudLimitConfig)
        }
        try:
            data = orjson.loads(payload.get("data") or "null")
            limit = cloud_limit_push(data, now_utc=self.broker.now(), sources=sources)
        except (orjson.JSONDecodeError, BadCloudLimit) as exc:
            log.warning("%s: the cloud's grid limit refused: %s", self.identity, exc)
            self._answer(
                msg,
                call_result_text(
                    msg.message_id, {"status": "Rejected", "data": f"bad limit: {exc}"}
                ),
            )
            return
        # By the source's configured name (a site with one cloud source takes any name).
        key = limit.source if limit.source in sources else next(iter(sources))
        limit = replace(limit, seq=self.ctx.system.require_store().next_id())
        self.cloud_limits[key] = _pushed_doc(limit)
        self.persist(CLOUD_LIMITS_KEY, self.cloud_limits)
        self.send_once_committed(ENERGY_ALLOCATOR, limit)
        self._answer_once_committed(msg, call_result_text(msg.message_id, {"status": "Accepted"}))

    def _answer(self, msg: CallFromCloud, text: str) -> None:
        self.ctx.system.send(self._cloud_path(), AnswerToCloud(session=msg.session, text=text))

    def _answer_once_committed(self, msg: CallFromCloud, text: str) -> None:
        """After the commit of what answering changed (Actor.send_once_committed)."""
        self.send_once_committed(self._cloud_path(), AnswerToCloud(session=msg.session, text=text))


def _pushed_doc(msg: CloudLimitPushed) -> dict[str, Any]:
    return {
        "source": msg.source,
        "node": msg.node,
        "limit_a": msg.limit_a,
        "power_w": msg.power_w,
        "expires_utc": msg.expires_utc,
        "seq": msg.seq,
    }


def _pushed_from(doc: dict[str, Any]) -> CloudLimitPushed:
    """The kept push as it was accepted: its expiry too, so one that has expired since is sent
    expired (the source applies what follows its expiry, not the limit)."""
    return CloudLimitPushed(
        source=str(doc["source"]),
        node=str(doc["node"]),
        limit_a=doc.get("limit_a"),
        power_w=doc.get("power_w"),
        expires_utc=doc.get("expires_utc"),
        seq=int(doc.get("seq", 0)),
    )
