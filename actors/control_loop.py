"""The load-management control loop: allocation over time. Pure: ``now_s`` is a parameter.

Each :func:`step` takes the previous :class:`LoopState`, the site's nodes and demand, and returns
new limits, the new state and a :class:`StepRecord` for the audit trail. Rules:

- Count every car once: the meter shows a car's new draw seconds after a change, its own
  sample up to a minute later. Until that sample arrives the car is counted twice over, high
  (following its offer) and low (at the lower of sample and offer), and the site is planned on
  both (:mod:`actors.control_plan`, :mod:`actors.car_learning`): decreases and pauses on the
  high count, so a resumed car's draw is not also taken for base load; increases and starts on
  the low count, so room a car holds but does not draw is not handed to another. What the loop
  learns about each car (1-phase cars, cars that need more than 6 A to start, cars that do not
  draw) is in :mod:`actors.car_learning`.
- Decrease at once: a target below the limit in force applies in the same step.
- Increase slowly: only when this connector's last change has settled (``settle_s``) and a
  sample taken since shows its draw (or ``sample_wait_s`` passed without one), and no
  connector's limit changed within ``settle_s`` (cars take seconds to follow, so the meter does
  not show what the room is until then); by at most ``increase_step_a`` per step.
- Pause rarely: a connector that started less than ``min_charge_s`` ago is kept at its minimum
  instead of paused, as long as the physical limits (margin 0) still hold (a car seen not to
  draw at its offer is not held); a paused connector is not resumed for ``min_pause_s`` (some
  cars do not resume at all after a pause), then only on the low count and only if its minimum
  plus ``resume_margin_a`` fits, so the room that paused it has to come back with some to spare;
  and the others give way to it only in a step in which it can start.
- Stale meter: if any metered node's reading is older than ``stale_no_increase_s`` nothing
  increases; older than ``stale_failsafe_s`` the fail-safe budget becomes the target (meters
  ignored, margin 0, a per-connector cap and/or a per-phase total at the root): limits above it
  drop at once. Connectors below it (a paused car, a new one) may rise to it by the usual slow
  steps only where a per-phase total (``FailSafe.total_a``) is configured: the installer declared
  that budget safe whatever the rest of the site draws. Without one, the site's own limits are
  no such budget (they leave the household load unknown), so nothing rises: the EV load only
  goes down, from what fitted with the last good reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from actors.allocation import min_current, overloaded, rank_key
from actors.allocation_types import ZERO, AllocationConfig, Binding, ConnectorDemand, NodeInput
from actors.car_learning import CarKnowledge
from actors.control_plan import CountMemo, count, hold_base, plan
from actors.control_types import (
    Action,
    ConnectorDecision,
    ConnectorState,
    ControlConfig,
    FailSafe,
    LoopState,
    Mode,
    StepRecord,
    StepResult,
    arriving,
    beginning,
    no_new_load,
)
from actors.evolve import evolve

__all__ = [
    "Action",
    "ConnectorDecision",
    "ConnectorState",
    "ControlConfig",
    "FailSafe",
    "LoopState",
    "Mode",
    "StepRecord",
    "StepResult",
    "beginning",
    "finish",
    "meter_age_s",
    "mode_for",
    "prepare",
    "step",
    "stepping",
]

_R = TypeVar("_R")


def finish(run: Generator[Any, None, _R]) -> _R:
    """The return value of a generator that has nothing more to yield, resumed to its end.
    Anything it would still yield (a batch nobody sends) is a bug: RuntimeError."""
    try:
        extra = next(run)
    except StopIteration as done:
        result: _R = done.value
        return result
    run.close()
    raise RuntimeError(f"finish(): the generator yielded again: {extra!r:.200}")


def meter_age_s(nodes: Sequence[NodeInput], now_s: float) -> float:
    """Age of the oldest meter reading among metered nodes (inf if one was never read)."""
    ages = [
        math.inf if n.meter is None else max(0.0, now_s - n.meter.read_s)
        for n in nodes
        if n.metered
    ]
    return max(ages, default=0.0)


def mode_for(age_s: float, cfg: ControlConfig) -> Mode:
    if age_s >= cfg.stale_failsafe_s:
        return "failsafe"
    if age_s >= cfg.stale_no_increase_s:
        return "no_increase"
    return "normal"


def step(
    state: LoopState,
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    *,
    now_s: float,
    cfg: ControlConfig,
    decided: Callable[[tuple[ConnectorDecision, ...], Mode], None] | None = None,
) -> StepResult:
    """``decided`` gets the step's decisions (in the order of ``demands``) and mode as soon as
    they are final, before the next state and the record are built: a decrease can leave then."""
    run = stepping(state, nodes, demands, now_s=now_s, cfg=cfg)
    ordered, mode = next(run)
    if decided is not None:
        decided(ordered, mode)
    return finish(run)


def stepping(
    state: LoopState,
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    *,
    now_s: float,
    cfg: ControlConfig,
    memo: CountMemo | None = None,
) -> Generator[tuple[tuple[ConnectorDecision, ...], Mode], None, StepResult]:
    """:func:`step` in two parts: yields the decisions and mode once they are final, and
    returns the result when resumed (the caller may do other work in between: the decisions do
    not change). ``memo``: the caller's :class:`CountMemo`, kept from step to step."""
    age = meter_age_s(nodes, now_s)
    mode = mode_for(age, cfg)
    known = state.connectors
    every = demands
    parked, demands = _split_parked(demands, known, now_s)
    counted = count(demands, known, now_s=now_s, cfg=cfg, memo=memo)
    # Room freed or taken by a change (earlier, or a decrease in this very step) is not known
    # until the cars follow and the meter shows it.
    settled_before = not (
        _within(state.last_decrease_s, now_s, cfg.settle_s)
        or _within(state.last_change_s, now_s, cfg.settle_s)
    )

    def can_start(d: ConnectorDemand, target: float) -> bool:
        st = known.get(d.connector_id, _UNKNOWN)
        waiting = d.connector_id in counted.unseen
        limit, _, _, _ = _decide(d, st, target, mode, not settled_before, waiting, now_s, cfg)
        return limit > 0

    bases = state.bases
    if mode != "failsafe":
        nodes, bases = hold_base(nodes, counted.high, state.bases, now_s=now_s, cfg=cfg)
    planned = plan(nodes, counted, known, mode=mode, cfg=cfg, can_start=can_start)
    aims = planned.aims(counted.high, counted.beginning)
    decreasing_now = any(
        d.active and aims[d.connector_id].target_a < d.offered_a for d in counted.high
    )
    settling = decreasing_now or not settled_before
    decisions: dict[str, ConnectorDecision] = {}
    dwell_kept: list[ConnectorDemand] = []
    unseen = counted.unseen
    for d in sorted(counted.high, key=rank_key):
        cid = d.connector_id
        st = known.get(cid, _UNKNOWN)
        aim = aims[cid]
        target = aim.target_a
        limit, action, why, kept = _decide(d, st, target, mode, settling, cid in unseen, now_s, cfg)
        if aim.note and action == "unchanged":
            why = aim.note
        if st.beginning:
            why = f"its session began under the TxDefaultProfile at {st.limit_a:.1f} A; {why}"
        allocation = aim.allocation
        decisions[cid] = ConnectorDecision(
            connector_id=cid,
            previous_a=st.limit_a,
            target_a=target,
            limit_a=limit,
            action=action,
            binding=allocation.binding,
            reason=f"{why}; allocation: {allocation.reason}",
        )
        if kept:
            dwell_kept.append(d)

    if dwell_kept:
        _resolve_dwell(decisions, dwell_kept, nodes, counted.high, cfg.allocation)
    if counted.low != counted.high:
        _fund_increases(decisions, nodes, counted.low, cfg.allocation)

    was_parked = {} if memo is None else memo.parked
    now_parked: dict[str, ConnectorDecision] = {}
    for cid in parked:
        decisions[cid] = now_parked[cid] = was_parked.get(cid) or ConnectorDecision(
            connector_id=cid,
            previous_a=0.0,
            target_a=0.0,
            limit_a=0.0,
            action="unchanged",
            binding=_INACTIVE,
            reason=_NO_CAR_REASON,
        )
    if memo is not None:
        memo.parked = now_parked
    ordered = tuple(decisions[d.connector_id] for d in every)
    yield ordered, mode

    new_states: dict[str, ConnectorState] = {}
    decreased = changed = False
    for d in counted.high:
        dec = decisions[d.connector_id]
        st = known.get(d.connector_id) or arriving(now_s, cfg)
        car = counted.cars[d.connector_id]
        new_states[d.connector_id] = _next_state(st, d, dec, now_s, car, cfg.settle_s)
        if d.active and dec.limit_a < dec.previous_a:
            decreased = True
        if d.active and dec.changed:
            changed = True
    new_states.update(parked)
    high_by_id = {d.connector_id: d for d in counted.high}
    record = StepRecord(
        now_s=now_s,
        mode=mode,
        meter_age_s=age,
        nodes=tuple(nodes),
        demands=tuple(high_by_id.get(d.connector_id, d) for d in every),
        headroom=planned.high.headroom,
        decisions=ordered,
        low_headroom=planned.low.headroom,
    )
    return StepResult(
        state=LoopState(
            connectors=new_states,
            last_decrease_s=now_s if decreased else state.last_decrease_s,
            last_change_s=now_s if changed else state.last_change_s,
            bases=bases,
        ),
        limits={dec.connector_id: dec.limit_a for dec in ordered},
        record=record,
    )


