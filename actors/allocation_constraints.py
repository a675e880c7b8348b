"""The constraints of the site tree: every node phase and node total, with its headroom.

Headroom = limit - margin - base load, where base load = meter - managed EV current (what flows
through the node that the allocation does not control), or the node's base floor if that is
higher. A node without a meter has no base load; a metered node never read has no headroom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from actors.allocation_types import (
    PHASE_NAMES,
    ConnectorDemand,
    NodeInput,
    grid_phases,
    load_phases,
)


@dataclass(slots=True)
class Constraint:
    """One capacity the allocation must respect: a node's phase, or a node's total."""

    node: str
    phase: str
    limit_a: float
    source: str
    margin_a: float
    meter_a: float | None
    managed_a: float
    base_load_a: float
    headroom_a: float
    weights: dict[str, float] = field(default_factory=dict)
    used_a: float = 0.0  # what the allocation in progress has handed out on it
    # max(0, headroom): what may be handed out (an attribute: read for every connector on it)
    capacity_a: float = field(init=False)

    def __post_init__(self) -> None:
        self.capacity_a = max(0.0, self.headroom_a)

    @property
    def left_a(self) -> float:
        return self.capacity_a - self.used_a


def ancestry(nodes: Sequence[NodeInput]) -> dict[str, tuple[str, ...]]:
    """Each node's path to the root, itself first; rejects a malformed tree."""
    by_name: dict[str, NodeInput] = {}
    for node in nodes:
        if node.name in by_name:
            raise ValueError(f"node {node.name!r} appears twice in the site tree")
        by_name[node.name] = node
    roots = [n.name for n in nodes if n.parent is None]
    if len(roots) != 1:
        raise ValueError(f"the site tree needs exactly one root node, got {roots!r}")
    paths: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        path = [node.name]
        current = node
        while current.parent is not None:
            if current.parent not in by_name:
                raise ValueError(
                    f"node {current.name!r} names parent {current.parent!r}, which is not a node"
                )
            if current.parent in path:
                raise ValueError(f"the site tree has a cycle through {current.parent!r}")
            path.append(current.parent)
            current = by_name[current.parent]
        paths[node.name] = tuple(path)
    return paths


def managed_by_grid_phase(demand: ConnectorDemand) -> tuple[float, float, float]:
    """The connector's measured draw per grid phase, as the meter upstream sees it.

    After the offer has settled, anything drawn above the offer is not under our control (a car
    or charger ignoring its limit) and is left in the base load, so it is not handed out again.
    """
    measured = demand.measured_a
    a, b, c = grid_phases(demand.phase_rotation, 3)  # a permutation of 0, 1, 2
    out = [0.0, 0.0, 0.0]
    if demand.settled:
        offered = demand.offered_a
        m0, m1, m2 = measured
        out[a] += offered if offered < m0 else m0  # min(drawn, offered)
        out[b] += offered if offered < m1 else m1
        out[c] += offered if offered < m2 else m2
    else:
        m0, m1, m2 = measured
        out[a] += m0
        out[b] += m1
        out[c] += m2
    return (out[0], out[1], out[2])


