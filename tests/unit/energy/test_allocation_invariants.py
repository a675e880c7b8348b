"""Allocation invariants under random sites. The reference figures (headroom, phase mapping,
caps, minimums, ranks) are recomputed here from the raw inputs, not taken from the module under
test. Random sites include what the control loop learns about cars (1-phase cars, a minimum
above 6 A, cars that do not draw), the margin a start needs, phases with no limit in force (inf),
meters not read yet and a section 14a power dimming of a node without a meter."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.allocation import allocate
from actors.allocation_types import (
    AllocationConfig,
    AllocationResult,
    ConnectorDemand,
    MeterSample,
    NodeInput,
    NodeLimit,
)

CFG = AllocationConfig(margin_a=1.0, min_current_a=6.0, draw_slack_a=1.0, resolution_a=0.1)
MAPPING = {
    "RST": (0, 1, 2),
    "RTS": (0, 2, 1),
    "SRT": (1, 0, 2),
    "STR": (1, 2, 0),
    "TRS": (2, 0, 1),
    "TSR": (2, 1, 0),
}
TOL = 1e-6

amps = st.floats(min_value=0, max_value=80, allow_nan=False).map(lambda a: round(a, 1))
signed = st.floats(min_value=-30, max_value=90, allow_nan=False).map(lambda a: round(a, 1))
# A phase with no limit in force (a section 14a contact open: the node at inf) among the others
limit_amps = amps | st.just(math.inf)


@st.composite
def sites(
    draw: st.DrawFn, *, single_node: bool = False
) -> tuple[list[NodeInput], list[ConnectorDemand]]:
    names = ["site"]
    nodes: list[NodeInput] = []
    n_feeders = 0 if single_node else draw(st.integers(0, 3))
    for i in range(n_feeders + 1):
        name = "site" if i == 0 else f"f{i}"
        parent = None if i == 0 else draw(st.sampled_from(names))
        metered = draw(st.booleans())
        # (a metered node's meter not read yet: no headroom there)
        meter = (
            MeterSample(current_a=(draw(signed), draw(signed), draw(signed)), read_s=0.0)
            if metered and draw(st.integers(0, 9))
            else None
        )
        total = draw(
            st.one_of(
                st.just(math.inf),
                st.floats(min_value=5, max_value=200),
                st.just(4200 / 230),  # a section 14a dimming: 3 x 6 A fit, 3 x 7 A do not
            )
        )
        nodes.append(
            NodeInput(
                name=name,
                parent=parent,
                limit=NodeLimit(
                    current_a=(draw(limit_amps), draw(limit_amps), draw(limit_amps)),
                    sources=(f"{name}-L1", f"{name}-L2", f"{name}-L3"),
                    total_a=total,
                    total_source=f"{name}-total",
                ),
                metered=metered,
                meter=meter,
            )
        )
        names.append(name)
    n_cars = draw(st.integers(1, 8))
    cars = []
    for i in range(n_cars):
        single = single_node
        phases = 3 if single else draw(st.sampled_from([1, 2, 3]))
        cars.append(
            ConnectorDemand(
                connector_id=f"c{i}",
                node=draw(st.sampled_from(names[1:] if not single else ["site"])),
                active=draw(st.booleans()) if not single else True,
                max_current_a=draw(st.sampled_from([0.0, 5.0, 6.0, 10.0, 16.0, 32.0]) | amps),
                phases=phases,
                phase_rotation="RST" if single else draw(st.sampled_from(sorted(MAPPING))),
                priority=draw(st.integers(0, 2)),
                arrived_s=float(draw(st.integers(0, 5))),
                offered_a=draw(st.sampled_from([0.0, 6.0, 10.0, 16.0, 32.0])),
                measured_a=(draw(amps), draw(amps), draw(amps)) if not single else (0.0, 0.0, 0.0),
                settled=draw(st.booleans()),
                car_phases=()
                if single
                else draw(
                    st.lists(st.integers(0, 2), max_size=3, unique=True).map(
                        lambda ps: tuple(sorted(ps))
                    )
                ),
                min_current_a=0.0 if single else draw(st.sampled_from([0.0, 6.0, 8.0, 10.0])),
                idle=draw(st.booleans()),
            )
        )
    return nodes, cars


def _cp_phases(c: ConnectorDemand) -> tuple[int, ...]:
    learned = tuple(p for p in c.car_phases if p < c.phases)
    return learned or tuple(range(c.phases))


def _grid(c: ConnectorDemand) -> tuple[int, ...]:
    return tuple(MAPPING[c.phase_rotation][p] for p in _cp_phases(c))


def _min(c: ConnectorDemand) -> float:
    return max(6.0, min(c.min_current_a, c.max_current_a))


def _paths(nodes: list[NodeInput]) -> dict[str, list[str]]:
    parent = {n.name: n.parent for n in nodes}
    out: dict[str, list[str]] = {}
    for n in nodes:
        path: list[str] = []
        cur: str | None = n.name
        while cur is not None:
            path.append(cur)
            cur = parent[cur]
        out[n.name] = path
    return out


def _constraints(
    nodes: list[NodeInput], cars: list[ConnectorDemand]
) -> list[tuple[str, float, dict[str, float]]]:
    """(name, capacity, weights) for every node phase and node total, from first principles."""
    paths = _paths(nodes)
    managed = {n.name: [0.0, 0.0, 0.0] for n in nodes}
    for c in cars:
        for cp_phase, g in enumerate(MAPPING[c.phase_rotation]):
            drawn = c.measured_a[cp_phase]
            if c.settled:
                drawn = min(drawn, c.offered_a)
            for name in paths[c.node]:
                managed[name][g] += drawn
    out = []
    for n in nodes:
        bases = []
        for p in range(3):
            if not n.metered:
                base = 0.0
            elif n.meter is None:
                base = math.inf
            else:
                base = n.meter.current_a[p] - managed[n.name][p]
            bases.append(base)
            weights = {
                c.connector_id: 1.0 for c in cars if n.name in paths[c.node] and p in _grid(c)
            }
            # a margin per phase, but on a node without a meter for a phase its power limit
            # alone caps (the total binds there, and keeps none)
            limit = n.limit.current_a[p]
            power_only = not n.metered and limit >= n.limit.total_a
            margin = 0.0 if power_only else 1.0
            out.append((f"{n.name}/L{p + 1}", max(0.0, limit - margin - base), weights))
        if math.isfinite(n.limit.total_a):
            weights = {
                c.connector_id: float(len(_grid(c))) for c in cars if n.name in paths[c.node]
            }
            # a margin per phase on a metered node; none on a node without a meter (its load
            # is only the cars' currents: a section 14a dimming to 4.2 kW leaves 3 x 6 A)
            cap = max(0.0, n.limit.total_a - (3.0 if n.metered else 0.0) - sum(bases))
            out.append((f"{n.name}/total", cap, weights))
    return out


def _cap(c: ConnectorDemand) -> float:
    cap = c.max_current_a
    if c.settled and c.offered_a > 0:
        drawn = max(c.measured_a[p] for p in _cp_phases(c))
        undrawn = max(_min(c), drawn + 1.0)
        if drawn < c.offered_a - 0.5:
            cap = min(cap, undrawn)
    return cap


def _rank(c: ConnectorDemand) -> tuple[int, bool, float, str]:
    return (-c.priority, c.idle, c.arrived_s, c.connector_id)


def _used(weights: dict[str, float], limits: dict[str, float]) -> float:
    return sum(w * limits[cid] for cid, w in weights.items())


def _check_common(
    nodes: list[NodeInput],
    cars: list[ConnectorDemand],
    result: AllocationResult,
    start_margin_a: float = 0.0,
) -> None:
    limits = result.limits()
    constraints = _constraints(nodes, cars)
    by_id = {c.connector_id: c for c in cars}
    for cid, limit in limits.items():
        c = by_id[cid]
        # Nobody gets between 0 and its minimum (6 A or what its car was learned to need),
        # nobody more than its cap, inactive ones get 0.
        assert limit == 0.0 or _min(c) - TOL <= limit <= _cap(c) + TOL, (cid, limit)
        if not c.active:
            assert limit == 0.0
        # 1-phase/2-phase cars are counted on the grid phases the rotation puts them on (the
        # phases it was seen drawing on, when known).
        expected_phases = tuple(f"L{g + 1}" for g in _grid(c))
        assert result.of(cid).grid_phases == expected_phases
    # The sum per phase never exceeds the headroom, on every node of the tree.
    for name, capacity, weights in constraints:
        assert _used(weights, limits) <= capacity + TOL, (name, capacity, limits)
    # Priorities: a connector paused for lack of room would not fit at its minimum (plus the
    # start margin if it is not charging) even if every connector ranked below it were paused.
    # No start margin on the total of a node without a meter, which keeps no margin either (a
    # section 14a dimming to 4.2 kW starts a 3-phase car at 6 A).
    unmetered = {n.name for n in nodes if not n.metered}
    for c in cars:
        if result.of(c.connector_id).binding.kind != "paused":
            continue
        above = {
            d.connector_id: _min(d)
            for d in cars
            if limits[d.connector_id] > 0 and _rank(d) < _rank(c)
        }
        start = start_margin_a if c.offered_a <= 0 else 0.0
        blocked = []
        for name, cap, w in constraints:
            node_name, phase = name.split("/")
            own = 0.0 if phase == "total" and node_name in unmetered else start
            full = {cid: above.get(cid, 0.0) for cid in limits}
            full[c.connector_id] = _min(c) + own
            blocked.append(_used(w, full) > cap + TOL)
        assert any(blocked), c.connector_id
    # Work conserving: a connector below its cap sits on a (nearly) saturated constraint.
    for c in cars:
        limit = limits[c.connector_id]
        if limit == 0.0 or limit >= _cap(c) - 0.1 - TOL:
            continue
        slack_ok = [
            capacity - _used(w, limits) <= 0.1 * sum(w.values()) + TOL
            for _, capacity, w in constraints
            if c.connector_id in w
        ]
        assert any(slack_ok), (c.connector_id, limit)
    # Undrawn current goes back: a settled car drawing little is not offered much more.
    for c in cars:
        if c.settled and c.offered_a > 0:
            assert limits[c.connector_id] <= max(_cap(c), 0.0) + TOL


@settings(max_examples=300, deadline=None)
@given(sites(), st.sampled_from([0.0, 1.0]))
def test_invariants_on_random_trees(
    site: tuple[list[NodeInput], list[ConnectorDemand]], start_margin_a: float
) -> None:
    nodes, cars = site
    result = allocate(nodes, cars, CFG, start_margin_a=start_margin_a)
    _check_common(nodes, cars, result, start_margin_a)


@settings(max_examples=200, deadline=None)
@given(sites(single_node=True))
def test_single_node_priority_and_equal_share(
    site: tuple[list[NodeInput], list[ConnectorDemand]],
) -> None:
    nodes, cars = site
    result = allocate(nodes, cars, CFG)
    _check_common(nodes, cars, result)
    limits = result.limits()
    eligible = sorted((c for c in cars if c.max_current_a >= 6.0), key=_rank)
    # Same phases, same node: the paused ones are exactly the lowest ranked.
    charging = [limits[c.connector_id] > 0 for c in eligible]
    assert charging == sorted(charging, reverse=True), [c.connector_id for c in eligible]
    # Equal share inside a tier, unless a car's own cap holds it lower.
    for a in eligible:
        for b in eligible:
            la, lb = limits[a.connector_id], limits[b.connector_id]
            if a.priority == b.priority and la > 0 and lb > 0 and la < _cap(a) - 0.1:
                assert lb <= la + 0.1 + TOL, (a.connector_id, la, b.connector_id, lb)
    # A lower tier gets more than the minimum only once the higher tiers are capped.
    for a in eligible:
        for b in eligible:
            if a.priority > b.priority and limits[b.connector_id] > 6.0 + 0.1:
                assert limits[a.connector_id] >= _cap(a) - 0.1 - TOL
