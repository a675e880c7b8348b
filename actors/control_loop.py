"""The load-management control loop: allocation over time. Pure: ``now_s`` is a parameter.

Each :func:`step` takes the previous :class:`LoopState`, the site's nodes and demand, and returns
new limits, the new state and a :class:`StepRecord` for the audit trail. Rules:

- Decrease at once: a target below the limit in force applies in the same step.
- Increase slowly: only when this connector's last change has settled (``settle_s``) and no
  connector was decreased within ``settle_s`` (cars take seconds to follow a lower limit, so room
  freed by a decrease is not real until then); by at most ``increase_step_a`` per step.
- Pause rarely: a connector that started less than ``min_charge_s`` ago is kept at the minimum
  instead of paused, as long as the physical limits (margin 0) still hold; a paused connector is
  not resumed for ``min_pause_s`` (some cars do not resume at all after a pause).
- Stale meter: if any metered node's reading is older than ``stale_no_increase_s`` nothing
  increases; older than ``stale_failsafe_s`` the fail-safe budget becomes the target (meters
  ignored, margin 0, a per-connector cap and/or a per-phase total at the root): limits above it
  drop at once, and connectors below it may rise to it by the usual slow steps, since the
  installer declared that budget safe whatever the meter would say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from actors.allocation import allocate, overloaded, rank_key
from actors.allocation_types import (
    AllocationConfig,
    AllocationResult,
    Binding,
    ConnectorDemand,
    NodeHeadroom,
    NodeInput,
    NodeLimit,
    PerPhase,
)

Mode = Literal["normal", "no_increase", "failsafe"]
Action = Literal["unchanged", "decrease", "increase", "pause", "resume", "stop", "hold"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailSafe:
    """The budget when no meter can be trusted: a cap per connector, a per-phase total at the
    root node, or both. The installer declares it safe whatever else the site draws."""

    current_a: float | None = 6.0
    total_a: PerPhase | None = None

    def __post_init__(self) -> None:
        if self.current_a is None and self.total_a is None:
            raise ValueError("the fail-safe needs current_a, total_a or both")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    allocation: AllocationConfig = field(default_factory=AllocationConfig)
    settle_s: float = 7.0
    increase_step_a: float = 4.0
    min_pause_s: float = 60.0
    min_charge_s: float = 60.0
    stale_no_increase_s: float = 3.0
    stale_failsafe_s: float = 10.0
    failsafe: FailSafe = field(default_factory=FailSafe)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorState:
    limit_a: float = 0.0
    changed_s: float | None = None
    paused_s: float | None = None
    charging_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopState:
    """Carried from step to step. Its times are monotonic, so it does not survive a process
    restart: start from an empty state; every connector then counts as new and restarts at the
    minimum current and ramps up, which errs on the safe side."""

    connectors: Mapping[str, ConnectorState] = field(default_factory=dict)
    last_decrease_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorDecision:
    connector_id: str
    previous_a: float
    target_a: float
    limit_a: float
    action: Action
    binding: Binding
    reason: str

    @property
    def changed(self) -> bool:
        return self.limit_a != self.previous_a


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """Everything one step saw and decided: the inputs, each constraint's headroom, and per
    connector the target, the limit applied, the binding source and the reason."""

    now_s: float
    mode: Mode
    meter_age_s: float
    nodes: tuple[NodeInput, ...]
    demands: tuple[ConnectorDemand, ...]
    headroom: tuple[NodeHeadroom, ...]
    decisions: tuple[ConnectorDecision, ...]

    def changed(self) -> tuple[ConnectorDecision, ...]:
        return tuple(d for d in self.decisions if d.changed)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    state: LoopState
    limits: Mapping[str, float]
    record: StepRecord


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
) -> StepResult:
    age = meter_age_s(nodes, now_s)
    mode = mode_for(age, cfg)
    alloc_cfg = cfg.allocation
    known = state.connectors
    # What we offered and whether it settled is our own knowledge, not the actor's.
    seen = [_with_offer(d, known.get(d.connector_id), now_s, cfg) for d in demands]
    result = _allocate(nodes, seen, mode, cfg)
    planned_by_id = {c.connector_id: c for c in result.connectors}

    # Room freed by a decrease (earlier, or in this very step) is not real until cars follow.
    decreasing_now = any(
        d.active and planned_by_id[d.connector_id].limit_a < d.offered_a for d in seen
    )
    settling = decreasing_now or (
        state.last_decrease_s is not None and now_s - state.last_decrease_s < cfg.settle_s
    )
    decisions: dict[str, ConnectorDecision] = {}
    dwell_kept: list[ConnectorDemand] = []
    for d in sorted(seen, key=rank_key):
        st = known.get(d.connector_id, ConnectorState())
        planned = planned_by_id[d.connector_id]
        decision, kept = _decide(d, st, planned.limit_a, mode, settling, now_s, cfg)
        decisions[d.connector_id] = replace(
            decision,
            binding=planned.binding,
            reason=f"{decision.reason}; allocation: {planned.reason}",
        )
        if kept:
            dwell_kept.append(d)

    if dwell_kept:
        _resolve_dwell(decisions, dwell_kept, nodes, seen, alloc_cfg)

    new_states: dict[str, ConnectorState] = {}
    decreased = False
    for d in seen:
        dec = decisions[d.connector_id]
        st = known.get(d.connector_id, ConnectorState())
        new_states[d.connector_id] = _next_state(st, d, dec, now_s)
        if d.active and dec.limit_a < dec.previous_a:
            decreased = True
    ordered = tuple(decisions[d.connector_id] for d in demands)
    record = StepRecord(
        now_s=now_s,
        mode=mode,
        meter_age_s=age,
        nodes=tuple(nodes),
        demands=tuple(seen),
        headroom=result.headroom,
        decisions=ordered,
    )
    return StepResult(
        state=LoopState(
            connectors=new_states,
            last_decrease_s=now_s if decreased else state.last_decrease_s,
        ),
        limits={dec.connector_id: dec.limit_a for dec in ordered},
        record=record,
    )


def _with_offer(
    d: ConnectorDemand, st: ConnectorState | None, now_s: float, cfg: ControlConfig
) -> ConnectorDemand:
    if st is None:
        return replace(d, offered_a=0.0, settled=False)
    settled = st.changed_s is None or now_s - st.changed_s >= cfg.settle_s
    return replace(d, offered_a=st.limit_a, settled=settled)


def _allocate(
    nodes: Sequence[NodeInput], demands: Sequence[ConnectorDemand], mode: Mode, cfg: ControlConfig
) -> AllocationResult:
    if mode != "failsafe":
        return allocate(nodes, demands, cfg.allocation)
    fs = cfg.failsafe
    fs_nodes = [
        replace(n, limit=_root_budget(n.limit, fs.total_a)) if n.parent is None else n
        for n in nodes
    ]
    fs_demands = [
        replace(d, max_current_a=min(d.max_current_a, fs.current_a), settled=False)
        if fs.current_a is not None
        else replace(d, settled=False)
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
    return replace(
        limit,
        current_a=(current[0], current[1], current[2]),
        sources=(sources[0], sources[1], sources[2]),
    )


def _decide(
    d: ConnectorDemand,
    st: ConnectorState,
    target: float,
    mode: Mode,
    settling: bool,
    now_s: float,
    cfg: ControlConfig,
) -> tuple[ConnectorDecision, bool]:
    """One connector's next limit; the flag says it was kept at the minimum through its dwell."""
    prev = st.limit_a
    min_a = cfg.allocation.min_current_a

    def out(limit: float, action: Action, reason: str) -> ConnectorDecision:
        return ConnectorDecision(
            connector_id=d.connector_id,
            previous_a=prev,
            target_a=target,
            limit_a=limit,
            action=action if limit != prev or action == "hold" else "unchanged",
            binding=Binding(kind="inactive"),
            reason=reason,
        )

    if not d.active:
        return out(0.0, "stop", "no car wants energy"), False
    if target < prev:
        charging_for = None if st.charging_s is None else now_s - st.charging_s
        if (
            target == 0.0
            and mode != "failsafe"
            and charging_for is not None
            and charging_for < cfg.min_charge_s
        ):
            return out(
                min_a,
                "decrease" if min_a < prev else "hold",
                f"kept at {min_a:.1f} A instead of pausing: charging for {charging_for:.0f} s, "
                f"less than the {cfg.min_charge_s:.0f} s dwell",
            ), True
        if target == 0.0:
            return out(0.0, "pause", "paused at once: no room at the minimum current"), False
        return out(target, "decrease", "decreased at once"), False
    if target > prev:
        if mode == "no_increase":
            return out(prev, "hold", "no increase: meter data is stale"), False
        if settling:
            return out(prev, "hold", "no increase while a recent decrease settles"), False
        if prev == 0.0:
            paused_for = None if st.paused_s is None else now_s - st.paused_s
            if paused_for is not None and paused_for < cfg.min_pause_s:
                return out(
                    0.0,
                    "hold",
                    f"stays paused: paused {paused_for:.0f} s ago, dwell {cfg.min_pause_s:.0f} s",
                ), False
            first = min(target, max(min_a, cfg.increase_step_a))
            return out(first, "resume", f"resumed at {first:.1f} A"), False
        if st.changed_s is not None and now_s - st.changed_s < cfg.settle_s:
            return out(prev, "hold", "no increase until the last change settles"), False
        new = min(target, prev + cfg.increase_step_a)
        return out(new, "increase", f"increased by at most {cfg.increase_step_a:.1f} A"), False
    return out(prev, "unchanged", "target reached"), False


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
            decisions[cid] = replace(
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
        decisions[worst.connector_id] = replace(
            dec,
            limit_a=0.0,
            action="pause",
            reason="paused despite the dwell: keeping it would exceed a physical limit; "
            + dec.reason,
        )


def _next_state(
    st: ConnectorState, d: ConnectorDemand, dec: ConnectorDecision, now_s: float
) -> ConnectorState:
    if not d.active:
        return ConnectorState(limit_a=0.0, changed_s=now_s if dec.changed else st.changed_s)
    new = replace(st, limit_a=dec.limit_a)
    if dec.changed:
        new = replace(new, changed_s=now_s)
    if dec.previous_a > 0 and dec.limit_a == 0:
        new = replace(new, paused_s=now_s, charging_s=None)
    elif dec.previous_a == 0 and dec.limit_a > 0:
        new = replace(new, charging_s=now_s)
    return new
