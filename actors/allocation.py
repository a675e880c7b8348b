"""Load allocation: a pure function from meters, limits and demand to per-connector limits.

The rules, in order:

1. Headroom of every constraint (each phase of each node, and a node's total when it has a power
   limit) = limit - margin - (meter - managed EV current). A node without a meter has no base load.
2. Admission: connectors are ranked by priority (higher first), then whether the car draws (a
   car known not to draw at what it was offered comes after those that do), then arrival
   (earlier first). Each is admitted at its minimum current (6 A, or more for a car learned not
   to draw at 6 A) if that still fits on every constraint it loads, given the connectors ranked
   above it; otherwise it is paused at 0 A. Nobody gets between 0 and 6 A. A connector that is
   not charging now (offered 0 A) is admitted only if its minimum plus ``start_margin_a`` fits:
   the hysteresis between pausing and resuming, so noise on the meter does not flip it.
3. Filling: the highest priority tier rises from 6 A in equal steps (progressive filling, so equal
   share inside a tier) until each connector hits its own cap or a constraint runs out; then the
   next tier shares what is left.
4. A connector's cap is its maximum, or, when the car has settled and draws less than offered, its
   draw plus a slack (never below its minimum): the current it does not use goes back to the pool.
5. A car loads the grid phases its charge point's rotation puts its phases on: all the phases
   the charge point is wired with, or the ones it was seen drawing on (a 1-phase car).

Every connector's result names the constraint that bound it, for the audit trail.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from actors.allocation_constraints import (
    Constraint,
    ancestry,
    build_constraints,
    managed_by_grid_phase,
    overloaded,
)
from actors.allocation_types import (
    PHASE_NAMES,
    AllocationConfig,
    AllocationResult,
    Binding,
    ConnectorAllocation,
    ConnectorDemand,
    NodeHeadroom,
    NodeInput,
    cp_phases,
    load_phase_names,
    load_phases,
)

__all__ = [
    "allocate",
    "ancestry",
    "build_constraints",
    "effective_cap",
    "managed_by_grid_phase",
    "min_current",
    "overloaded",
    "rank_key",
]

_EPS = 1e-9
_ALL_PHASES = (0, 1, 2)


def rank_key(d: ConnectorDemand) -> tuple[int, bool, float, str]:
    """Who is served first: higher priority, then a car that draws before one that does not,
    then earlier arrival, then id (for determinism)."""
    return (-d.priority, d.idle, d.arrived_s, d.connector_id)


def min_current(d: ConnectorDemand, cfg: AllocationConfig) -> float:
    """The least a connector is offered when it charges: the configured minimum, or what the
    car was learned to need (never above its maximum)."""
    return max(cfg.min_current_a, min(d.min_current_a, d.max_current_a))


def effective_cap(d: ConnectorDemand, cfg: AllocationConfig) -> tuple[float, Binding, str]:
    """The most a connector can use now, and why.

    A settled car that draws clearly less than offered (by more than half the slack) is capped
    at its draw plus the slack; the hysteresis between the two keeps the cap from oscillating
    (offer 9 A, draw 8 A stays capped, instead of rising to 13 A and falling back)."""
    cap, drawn = _cap(d, cfg)
    binding, reason = _cap_binding(cap, drawn, d.offered_a, d.max_source)
    return cap, binding, reason


# The same few caps for every connector at every step: each binding and text made once (a
# binding is immutable, shared as the constraints' are; typed: 16 and 16.0 are not one key).
@functools.lru_cache(maxsize=1024, typed=True)
def _cap_binding(
    cap: float, drawn: float | None, offered_a: float, source: str
) -> tuple[Binding, str]:
    if drawn is None:
        return Binding(kind="car_max", limit_a=cap, source=source), _max_reason(cap, source)
    return Binding(kind="undrawn", limit_a=cap), _undrawn_reason(drawn, offered_a, cap)


# The same few texts for every connector at every step: made once each.
@functools.lru_cache(maxsize=1024)
def _max_reason(cap: float, source: str = "") -> str:
    if source:
        return f"maximum {cap:.1f} A set by the {source}"
    return f"connector maximum {cap:.1f} A"


@functools.lru_cache(maxsize=4096)
def _undrawn_reason(drawn: float, offered: float, cap: float) -> str:
    return (
        f"car draws {drawn:.1f} A of {offered:.1f} A offered; "
        f"capped at {cap:.1f} A, the rest returns to the pool"
    )


def _cap(
    d: ConnectorDemand, cfg: AllocationConfig, min_a: float | None = None
) -> tuple[float, float | None]:
    """:func:`effective_cap`'s figure alone (the allocation explains only the caps that bind),
    with the draw that set it (None: the connector maximum). ``min_a``: :func:`min_current`,
    if the caller has it."""
    cap = d.max_current_a
    if d.settled and d.offered_a > 0:
        measured = d.measured_a
        phases = cp_phases(d)
        drawn = max(measured) if phases == _ALL_PHASES else max([measured[p] for p in phases])
        own_min = min_current(d, cfg) if min_a is None else min_a
        undrawn_cap = max(own_min, drawn + cfg.draw_slack_a)
        if drawn < d.offered_a - cfg.draw_slack_a / 2 and undrawn_cap < cap:
            return undrawn_cap, drawn
    return cap, None


def allocate(
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    cfg: AllocationConfig,
    *,
    ignore_meters: bool = False,
    margin_a: float | None = None,
    start_margin_a: float = 0.0,
) -> AllocationResult:
    """Per-connector limits for one instant. Pure: same inputs, same result.

    ``ignore_meters`` and ``margin_a`` let the control loop compute a fail-safe allocation (no
    trusted meter, a budget the installer declared safe) with the same rules;
    ``start_margin_a`` is the room a connector at 0 A needs above its minimum to be admitted.
    """
    ids = [d.connector_id for d in demands]
    if len(set(ids)) != len(ids):
        raise ValueError(f"connector ids must be unique, got {sorted(ids)!r}")
    margin = cfg.margin_a if margin_a is None else margin_a
    constraints = build_constraints(nodes, demands, margin_a=margin, ignore_meters=ignore_meters)
    by_connector = _loads(nodes, demands, constraints)

    level: dict[str, float] = {}
    results: dict[str, tuple[Binding, str]] = {}
    caps: dict[str, float] = {}
    ranked = sorted(demands, key=rank_key)
    min_a = cfg.min_current_a
    # priority -> the connectors admitted, in rank order (a dict: filled in that order, so the
    # float sums of a node's total, whose weights differ, do not depend on the string hash seed)
    tiers: dict[int, dict[str, None]] = {}

    for d in ranked:
        cid = d.connector_id
        if not d.active:
            results[cid] = (Binding(kind="inactive"), "no car wants energy")
            continue
        max_a = d.max_current_a
        if max_a < min_a - _EPS:
            by = f" (set by the {d.max_source})" if d.max_source else ""
            results[cid] = (
                Binding(kind="below_min", limit_a=max_a, source=d.max_source),
                f"maximum {max_a:.1f} A{by} is below the minimum {min_a:.1f} A; paused",
            )
            continue
        own_min = max(min_a, min(d.min_current_a, max_a))  # min_current(d, cfg)
        start = start_margin_a if d.offered_a <= 0 else 0.0
        loads = by_connector[cid]
        if start:
            blocked = _first_blocked(loads, own_min, start)
        else:  # (its no-start case inline: most connectors, every step)
            blocked = None
            for c, w, _ in loads:
                if c.used_a + w * own_min > c.capacity_a + _EPS:
                    blocked = c
                    break
        if blocked is not None:
            start = _start_margin(blocked, start)
            left = max(0.0, blocked.left_a)
            to_start = f" (+{start:.1f} A to start)" if start > 0 else ""
            results[cid] = (
                _node_binding(blocked, kind="paused", left_a=left),
                f"paused: did not fit at {own_min:.1f} A{to_start} on {_where(blocked)} "
                f"(headroom left {left:.1f} A); priority {d.priority}, "
                + (
                    "it does not draw, so the cars that draw are served first"
                    if d.idle
                    else "the connectors ranked above it are served first"
                ),
            )
            continue
        level[cid] = own_min
        caps[cid] = _cap(d, cfg, own_min)[0]
        for c, w, _ in loads:
            c.used_a += w * own_min
        tier = tiers.get(d.priority)
        if tier is None:
            tier = tiers[d.priority] = {}
        tier[cid] = None

    by_id: dict[str, ConnectorDemand] = {}
    for priority in sorted(tiers, reverse=True):
        at_cap = _fill(tiers[priority], level, caps, constraints, by_connector, results)
        if at_cap and not by_id:
            by_id = dict(zip(ids, demands, strict=True))
        for cid in at_cap:
            _, binding, reason = effective_cap(by_id[cid], cfg)
            results[cid] = (binding, reason)

    out: list[ConnectorAllocation] = []
    allocated: dict[str, float] = {}
    resolution = cfg.resolution_a
    rounded: dict[float, float] = {}  # most connectors share a few levels
    for d in demands:
        cid = d.connector_id
        at = level.get(cid, 0.0)
        limit = rounded.get(at)
        if limit is None:
            limit = rounded[at] = _round_down(at, resolution)
        binding, reason = results[cid]
        out.append(
            ConnectorAllocation(
                connector_id=cid,
                limit_a=limit,
                grid_phases=load_phase_names(d),
                binding=binding,
                reason=reason,
            )
        )
        allocated[cid] = limit
    return AllocationResult(connectors=tuple(out), headroom=_report(constraints, allocated))


# A connector's load on a constraint: the constraint, its weight there, the constraint's index.
_Load = tuple[Constraint, float, int]


def _loads(
    nodes: Sequence[NodeInput], demands: Sequence[ConnectorDemand], constraints: list[Constraint]
) -> dict[str, list[_Load]]:
    """Each connector's constraints (those whose weights name it), in the constraints' order,
    with its weight on each: read for every connector in admission and at every filling round.
    Connectors on the same node loading the same phases load the same constraints with the same
    weights (build_constraints): one list for them all."""
    paths = ancestry(nodes)
    shared: dict[tuple[str, tuple[int, ...]], list[_Load]] = {}
    out: dict[str, list[_Load]] = {}
    for d in demands:
        if not d.active:
            out[d.connector_id] = []  # never offered anything: it loads no constraint
            continue
        phases = load_phases(d)
        key = (d.node, phases)
        loads = shared.get(key)
        if loads is None:
            path, names = paths[d.node], {PHASE_NAMES[p] for p in phases}
            loads = shared[key] = [
                (c, c.weights[d.connector_id], i)
                for i, c in enumerate(constraints)
                if c.node in path and (c.phase in names or c.phase == "total")
            ]
        out[d.connector_id] = loads
    return out


def _fill(
    rising: dict[str, None],
    level: dict[str, float],
    caps: Mapping[str, float],
    constraints: Sequence[Constraint],
    by_connector: Mapping[str, Sequence[_Load]],
    results: dict[str, tuple[Binding, str]],
) -> set[str]:
    """Raise every rising connector by the same amount until each is frozen (max-min fairness).
    Returns the connectors frozen at their own cap (their binding is the cap's, for the caller
    to explain); those frozen by a constraint get theirs in ``results``. ``rising`` is in rank
    order and is raised in it: a constraint's used current (a node's total adds 1 for a 1-phase
    car and 3 for a 3-phase one) sums the same way in every process, whatever the hash seed."""
    at_cap: set[str] = set()
    # Each constraint's rate: the sum of its rising members' weights, kept as members freeze.
    # The weights are whole numbers (1, or a car's phase count on a node's total), so the sums
    # kept are exactly the sums made afresh.
    rates = [sum([w for cid, w in c.weights.items() if cid in rising]) for c in constraints]
    while rising:
        step = min([caps[cid] - level[cid] for cid in rising])  # rising is not empty
        for c, rate in zip(constraints, rates, strict=True):
            if rate > 0:
                step = min(step, c.left_a / rate)
        step = max(0.0, step)
        frozen: set[str] = set()
        for cid in rising:
            at = level[cid] = level[cid] + step
            for c, w, _ in by_connector[cid]:
                c.used_a += w * step
            if at >= caps[cid] - _EPS:
                frozen.add(cid)
                at_cap.add(cid)
        for c in constraints:
            # An unlimited constraint (a node whose sources set no limit now) freezes no one:
            # its left_a (inf) is not "used up" however it compares with inf.
            if not c.left_a <= _EPS * max(1.0, c.capacity_a) < math.inf:
                continue
            members = [cid for cid in c.weights if cid in rising and cid not in frozen]
            if members:
                sharing = len([cid for cid in c.weights if cid in level])
                bound = (  # the same for every member (immutable): built once
                    _node_binding(c, kind="node", left_a=c.capacity_a),
                    f"limited by {_where(c)}: limit {c.limit_a:.1f} A, headroom "
                    f"{c.capacity_a:.1f} A shared by {sharing} connector(s)",
                )
                for cid in members:
                    frozen.add(cid)
                    results[cid] = bound
        if not frozen:  # cannot happen with exact arithmetic; never loop forever on rounding
            return at_cap | rising.keys()
        for cid in frozen:
            del rising[cid]
        if not rising:
            break
        for cid in frozen:
            for _, w, i in by_connector[cid]:
                rates[i] -= w
    return at_cap


def _first_blocked(loads: Iterable[_Load], amount_a: float, start_a: float) -> Constraint | None:
    if not start_a:  # a car that charges (most, every step): no start margin to place
        for c, w, _ in loads:
            if c.used_a + w * amount_a > c.capacity_a + _EPS:
                return c
        return None
    for c, w, _ in loads:
        needed = amount_a + _start_margin(c, start_a)
        if c.used_a + w * needed > c.capacity_a + _EPS:
            return c
    return None


def _start_margin(c: Constraint, start_a: float) -> float:
    """The room a car at 0 A needs above its minimum on ``c``: none on the total of a node
    without a meter (a charge point dimmed under section 14a to 4.2 kW), whose load is only the
    currents the allocation sets, as it keeps no margin there (allocation_constraints)."""
    return 0.0 if c.phase == "total" and c.meter_a is None else start_a


def _node_binding(c: Constraint, *, kind: Literal["node", "paused"], left_a: float) -> Binding:
    return Binding(
        kind=kind,
        node=c.node,
        phase=c.phase,
        source=c.source,
        limit_a=c.limit_a,
        headroom_a=left_a,
    )


def _where(c: Constraint) -> str:
    source = f", source {c.source!r}" if c.source else ""
    return f"node {c.node!r} {c.phase}{source}"


def _round_down(value: float, resolution: float) -> float:
    if value <= 0:
        return 0.0
    return round(math.floor(value / resolution + 1e-6) * resolution, 6)


def _report(
    constraints: Sequence[Constraint], allocated: Mapping[str, float]
) -> tuple[NodeHeadroom, ...]:
    return tuple(
        NodeHeadroom(
            node=c.node,
            phase=c.phase,
            limit_a=c.limit_a,
            source=c.source,
            margin_a=c.margin_a,
            meter_a=c.meter_a,
            managed_a=c.managed_a,
            base_load_a=c.base_load_a,
            headroom_a=c.headroom_a,
            allocated_a=sum([w * allocated[cid] for cid, w in c.weights.items()]),
        )
        for c in constraints
    )
