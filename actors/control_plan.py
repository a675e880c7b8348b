"""What each connector aims at in one control-loop step. Pure: ``now_s`` is a parameter.

Each car is counted twice (:func:`actors.car_learning.as_counted`): *high*, as following its
offer, and *low*, at the lower of its sample and its offer; the two are the same once its sample
shows its draw since its last change. The site is allocated on both counts. A connector's target
is the high plan's when that is below the limit in force (decreases and pauses: a car's new draw
is not counted twice), the low plan's when that is above it (increases and starts: room a car
holds but does not draw is not handed out); in between, the limit in force holds until the
samples catch up. The low plan is made first; in the high plan no connector rises above the
larger of its limit in force and its low target, so a connector gives way at once only to an
increase that will happen.

A connector at 0 A that cannot start in this step (a pause dwell, a change still settling, no
room on the low count) is left out of both plans, so nobody gives way to it yet: room made for
a start that does not happen would be taken from cars that can use it, and given back a step
later. Once it can start, the others give way in one step and it starts when that settled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from actors.allocation import allocate, build_constraints
from actors.allocation_types import (
    PHASE_NAMES,
    AllocationResult,
    ConnectorAllocation,
    ConnectorDemand,
    NodeInput,
    NodeLimit,
    PerPhase,
)
from actors.car_learning import CarKnowledge, as_counted, learn, reflects
from actors.control_types import (
    ConnectorDecision,
    ConnectorState,
    ControlConfig,
    Mode,
    arriving,
    no_new_load,
)
from actors.energy_messages import FAILSAFE_CURRENT
from actors.evolve import evolve, value


@dataclass(frozen=True, slots=True, kw_only=True)
class Counted:
    high: tuple[ConnectorDemand, ...]
    low: tuple[ConnectorDemand, ...]
    cars: Mapping[str, CarKnowledge]  # what is known of each car after this step's samples
    unseen: frozenset[str]  # an increase waits for a sample showing its draw since its change
    beginning: frozenset[str] = frozenset()  # in a session's first step (ConnectorState.beginning)


@value
class Aim:
    target_a: float
    allocation: ConnectorAllocation  # the plan that set the target (its binding and reason)
    note: str = ""  # why the limit in force holds between the two plans


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    high: AllocationResult
    low: AllocationResult

    def aim(self, connector_id: str, current_a: float, *, beginning: bool = False) -> Aim:
        """``beginning``: a session's first step (control_types.beginning): its car starts to
        draw the limit in force, as a start would, so it keeps it only where both plans have
        room for it (starts go by the low count: room a car holds but does not draw is not
        room)."""
        return _aim(self.high.of(connector_id), self.low.of(connector_id), current_a, beginning)

    def aims(
        self, demands: Sequence[ConnectorDemand], beginning: Collection[str]
    ) -> dict[str, Aim]:
        """:meth:`aim` of each demand at its offer; ``beginning``: those in a session's first
        step."""
        high, low = self.high.by_id(), self.low.by_id()
        out: dict[str, Aim] = {}
        for d in demands:
            cid = d.connector_id
            h = high.get(cid) or self.high.of(cid)  # (of: the error for a missing one)
            lo = low.get(cid) or self.low.of(cid)
            out[cid] = _aim(h, lo, d.offered_a, cid in beginning)
        return out


def _aim(
    high: ConnectorAllocation, low: ConnectorAllocation, current_a: float, beginning: bool
) -> Aim:
    """:meth:`Plan.aim` of the connector's allocations on the two plans."""
    if beginning and low.limit_a < min(current_a, high.limit_a):
        return Aim(target_a=low.limit_a, allocation=low)
    if current_a > high.limit_a:
        return Aim(target_a=high.limit_a, allocation=high)
    if current_a < low.limit_a:
        if low.limit_a <= high.limit_a:
            return Aim(target_a=low.limit_a, allocation=low)
        return Aim(target_a=high.limit_a, allocation=high)
    if low.limit_a == current_a:
        return Aim(target_a=current_a, allocation=low)
    return Aim(
        target_a=current_a,
        allocation=low,
        note=(
            f"kept at {current_a:.1f} A: room for {high.limit_a:.1f} A if the cars follow "
            f"their offers, {low.limit_a:.1f} A on their last samples, until samples show "
            "their draws since their last changes"
        ),
    )