def prepare(
    state: LoopState,
    demands: Sequence[ConnectorDemand],
    *,
    now_s: float,
    cfg: ControlConfig,
    memo: CountMemo,
) -> None:
    """Count the connectors as the next step would (into ``memo``), deciding nothing: a step
    until ``now_s`` changes ``state`` and the counts' time-dependent parts (settled, reflecting,
    recent limits) then finds them made. For a quiet moment after new demand came in, so the
    step of an overload that follows it does not count 500 connectors again (3.5-4 ms)."""
    _, live = _split_parked(demands, state.connectors, now_s)
    count(live, state.connectors, now_s=now_s, cfg=cfg, memo=memo)


def _split_parked(
    demands: Sequence[ConnectorDemand], known: Mapping[str, ConnectorState], now_s: float
) -> tuple[dict[str, ConnectorState], list[ConnectorDemand]]:
    """Connectors without a car that draw nothing and hold nothing (most of a big site's, most
    of the time) change nothing in the plans: their states (decided without planning), and the
    rest (planned)."""
    parked: dict[str, ConnectorState] = {}
    live: list[ConnectorDemand] = []
    for d in demands:
        st_known = known.get(d.connector_id)
        if not d.active and d.measured_a == ZERO and (st_known is None or _parked(st_known)):
            parked[d.connector_id] = st_known or ConnectorState(limit_a=0.0, changed_s=now_s)
        else:
            live.append(d)
    return parked, live


