"""The broker node's actor tree and its status summary.

broker (rest_for_one)
├── store          group-commit writer (everything below writes through it)
├── authorizer     local list, cache, local decisions
├── cloud          one CloudLink per charge point (one_for_one; network backoff)
├── charge_points  one ChargePoint per charge point (one_for_one)
└── listener       the websocket server (last: it starts when everything it feeds exists)
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from actors.authorizer import Authorizer
from actors.broker_context import BrokerContext
from actors.charge_point import ChargePoint
from actors.cloud_link import CloudLink
from actors.edge_endpoint import EdgeEndpoint
from actors.energy_link import DemandCollector, ProfileRouter
from actors.listener import Listener, charge_point_spec, cloud_link_spec
from actors.shards import broker_node
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from supervisors.trees import NodeContext, store_writer_spec


def build_broker(ctx: NodeContext) -> SupervisorSpec:
    broker = BrokerContext(config=ctx.config, node=ctx.name)
    # With several broker nodes (shards), each runs the actors of its own charge points.
    cps = [cp.id for cp in ctx.config.charge_points if broker.serves(cp.id)]
    cloud = ctx.config.cloud
    edge_id = None if cloud is None or broker.shard != 0 else cloud.edge_identity
    links = [*cps, edge_id] if edge_id else cps
    children: list[ChildSpec] = [
        store_writer_spec(),
        ChildSpec(id="authorizer", start=lambda c: Authorizer(c, broker)),
        ChildSpec(id="demand", start=lambda c: DemandCollector(c, broker)),
        ChildSpec(id="profiles", start=lambda c: ProfileRouter(c, broker)),
    ]
    if ctx.config.cloud is not None:
        children.append(
            ChildSpec(
                id="cloud",
                start=SupervisorSpec(
                    max_restarts=50,
                    period_s=10,
                    children=tuple(cloud_link_spec(broker, cp_id) for cp_id in links),
                ),
            )
        )
    children += [
        ChildSpec(
            id="charge_points",
            start=SupervisorSpec(
                max_restarts=50,
                period_s=10,
                children=tuple(charge_point_spec(broker, cp_id) for cp_id in cps)
                + ((edge_endpoint_spec(broker, edge_id, ctx.name),) if edge_id else ()),
            ),
        ),
        ChildSpec(id="listener", start=lambda c: Listener(c, broker)),
    ]
    return SupervisorSpec(
        strategy="rest_for_one", max_restarts=5, period_s=30, children=tuple(children)
    )


def starts_later(ctx: NodeContext, path: str) -> bool:
    """A charge point not in the site file gets its ChargePoint and CloudLink when it connects
    (``[listener] auto_register``, with a cloud: actors.listener): mail for them waits for it.
    Without auto-registration no actor starts under charge_points or cloud after the start."""
    if not ctx.config.listener.auto_register or ctx.config.cloud is None:
        return False
    return path.startswith((f"{ctx.name}/charge_points/", f"{ctx.name}/cloud/"))


def edge_endpoint_spec(broker: BrokerContext, identity: str, node: str) -> ChildSpec:
    # Under charge_points on the front: actors.shards.edge_endpoint_path (the energy node asks it).
    # Whose audit trail to sync: every node of the site (they share the storage directory), the
    # other broker nodes' too (``[runtime] broker_shards``).
    others = (broker_node(k) for k in range(broker.shards))
    nodes = tuple(dict.fromkeys((node, "energy", *others)))
    return ChildSpec(id=identity, start=lambda c: EdgeEndpoint(c, broker, identity, nodes))


SUMMARY_STEP = 50  # actors per step of the summary (a charge point is two): ~1-2 ms of the loop


def broker_summary(system: ActorSystem) -> dict[str, Any]:
    steps = broker_summary_steps(system)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            summary: dict[str, Any] = done.value
            return summary


def broker_summary_steps(system: ActorSystem) -> Generator[None, None, dict[str, Any]]:
    """The broker's part of ``run.py status``, yielding every ``SUMMARY_STEP`` actors:
    the periodic snapshot of 500 charge points took 20-40 ms of the loop in one piece, the
    longest stall of the round trip through the edge (bench/broker.py)."""
    node = system.name
    listener = system.actor(f"{node}/listener")
    cps: dict[str, Any] = {}
    queued = online = 0
    for i, cell in enumerate(list(system.cells.values())):
        if i and i % SUMMARY_STEP == 0:
            yield
        actor = cell.actor
        if isinstance(actor, ChargePoint) and cell.running:
            report = actor.report()
            link = system.actor(f"{node}/cloud/{actor.cp_id}")
            link_cell = None if link is None else system.cells.get(link.path)
            if isinstance(link, CloudLink) and link_cell is not None and link_cell.running:
                cloud = link.report()
                report["cloud"] = {
                    k: cloud[k]
                    for k in ("online", "queue_depth", "dead_letters", "last_error", "replayed")
                }
                queued += cloud["queue_depth"]
                online += bool(cloud["online"])
            cps[actor.cp_id] = report

    authorizer = system.actor(f"{node}/authorizer")
    edge = next((c.actor for c in system.cells.values() if isinstance(c.actor, EdgeEndpoint)), None)
    profiles = system.actor(f"{node}/profiles")
    return {
        "profiles": profiles.report() if isinstance(profiles, ProfileRouter) else None,
        "edge_session": None if edge is None else edge.report(),
        "listener": listener.report() if isinstance(listener, Listener) else None,
        "charge_points_connected": sum(1 for r in cps.values() if r.get("connected")),
        "charge_points": cps,
        "cloud_sessions_online": online,
        "queued_for_cloud": queued,
        "authorization": authorizer.report() if isinstance(authorizer, Authorizer) else None,
    }