class CountMemo:
    """:func:`count`'s work per connector, made again only when its inputs changed.

    A step (each tick, a second apart, and on events) counts every connector. While its report
    and sample do not change a connector's demand is the very same object
    (:class:`actors.energy_inputs.DemandCache`, and SiteState keeps an equal report's object), and
    so is its state while its limit and what is known of its car hold (``_next_state`` keeps
    it). Its car knowledge and counts are kept with those objects and reused while they are the
    same objects and the step's time gives the same answers: whether its sample reflects its
    offer, whether its change settled, the limits it may still be following. So a steady site
    counts little; a step as a change settles (an overload on bench/energy.py's site comes just
    then) counts the changed connectors again. The memo holds the connectors of the last count
    only.
    """

    __slots__ = ("_kept", "parked")

    def __init__(self) -> None:
        self._kept: dict[str, _Counted] = {}
        # The decision of each connector without a car (actors.control_loop), the same object
        # from step to step while it stays so: the status made of it is kept too (SiteState).
        self.parked: dict[str, ConnectorDecision] = {}

    def __len__(self) -> int:
        """The connectors held."""
        return len(self._kept)


@value  # frozen to mypy, built at a plain dataclass's speed: one per changed connector
class _Counted:
    demand: ConnectorDemand
    state: ConnectorState
    cfg: ControlConfig
    reflecting: bool
    settled: bool
    recent_a: tuple[float, ...]
    car: CarKnowledge
    high: ConnectorDemand
    low: ConnectorDemand


def count(
    demands: Sequence[ConnectorDemand],
    known: Mapping[str, ConnectorState],
    *,
    now_s: float,
    cfg: ControlConfig,
    memo: CountMemo | None = None,
) -> Counted:
    """Every demand as the plans count it; what we offered, whether it settled and what the
    car does are the loop's own knowledge, not the reporter's. ``memo``: reuse what an earlier
    count made of the same inputs (the result is the same with or without)."""
    high: list[ConnectorDemand] = []
    low: list[ConnectorDemand] = []
    cars: dict[str, CarKnowledge] = {}
    unseen: set[str] = set()
    beginning: set[str] = set()
    kept = {} if memo is None else memo._kept
    now_kept: dict[str, _Counted] = {}
    settle_s = cfg.settle_s
    sample_wait_s = cfg.sample_wait_s
    for d in demands:
        cid = d.connector_id
        st = known.get(cid)
        first = st is None
        if st is None:
            st = arriving(now_s, cfg)
        changed_s = st.changed_s
        was = kept.get(cid)
        if was is not None and not (was.demand is d and was.state is st and was.cfg is cfg):
            was = None  # made of other inputs
        if was is not None and d.sampled_s is not None:
            # reflects() reads the step's time only for a demand without a sample time: the
            # same demand and state reflect their offer as they did.
            reflecting = was.reflecting
        else:
            reflecting = reflects(
                d, offered_a=st.limit_a, changed_s=changed_s, now_s=now_s, settle_s=settle_s
            )
        settled = changed_s is None or now_s - changed_s >= settle_s
        replaced = st.replaced  # (ConnectorState.recent_a's first test: most have none)
        if not replaced or now_s - replaced[-1][0] >= settle_s:
            recent: tuple[float, ...] = ()
        else:
            recent = st.recent_a(now_s, settle_s)
        if (
            was is not None
            and was.reflecting == reflecting
            and was.settled == settled
            and was.recent_a == recent
        ):
            car, h, lo = was.car, was.high, was.low
            now_kept[cid] = was
        else:
            car = _learn(st.car, d, st.limit_a, reflecting=reflecting, cfg=cfg)
            h, lo = as_counted(
                d,
                car,
                offered_a=st.limit_a,
                changed_s=changed_s,
                now_s=now_s,
                settle_s=settle_s,
                recent_a=recent,
                reflecting=reflecting,
            )
            if st.beginning:
                # A session's first step (control_types.beginning): its car has just begun to
                # draw, or not yet, under the TxDefaultProfile; the meter read before this step
                # does not show it. Counted at its offer, it would be taken off the base load
                # (room seen that is not there, and nobody gives way to it): it counts at its
                # sample (none yet) on both counts, and the others give way to it at once.
                h = lo
            now_kept[cid] = _Counted(
                demand=d,
                state=st,
                cfg=cfg,
                reflecting=reflecting,
                settled=settled,
                recent_a=recent,
                car=car,
                high=h,
                low=lo,
            )
        cars[cid] = car
        if st.beginning:
            beginning.add(cid)
        high.append(h)
        low.append(lo)
        # A connector that never reported a sample, or reports none after a change (no
        # periodic MeterValues), would wait forever: after sample_wait_s it ramps on time.
        if (
            not reflecting
            and not first
            and changed_s is not None
            and now_s - changed_s < sample_wait_s
            and d.sampled_s is not None
            and d.sampled_s > -math.inf
        ):
            unseen.add(cid)
    if memo is not None:
        memo._kept = now_kept
    return Counted(
        high=tuple(high),
        low=tuple(low),
        cars=cars,
        unseen=frozenset(unseen),
        beginning=frozenset(beginning),
    )