_INACTIVE = Binding(kind="inactive")
_NO_TOTAL = (
    "meter data lost, and no fail-safe total (failsafe_total_a) says what the site can take "
    "without it"
)
_NO_CAR_REASON = "no car wants energy; allocation: no car wants energy"
_NO_CAR = CarKnowledge()
_UNKNOWN = ConnectorState()  # a connector the loop has no state for (read, never changed)


def _parked(st: ConnectorState) -> bool:
    """The state a connector without a car settles in (see :func:`_next_state`)."""
    return (
        st.limit_a == 0.0
        and st.paused_s is None
        and st.charging_s is None
        and not st.replaced
        and st.car == _NO_CAR
    )


def _within(then_s: float | None, now_s: float, period_s: float) -> bool:
    return then_s is not None and now_s - then_s < period_s


def _decide(
    d: ConnectorDemand,
    st: ConnectorState,
    target: float,
    mode: Mode,
    settling: bool,
    waiting: bool,
    now_s: float,
    cfg: ControlConfig,
) -> tuple[float, Action, str, bool]:
    """One connector's next limit, its action and why; the flag says it was kept at the minimum
    through its dwell. ``waiting``: no sample since its last change shows its draw yet. (The
    caller builds the decision: the step makes one per connector.)"""
    prev = st.limit_a
    if not d.active:
        return _out(prev, 0.0, "stop", "no car wants energy", False)
    if st.beginning and target > 0:
        # Its car draws the TxDefaultProfile's current, which the loop did not give it.
        if no_new_load(mode, cfg):
            why = "no new load while meter data is stale" if mode == "no_increase" else _NO_TOTAL
            return _out(prev, 0.0, "pause", f"paused at once: {why}", False)
        min_a = min_current(d, cfg.allocation)
        first = min(target, max(min_a, cfg.increase_step_a))  # as a start from 0 A would
        if prev < min_a:  # the default is below the least it is offered
            return _out(prev, first, "increase", f"raised to {first:.1f} A at once", False)
        if first > prev and not settling:
            return _out(prev, first, "increase", f"started at {first:.1f} A", False)
    if target < prev:
        charging_for = None if st.charging_s is None else now_s - st.charging_s
        if (
            target == 0.0
            and mode != "failsafe"
            and not (d.idle and d.settled)  # known not to draw at this very offer
            and d.max_current_a >= cfg.allocation.min_current_a  # not held at 0 A (a cap)
            and charging_for is not None
            and charging_for < cfg.min_charge_s
        ):
            min_a = min_current(d, cfg.allocation)
            return _out(
                prev,
                min_a,
                "decrease" if min_a < prev else "hold",
                f"kept at {min_a:.1f} A instead of pausing: charging for {charging_for:.0f} s, "
                f"less than the {cfg.min_charge_s:.0f} s dwell",
                True,
            )
        if target == 0.0 and d.idle and d.settled:
            return _out(
                prev, 0.0, "pause", "paused at once: no room, and the car does not draw", False
            )
        if target == 0.0:
            return _out(prev, 0.0, "pause", "paused at once: no room at the minimum current", False)
        return _out(prev, target, "decrease", "decreased at once", False)
    if target > prev:
        if mode == "no_increase":
            return _out(prev, prev, "hold", "no increase: meter data is stale", False)
        if mode == "failsafe" and cfg.failsafe.total_a is None:
            return _out(prev, prev, "hold", f"no increase: {_NO_TOTAL}", False)
        if settling:
            return _out(prev, prev, "hold", "no increase while a recent change settles", False)
        if waiting:
            return _out(
                prev,
                prev,
                "hold",
                "no increase until a sample shows its draw since the last change",
                False,
            )
        if prev == 0.0:
            paused_for = None if st.paused_s is None else now_s - st.paused_s
            if paused_for is not None and paused_for < cfg.min_pause_s:
                return _out(
                    prev,
                    0.0,
                    "hold",
                    f"stays paused: paused {paused_for:.0f} s ago, dwell {cfg.min_pause_s:.0f} s",
                    False,
                )
            first = min(target, max(min_current(d, cfg.allocation), cfg.increase_step_a))
            verb = "started" if st.paused_s is None else "resumed"
            return _out(prev, first, "resume", f"{verb} at {first:.1f} A", False)
        if st.changed_s is not None and now_s - st.changed_s < cfg.settle_s:
            return _out(prev, prev, "hold", "no increase until the last change settles", False)
        new = min(target, prev + cfg.increase_step_a)
        return _out(
            prev, new, "increase", f"increased by at most {cfg.increase_step_a:.1f} A", False
        )
    return _out(prev, prev, "unchanged", "target reached", False)