def build_constraints(
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    *,
    margin_a: float,
    ignore_meters: bool = False,
) -> list[Constraint]:
    """Every constraint of the tree with its headroom and which connectors load it.

    Weights: a connector loads each grid phase its car draws on with its limit, and a node's total
    with its limit times its number of phases.
    """
    paths = ancestry(nodes)
    managed: dict[str, list[float]] = {n.name: [0.0, 0.0, 0.0] for n in nodes}
    # Per node, the sums of managed current of it and its ancestors: a connector adds to each.
    chains = {name: [managed[p] for p in path] for name, path in paths.items()}
    rotations: dict[str, tuple[int, ...]] = {}
    for d in demands:
        chain = chains.get(d.node)
        if chain is None:
            raise ValueError(f"connector {d.connector_id!r} hangs on unknown node {d.node!r}")
        # managed_by_grid_phase(d), inline (every connector, at every allocation): each
        # charge-point phase's draw onto the grid phase its rotation puts it on.
        g0, g1, g2 = rotations.get(d.phase_rotation) or rotations.setdefault(
            d.phase_rotation, grid_phases(d.phase_rotation, 3)
        )
        m0, m1, m2 = d.measured_a
        if d.settled:
            offered = d.offered_a
            m0 = offered if offered < m0 else m0
            m1 = offered if offered < m1 else m1
            m2 = offered if offered < m2 else m2
        for m in chain:
            m[g0] += m0
            m[g1] += m1
            m[g2] += m2

    constraints: list[Constraint] = []
    for node in nodes:
        metered = node.metered and not ignore_meters
        meter = node.meter.current_a if (metered and node.meter is not None) else None
        bases: list[float] = []
        # A phase of a node without a meter capped by its power limit alone (effective_limits
        # caps each phase at P / U too) keeps no margin, as the total keeps none: the total binds
        # it anyway, and its margin would take 1 A from a 1-phase car under a 4.2 kW dimming.
        power_only = not node.metered and math.isfinite(node.limit.total_a)
        for p in range(3):
            if not metered:
                base = 0.0
            elif meter is None:
                base = math.inf  # metered but never read: nothing is known to be free
            else:
                base = meter[p] - managed[node.name][p]
                if node.base_floor_a is not None:
                    base = max(base, node.base_floor_a[p])
            bases.append(base)
            limit = node.limit.current_a[p]
            phase_margin_a = 0.0 if power_only and limit >= node.limit.total_a else margin_a
            constraints.append(
                Constraint(
                    node=node.name,
                    phase=PHASE_NAMES[p],
                    limit_a=limit,
                    source=node.limit.sources[p],
                    margin_a=phase_margin_a,
                    meter_a=None if meter is None else meter[p],
                    managed_a=managed[node.name][p],
                    base_load_a=base,
                    headroom_a=_headroom(limit, phase_margin_a, base),
                )
            )
        if math.isfinite(node.limit.total_a):
            base_total = sum(bases)
            # A power limit on a node without a meter (a charge point dimmed under section 14a
            # EnWG to 4.2 kW) caps only the cars' own currents, which the allocation sets: no
            # margin for load it cannot see. 4.2 kW is itself set above 6 A x 3 x 230 V; three
            # phases' margins would pause a 3-phase car there instead of dimming it.
            total_margin_a = 3 * margin_a if node.metered else 0.0
            constraints.append(
                Constraint(
                    node=node.name,
                    phase="total",
                    limit_a=node.limit.total_a,
                    source=node.limit.total_source,
                    margin_a=total_margin_a,
                    meter_a=None if meter is None else sum(meter),
                    managed_a=sum(managed[node.name]),
                    base_load_a=base_total,
                    headroom_a=_headroom(node.limit.total_a, total_margin_a, base_total),
                )
            )

    by_phase: dict[str, list[dict[str, float]]] = {}
    totals: dict[str, dict[str, float]] = {}
    for c in constraints:
        if c.phase == "total":
            totals[c.node] = c.weights
        else:
            by_phase.setdefault(c.node, []).append(c.weights)  # L1, L2, L3: in that order
    # Per node, the weights of it and its ancestors: per phase, and the total's (if any).
    loaded = {name: [(by_phase[p], totals.get(p)) for p in path] for name, path in paths.items()}
    for d in demands:
        if not d.active:
            continue  # never offered anything: it loads no constraint
        phases = load_phases(d)
        cid = d.connector_id
        for node_phases, total in loaded[d.node]:
            for p in phases:
                node_phases[p][cid] = 1.0
            if total is not None:
                total[cid] = float(len(phases))
    return constraints


def _headroom(limit_a: float, margin_a: float, base_a: float) -> float:
    if math.isinf(base_a):
        return -math.inf
    return limit_a - margin_a - base_a


def overloaded(
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    limits: Mapping[str, float],
    *,
    margin_a: float,
) -> list[Constraint]:
    """Constraints that the given limits would exceed (with this margin); empty when they fit."""
    constraints = build_constraints(nodes, demands, margin_a=margin_a)
    return [
        c
        for c in constraints
        if sum(w * limits.get(cid, 0.0) for cid, w in c.weights.items()) > c.capacity_a + 1e-6
    ]