def _learn(
    k: CarKnowledge, d: ConnectorDemand, offered_a: float, *, reflecting: bool, cfg: ControlConfig
) -> CarKnowledge:
    return learn(
        k,
        d,
        offered_a=offered_a,
        reflecting=reflecting,
        min_current_a=cfg.allocation.min_current_a,
        probe_step_a=cfg.probe_step_a,
    )


def plan(
    nodes: Sequence[NodeInput],
    counted: Counted,
    known: Mapping[str, ConnectorState],
    *,
    mode: Mode,
    cfg: ControlConfig,
    can_start: Callable[[ConnectorDemand, float], bool],
) -> Plan:
    """Both plans, without the connectors at 0 A that cannot start in this step, nor those in a
    session's first step that pause (no room on the low plan, or meter data stale): nobody
    gives way to them. ``can_start(demand, target)``: whether a connector at 0 A would start
    at that target."""
    first = _plan(nodes, counted.high, counted.low, mode, cfg, held=())
    held: list[str] = []
    beginning = counted.beginning
    for d in counted.high:
        if not d.active:
            continue
        cid = d.connector_id
        st = known.get(cid)
        if (
            (st is None or st.limit_a == 0.0)
            and (first.high.of(cid).limit_a > 0 or first.low.of(cid).limit_a > 0)
            and not ((target := first.aim(cid, 0.0).target_a) > 0 and can_start(d, target))
        ) or (cid in beginning and (first.low.of(cid).limit_a == 0 or no_new_load(mode, cfg))):
            held.append(cid)
    if not held:
        return first
    again = _plan(nodes, counted.high, counted.low, mode, cfg, held=held)
    return Plan(high=_keep(again.high, first.high, held), low=_keep(again.low, first.low, held))


def _keep(
    again: AllocationResult, first: AllocationResult, held: Collection[str]
) -> AllocationResult:
    """The second plan, with each held connector's own figures from the first (what it would
    get, and why), so its decision says why it waits."""
    connectors = tuple(
        first.of(c.connector_id) if c.connector_id in held else c for c in again.connectors
    )
    return evolve(again, connectors=connectors)


