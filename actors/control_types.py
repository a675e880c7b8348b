"""The control loop's configuration, state and records (see :mod:`actors.control_loop`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from actors.allocation_types import (
    AllocationConfig,
    Binding,
    ConnectorDemand,
    NodeHeadroom,
    NodeInput,
    PerPhase,
)
from actors.car_learning import CarKnowledge
from actors.evolve import value

Mode = Literal["normal", "no_increase", "failsafe"]
IEC_MIN_CURRENT_A = 6.0  # IEC 61851-1: a car does not charge when offered less
Action = Literal["unchanged", "decrease", "increase", "pause", "resume", "stop", "hold"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailSafe:
    """The budget when no meter can be trusted: a cap per connector, a per-phase total at the
    root node, or both. The installer declares the total safe whatever else the site draws;
    without one, limits only go down in the fail-safe mode (actors.control_loop)."""

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
    # What a connector at 0 A needs above its minimum, on top of that, to start or resume.
    resume_margin_a: float = 1.0
    # A car that draws nothing at the minimum is offered this much more, once (car_learning).
    probe_step_a: float = 2.0
    # The longest an increase waits for a sample showing the car's draw since its last change.
    sample_wait_s: float = 30.0
    # The base load is taken as its peak over this long (0: as read): the limits then do not
    # follow meter noise, and a connector that just fits is not paused and resumed with it.
    base_hold_s: float = 0.0

    @property
    def default_a(self) -> float:
        """What a car draws before its first TxProfile: the safe TxDefaultProfile the broker
        installs (the fail-safe current, else the minimum)."""
        fs = self.failsafe.current_a
        return self.allocation.min_current_a if fs is None else fs


def no_new_load(mode: Mode, cfg: ControlConfig) -> bool:
    """Whether nothing may start drawing now: meter data stale (no increases), or lost without a
    fail-safe total the installer declared safe (actors.control_loop)."""
    return mode == "no_increase" or (mode == "failsafe" and cfg.failsafe.total_a is None)


@value
class ConnectorState:
    limit_a: float = 0.0
    changed_s: float | None = None
    paused_s: float | None = None
    charging_s: float | None = None
    car: CarKnowledge = field(default_factory=CarKnowledge)
    # (ended_s, limit_a) of the limits replaced within the last settle_s, oldest first: a car
    # may still draw any of them while it follows quick changes.
    replaced: tuple[tuple[float, float], ...] = ()

    @property
    def beginning(self) -> bool:
        """A session's first step (:func:`beginning`): its car draws under the
        TxDefaultProfile and the loop has not decided for it yet (a limit in force that the
        loop did not start: once it keeps the car, ``charging_s`` is set)."""
        return self.charging_s is None and self.limit_a > 0

    def recent_a(self, now_s: float, settle_s: float) -> tuple[float, ...]:
        replaced = self.replaced
        if not replaced or now_s - replaced[-1][0] >= settle_s:
            return ()  # (oldest first: the newest is past too)
        return tuple(a for ended_s, a in replaced if now_s - ended_s < settle_s)


def arriving(now_s: float, cfg: ControlConfig) -> ConnectorState:
    """A connector seen for the first time: its car draws under the TxDefaultProfile until the
    limit decided now reaches it, so that is the limit it replaces."""
    return ConnectorState(limit_a=0.0, changed_s=now_s, replaced=((now_s, cfg.default_a),))


def beginning(now_s: float, cfg: ControlConfig) -> ConnectorState:
    """A connector whose car's session began at ``now_s``: the car charges at the safe default
    (the broker gives its transaction a TxProfile at that default at its start, and no limit
    decided before it, actors.cp_energy), so that is the limit in force, just changed. Not yet a start for the
    charging dwell: a car that does not fit is paused at once, and one that fits is kept
    (from then on it has its dwell, actors.control_loop). Nothing is known of the car. A
    default below 6 A (``failsafe_current_a`` 0, "pause all") lets no car charge (IEC 61851: a
    car does not draw below 6 A): it starts as a paused one would. One below the site's minimum
    current but not below 6 A is drawn: the loop's first decision raises it to the minimum or
    pauses it."""
    default_a = cfg.default_a
    if default_a < IEC_MIN_CURRENT_A:
        default_a = 0.0
    return ConnectorState(limit_a=default_a, changed_s=now_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopState:
    """Carried from step to step. Its times are monotonic, so it does not survive a process
    restart: start from an empty state; every connector then counts as new and restarts at the
    minimum current and ramps up, which errs on the safe side."""

    connectors: Mapping[str, ConnectorState] = field(default_factory=dict)
    last_decrease_s: float | None = None
    last_change_s: float | None = None  # any active connector's limit, up or down
    # Per metered node: (time, base load per phase) over the last base_hold_s.
    bases: Mapping[str, tuple[tuple[float, PerPhase], ...]] = field(default_factory=dict)


@value
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
    connector the target, the limit applied, the binding source and the reason.

    ``demands`` and ``headroom`` are as decreases are decided (each car counted as following
    its offer); ``low_headroom`` is the headroom increases were decided on (each car counted at
    the lower of its sample and its offer), the same figures when every sample is up to date."""

    now_s: float
    mode: Mode
    meter_age_s: float
    nodes: tuple[NodeInput, ...]
    demands: tuple[ConnectorDemand, ...]
    headroom: tuple[NodeHeadroom, ...]
    decisions: tuple[ConnectorDecision, ...]
    low_headroom: tuple[NodeHeadroom, ...] = ()

    def changed(self) -> tuple[ConnectorDecision, ...]:
        return tuple(d for d in self.decisions if d.changed)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    state: LoopState
    limits: Mapping[str, float]
    record: StepRecord
