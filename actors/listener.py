"""The OCPP listener actor: accepts charge points and feeds each connection to its actor.

Each accepted websocket runs its reader in the listener's handler task: frames go to the
ChargePoint actor's mailbox as they arrive; the connection is registered in the node's ``links``
so it survives restarts of the ChargePoint actor. A charge point that floods its actor's mailbox
(more queued frames than ``MAX_QUEUED_FRAMES``) is disconnected with 1008, so one misbehaving
charge point cannot starve the others.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from actors import credentials
from actors.broker_context import BrokerContext, Link
from actors.charge_point import ChargePoint
from actors.cloud_link import CloudLink
from actors.messages import ChargePointConnected, ChargePointDisconnected, FrameFromChargePoint
from actors.shards import shard_of
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import LinkClosed, LinkError, OcppConnection
from drivers.ocpp.handover import HandoverServer
from drivers.ocpp.server import ChargePointAccess, ListenerOptions, OcppListener, tls_server_context
from supervisors.actor import Actor, ActorContext, ActorRef
from supervisors.intensity import Backoff
from supervisors.messages import StartChild
from supervisors.spec import ChildSpec

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 500


def charge_point_spec(broker: BrokerContext, cp_id: str) -> ChildSpec:
    return ChildSpec(id=cp_id, start=lambda ctx: ChargePoint(ctx, broker, cp_id))


def cloud_link_spec(broker: BrokerContext, cp_id: str) -> ChildSpec:
    cloud = broker.config.cloud
    reconnect = Backoff(
        min_s=cloud.reconnect_min_s if cloud else 1.0,
        max_s=cloud.reconnect_max_s if cloud else 60.0,
    )
    return ChildSpec(id=cp_id, start=lambda ctx: CloudLink(ctx, broker, cp_id), backoff=reconnect)


class Listener(Actor):
    def __init__(self, ctx: ActorContext, broker: BrokerContext) -> None:
        super().__init__(ctx)
        self.broker = broker
        self.server: OcppListener | None = None
        self.handover: HandoverServer | None = None  # broker nodes other than the front
        self.accepted = 0

    async def started(self) -> None:
        cfg = self.broker.config.listener
        ssl_context = None
        if cfg.security_profile == 2 and cfg.tls_cert_file and cfg.tls_key_file:
            ssl_context = tls_server_context(cfg.tls_cert_file, cfg.tls_key_file)
        options = ListenerOptions(
            host=cfg.host,
            port=cfg.port,
            security_profile=cfg.security_profile,
            ssl_context=ssl_context,
            max_frame_bytes=cfg.max_frame_bytes,
            auto_register=cfg.auto_register,
            ping_interval_s=cfg.ping_interval_s,
            ping_timeout_s=cfg.ping_timeout_s,
            compression=cfg.compression == "deflate",
        )
        broker = self.broker
        if broker.shards == 1:
            self.server = OcppListener(self._on_connect, self._lookup, options)
        elif broker.shard == 0:
            # The front: every connection comes in here; those of the other broker nodes'
            # charge points go to them before their handshake, or with TLS after its handshake,
            # relayed by the front (drivers/ocpp/handover.py).
            self.server = OcppListener(self._on_connect, self._lookup, options, route=self._route)
        else:
            self.server = OcppListener(self._on_connect, self._lookup, options, listening=False)
            self.handover = HandoverServer(broker.handover_socket(broker.shard), self.server.adopt)
        await self.server.start()
        if self.handover is not None:
            await self.handover.start()
            log.info("OCPP connections handed over on %s", self.handover.path)
        else:
            broker.listener_port = self.server.port
            log.info("OCPP listener on %s", ", ".join(self.server.bound_addresses))

    def _route(self, cp_id: str) -> Path | None:
        shard = shard_of(cp_id, self.broker.shards)
        return None if shard == 0 else self.broker.handover_socket(shard)

    async def terminate(self, reason: object) -> None:
        if self.handover is not None:
            await self.handover.close()
        if self.server is not None:
            await self.server.stop()

    def report(self) -> dict[str, Any]:
        server, handover = self.server, self.handover
        report: dict[str, Any] = {
            "addresses": [] if server is None else server.bound_addresses,
            "connected": len(self.broker.links),
            "accepted_total": self.accepted,
            # connections refused at the handshake: bad path or identity, unknown charge point,
            # bad credentials (each logged once a minute per charge point, drivers/ocpp/server.py)
            "refused": {} if server is None else dict(server.refused),
        }
        if server is not None and self.broker.shards > 1:
            report["handed_over"] = server.handed_over
            report["handover_failed"] = server.handover_failed
            if server.options.ssl_context is not None and handover is None:
                report["relayed"] = server.relayed
                report["relays_open"] = server.relays_open
        if handover is not None:
            report["handover_socket"] = str(handover.path)
            report["adopted"] = handover.adopted
        return report

    async def receive(self, msg: object) -> Any:
        return await super().receive(msg)

    def _lookup(self, cp_id: str) -> ChargePointAccess | None:
        cp = self.broker.charge_point(cp_id)
        if cp is None:
            return None
        versions = tuple(OcppVersion)
        if cp.ocpp.ocpp_version is not None:
            versions = (cp.ocpp.ocpp_version,)
        stored = credentials.load(self.ctx.system.require_store(), cp.id)
        password, previous = credentials.listener_passwords(stored, cp.ocpp.password)
        return ChargePointAccess(
            password=password, previous_password=previous, ocpp_versions=versions
        )

    async def _actor_for(self, conn: OcppConnection) -> tuple[str, ActorRef] | None:
        cp = self.broker.charge_point(conn.charge_point_id)
        cp_id = cp.id if cp is not None else conn.charge_point_id
        system = self.ctx.system
        ref = system.lookup(self.broker.cp_path(cp_id))
        if ref is None and conn.auto_registered and self.broker.config.cloud is not None:
            node = self.broker.node
            cloud_sup = system.lookup(f"{node}/cloud")
            cp_sup = system.lookup(f"{node}/charge_points")
            if cloud_sup is None or cp_sup is None:
                return None
            await cloud_sup.ask(StartChild(spec=cloud_link_spec(self.broker, cp_id)))
            ref = await cp_sup.ask(StartChild(spec=charge_point_spec(self.broker, cp_id)))
            log.info("auto-registered charge point %s", cp_id)
        return None if ref is None else (cp_id, ref)

    async def _on_connect(self, conn: OcppConnection) -> None:
        found = await self._actor_for(conn)
        if found is None:
            await conn.close(1011, "no actor for this charge point")
            return
        cp_id, ref = found
        self.accepted += 1
        link = Link(conn=conn, conn_no=next(self.broker.conn_numbers), version=conn.ocpp_version)
        self.broker.links[cp_id] = link
        ref.tell(
            ChargePointConnected(
                conn_no=link.conn_no,
                ocpp_version=conn.ocpp_version.value,
                remote_address=conn.remote_address,
            )
        )
        code: int | None = None
        reason = ""
        try:
            while True:
                text = await conn.recv()
                ref.tell(FrameFromChargePoint(conn_no=link.conn_no, text=text))
                if ref.mailbox_depth > MAX_QUEUED_FRAMES:
                    log.warning(
                        "%s floods its actor (%d queued): disconnecting", cp_id, ref.mailbox_depth
                    )
                    await conn.close(1008, "too many frames")
        except LinkClosed as exc:
            code, reason = exc.code, exc.reason
        except LinkError as exc:
            reason = str(exc)
        finally:
            if self.broker.links.get(cp_id) is link:
                del self.broker.links[cp_id]
            ref.tell(ChargePointDisconnected(conn_no=link.conn_no, code=code, reason=reason))