def _plan(
    nodes: Sequence[NodeInput],
    high: Sequence[ConnectorDemand],
    low: Sequence[ConnectorDemand],
    mode: Mode,
    cfg: ControlConfig,
    *,
    held: Collection[str],
) -> Plan:
    if held:
        high = [evolve(d, active=False) if d.connector_id in held else d for d in high]
        low = [evolve(d, active=False) if d.connector_id in held else d for d in low]
    if mode == "failsafe":
        result = _allocate(nodes, high, mode, cfg)
        return Plan(high=result, low=result)
    low_result = _allocate(nodes, low, mode, cfg)
    if list(high) == list(low):
        # Every sample reflects its offer: one count. Capping each connector at what it gets
        # on it changes no level (the max-min allocation is unique), so the plan is the same.
        return Plan(high=low_result, low=low_result)

    # A connector gives way at once only to increases that will happen: in the high plan each
    # connector rises no further than the low plan takes it (or stays where it is). Otherwise a
    # car that holds in the band between the plans would still take room from others on the
    # high count, and they would be lowered for nothing at every flicker of the meter.
    capped = [
        _capped(d, max(d.offered_a, low_result.of(d.connector_id).limit_a)) if d.active else d
        for d in high
    ]
    return Plan(high=_allocate(nodes, capped, mode, cfg), low=low_result)


def _capped(d: ConnectorDemand, cap_a: float, source: str = "") -> ConnectorDemand:
    """``d`` at most ``cap_a``: a lower maximum is no longer the one its ``max_source`` set; it
    is ``source``'s (empty: the connector's own)."""
    if cap_a >= d.max_current_a:
        return evolve(d, max_current_a=d.max_current_a)
    return evolve(d, max_current_a=cap_a, max_source=source)


def _allocate(
    nodes: Sequence[NodeInput], demands: Sequence[ConnectorDemand], mode: Mode, cfg: ControlConfig
) -> AllocationResult:
    if mode != "failsafe":
        return allocate(
            nodes, demands, cfg.allocation, start_margin_a=max(0.0, cfg.resume_margin_a)
        )
    fs = cfg.failsafe
    fs_nodes = [
        evolve(n, limit=_root_budget(n.limit, fs.total_a)) if n.parent is None else n for n in nodes
    ]
    fs_demands = [
        evolve(_capped(d, fs.current_a, FAILSAFE_CURRENT), settled=False)
        if fs.current_a is not None
        else evolve(d, settled=False)
        for d in demands
    ]
    return allocate(fs_nodes, fs_demands, cfg.allocation, ignore_meters=True, margin_a=0.0)


def _root_budget(limit: NodeLimit, total_a: PerPhase | None) -> NodeLimit:
    if total_a is None:
        return limit
    current = tuple(min(a, b) for a, b in zip(limit.current_a, total_a, strict=True))
    sources = tuple(
        "fail-safe budget" if b < a else s
        for a, b, s in zip(limit.current_a, total_a, limit.sources, strict=True)
    )
    return evolve(
        limit,
        current_a=(current[0], current[1], current[2]),
        sources=(sources[0], sources[1], sources[2]),
    )


def hold_base(
    nodes: Sequence[NodeInput],
    high: Sequence[ConnectorDemand],
    history: Mapping[str, tuple[tuple[float, PerPhase], ...]],
    *,
    now_s: float,
    cfg: ControlConfig,
) -> tuple[list[NodeInput], dict[str, tuple[tuple[float, PerPhase], ...]]]:
    """The nodes with each metered node's base load floored at its peak over ``base_hold_s``
    (on the high count, where a car's own new draw is not taken for base load), and the kept
    history. Decreases still follow a rising base load at once; room from a falling one comes
    ``base_hold_s`` later."""
    if cfg.base_hold_s <= 0:
        return list(nodes), {}
    now: dict[str, list[float]] = {}
    for c in build_constraints(nodes, high, margin_a=cfg.allocation.margin_a):
        if c.phase != "total" and c.meter_a is not None:
            now.setdefault(c.node, [0.0, 0.0, 0.0])[PHASE_NAMES.index(c.phase)] = c.base_load_a
    kept: dict[str, tuple[tuple[float, PerPhase], ...]] = {}
    out: list[NodeInput] = []
    for n in nodes:
        base = now.get(n.name)
        if base is None:
            out.append(n)
            continue
        recent = [(t, b) for t, b in history.get(n.name, ()) if now_s - t < cfg.base_hold_s]
        recent.append((now_s, (base[0], base[1], base[2])))
        kept[n.name] = tuple(recent)
        peak = tuple(max(b[p] for _, b in recent) for p in range(3))
        out.append(evolve(n, base_floor_a=(peak[0], peak[1], peak[2])))
    return out, kept