def _out(
    prev: float, limit: float, action: Action, reason: str, kept: bool
) -> tuple[float, Action, str, bool]:
    """:func:`_decide`'s answer: an action that changes nothing is "unchanged", but a hold."""
    return limit, (action if limit != prev or action == "hold" else "unchanged"), reason, kept


def _fund_increases(
    decisions: dict[str, ConnectorDecision],
    nodes: Sequence[NodeInput],
    low: Sequence[ConnectorDemand],
    cfg: AllocationConfig,
) -> None:
    """An increase or start goes only into room there is on the low count with the limits
    actually in force: the low plan may count on a connector giving way that the high plan keeps
    (it holds in the band until samples catch up), and room it has not given up yet is not
    room. Such increases wait; the connector gives way first, on the high count, when it must."""
    limits = {cid: dec.limit_a for cid, dec in decisions.items()}
    for c in overloaded(nodes, low, limits, margin_a=cfg.margin_a):
        for cid in c.weights:
            dec = decisions[cid]
            if dec.limit_a > dec.previous_a:
                decisions[cid] = evolve(
                    dec,
                    limit_a=dec.previous_a,
                    action="hold",
                    reason="increase deferred: the room it needs is still held by connectors "
                    "that have not given way; " + dec.reason,
                )


def _resolve_dwell(
    decisions: dict[str, ConnectorDecision],
    kept: list[ConnectorDemand],
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    cfg: AllocationConfig,
) -> None:
    """Keeping a connector through its dwell spends room the allocation gave to others: defer
    every increase this step, then pause dwell-kept connectors (lowest ranked first) until the
    physical limits hold without margin."""
    for cid, dec in list(decisions.items()):
        if dec.limit_a > dec.previous_a:
            decisions[cid] = evolve(
                dec,
                limit_a=dec.previous_a,
                action="hold",
                reason="increase deferred: a connector is kept charging through its dwell; "
                + dec.reason,
            )
    remaining = sorted(kept, key=rank_key)
    while remaining:
        limits = {cid: dec.limit_a for cid, dec in decisions.items()}
        if not overloaded(nodes, demands, limits, margin_a=0.0):
            return
        worst = remaining.pop()
        dec = decisions[worst.connector_id]
        decisions[worst.connector_id] = evolve(
            dec,
            limit_a=0.0,
            action="pause",
            reason="paused despite the dwell: keeping it would exceed a physical limit; "
            + dec.reason,
        )


def _next_state(
    st: ConnectorState,
    d: ConnectorDemand,
    dec: ConnectorDecision,
    now_s: float,
    car: CarKnowledge,
    settle_s: float,
) -> ConnectorState:
    if not d.active:
        return ConnectorState(limit_a=0.0, changed_s=now_s if dec.changed else st.changed_s)
    kept_at_start = st.charging_s is None and dec.limit_a > 0  # started, or kept at its beginning
    if not dec.changed and car is st.car and not kept_at_start:
        return st
    changes: dict[str, Any] = {"limit_a": dec.limit_a, "car": car}
    if dec.changed:
        kept = tuple((e, a) for e, a in st.replaced if now_s - e < settle_s)
        changes.update(changed_s=now_s, replaced=(*kept, (now_s, dec.previous_a)))
    if dec.previous_a > 0 and dec.limit_a == 0:
        changes.update(paused_s=now_s, charging_s=None)
    elif kept_at_start:
        changes["charging_s"] = now_s
    return evolve(st, **changes)
