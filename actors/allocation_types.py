"""Inputs and outputs of the load allocation (:mod:`actors.allocation`).

All values are per phase in amperes unless the name says otherwise. Grid phases are L1, L2, L3
(index 0, 1, 2). Measured currents are signed: import from the grid is positive, export (a PV
system feeding back) is negative.

The site is a tree of nodes: the grid connection ("site") at the root, feeders (sub-circuits with
their own breakers) below it, and optionally single charge points as nodes of their own when a
limit applies to one device (German section 14a dims per device). Every connector hangs on one
node and counts against that node and all its ancestors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from actors.evolve import value

PerPhase = tuple[float, float, float]
PHASE_NAMES = ("L1", "L2", "L3")
ZERO: PerPhase = (0.0, 0.0, 0.0)
UNLIMITED: PerPhase = (math.inf, math.inf, math.inf)

#: The wiring of a charge point to the grid, as in OCPP 2.0.1 ``PhaseRotation``: the letters
#: name the grid phase (R=L1, S=L2, T=L3) that charge-point phase L1, L2, L3 is wired to.
ROTATIONS = ("RST", "RTS", "SRT", "STR", "TRS", "TSR")


@functools.lru_cache(maxsize=64)
def grid_phases(rotation: str, phases: int) -> tuple[int, ...]:
    """Grid phase indexes a car drawing on ``phases`` charge-point phases loads.

    A 1-phase car always draws on the charge point's L1, which is grid L2 under rotation "SRT".
    """
    if rotation not in ROTATIONS:
        raise ValueError(f"phase rotation {rotation!r} is not one of {', '.join(ROTATIONS)}")
    if not 1 <= phases <= 3:
        raise ValueError(f"phases must be 1, 2 or 3, got {phases!r}")
    return tuple("RST".index(letter) for letter in rotation[:phases])


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimit:
    """The effective limit of one node, with the name of the source that binds each figure.

    ``total_a`` caps the sum of the three phase currents; it comes from a power limit divided by
    the nominal voltage (a 4.2 kW cap allows 18 A on one phase or 6 A on each of three).
    """

    current_a: PerPhase = UNLIMITED
    sources: tuple[str, str, str] = ("", "", "")
    total_a: float = math.inf
    total_source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSample:
    """One reading of the meter at a node: signed current per grid phase and when it was taken."""

    current_a: PerPhase
    read_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInput:
    """A node of the site tree.

    ``metered`` says a meter measures everything flowing through the node; ``meter`` is its last
    sample (None before the first one). An unmetered node is assumed to feed only managed
    charge points, so its headroom is its limit minus the margin. ``base_floor_a``: the base
    load per phase is taken to be at least this (the control loop's recent peak, so meter noise
    does not move the limits).
    """

    name: str
    parent: str | None
    limit: NodeLimit = field(default_factory=NodeLimit)
    metered: bool = False
    meter: MeterSample | None = None
    base_floor_a: PerPhase | None = None


@value
class ConnectorDemand:
    """What one connector wants and what it does now.

    ``measured_a`` is per charge-point phase (L1..L3 of the charge point, as in its MeterValues);
    the rotation maps it to grid phases. ``offered_a`` is the limit in force and ``settled`` says
    it has been in force long enough (the control loop's settle time) that the draw reflects it.
    Priority: higher numbers are served first. ``arrived_s`` orders connectors inside a priority:
    the earlier arrival is served first, the later arrival is paused first.

    What the control loop learned about the car (:mod:`actors.car_learning`); the defaults mean
    "nothing learned": ``car_phases`` the charge-point phases (0-based) the car draws on (a
    1-phase car on a 3-phase charge point loads one grid phase only; empty: every phase the
    charge point is wired with); ``min_current_a`` the least it is offered when it charges (a
    car that would not draw at the configured minimum; never below it); ``idle`` says it did
    not draw at what it was offered, so it is served after the cars that draw in its priority.
    ``sampled_s`` is when ``measured_a`` was taken (monotonic; None: now; ``-inf``: the
    connector never reported a sample).
    """

    connector_id: str
    node: str
    active: bool
    max_current_a: float
    phases: int = 3
    phase_rotation: str = "RST"
    priority: int = 0
    arrived_s: float = 0.0
    offered_a: float = 0.0
    measured_a: PerPhase = ZERO
    settled: bool = False
    car_phases: tuple[int, ...] = ()
    min_current_a: float = 0.0
    idle: bool = False
    sampled_s: float | None = None
    # What sets max_current_a when not the connector's rating (e.g. "cloud profile"): named in
    # the binding and the reason where that maximum binds
    max_source: str = ""


def cp_phases(d: ConnectorDemand) -> tuple[int, ...]:
    """The charge-point phases (0-based) the connector's car loads: the learned ones, else every
    phase the charge point is wired with."""
    return _cp_phases(d.phases, d.car_phases)


def load_phases(d: ConnectorDemand) -> tuple[int, ...]:
    """The grid phases (0-based) the connector's car loads, in charge-point phase order."""
    return _load_phases(d.phase_rotation, d.phases, d.car_phases)


# Called for every connector several times a step: a few distinct arguments, cached.
@functools.lru_cache(maxsize=256)
def _cp_phases(phases: int, car_phases: tuple[int, ...]) -> tuple[int, ...]:
    wired = tuple(range(phases))
    learned = tuple(p for p in car_phases if p in wired)
    return learned or wired


@functools.lru_cache(maxsize=256)
def _load_phases(rotation: str, phases: int, car_phases: tuple[int, ...]) -> tuple[int, ...]:
    mapping = grid_phases(rotation, 3)
    return tuple(mapping[p] for p in _cp_phases(phases, car_phases))


def load_phase_names(d: ConnectorDemand) -> tuple[str, ...]:
    """:func:`load_phases` by name ("L1".."L3")."""
    return _load_phase_names(d.phase_rotation, d.phases, d.car_phases)


@functools.lru_cache(maxsize=256)
def _load_phase_names(rotation: str, phases: int, car_phases: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(PHASE_NAMES[p] for p in _load_phases(rotation, phases, car_phases))


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationConfig:
    """Tunables of the allocation.

    ``margin_a`` is kept free on every phase of every node for the seconds chargers need to react.
    ``draw_slack_a`` is what a settled car that draws less than offered keeps above its draw; the
    rest returns to the pool. ``resolution_a`` is the step limits are rounded down to.
    """

    margin_a: float = 1.0
    min_current_a: float = 6.0
    draw_slack_a: float = 1.0
    resolution_a: float = 0.1


BindingKind = Literal[
    "node",  # a node's per-phase or total limit
    "car_max",  # the connector's own maximum (car, cable, charge point)
    "undrawn",  # the car draws less than offered; capped near its draw
    "paused",  # did not fit at the minimum current
    "below_min",  # its maximum is below the minimum current
    "inactive",  # no car, or the car does not want energy
]


@value
class Binding:
    """The constraint that set a connector's limit.

    For ``node``/``paused``: the node, the phase ("L1".."L3" or "total"), the limit source's name
    and the headroom left to share on that constraint.
    """

    kind: BindingKind
    node: str = ""
    phase: str = ""
    source: str = ""
    limit_a: float = 0.0
    headroom_a: float = 0.0


@value
class ConnectorAllocation:
    connector_id: str
    limit_a: float
    grid_phases: tuple[str, ...]
    binding: Binding
    reason: str


@value
class NodeHeadroom:
    """Headroom figures of one constraint: a node's phase or its total.

    ``headroom_a = limit_a - margin_a - base_load_a``, where ``base_load_a = meter_a - managed_a``
    (what flows through the node that is not managed charging). ``allocated_a`` is what the
    allocation handed out on it.
    """

    node: str
    phase: str
    limit_a: float
    source: str
    margin_a: float
    meter_a: float | None
    managed_a: float
    base_load_a: float
    headroom_a: float
    allocated_a: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationResult:
    connectors: tuple[ConnectorAllocation, ...]
    headroom: tuple[NodeHeadroom, ...]
    _by_id: dict[str, ConnectorAllocation] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.connector_id: c for c in self.connectors})

    def limits(self) -> dict[str, float]:
        return {c.connector_id: c.limit_a for c in self.connectors}

    def by_id(self) -> Mapping[str, ConnectorAllocation]:
        """Each connector's allocation by its id (read only)."""
        return self._by_id

    def of(self, connector_id: str) -> ConnectorAllocation:
        try:
            return self._by_id[connector_id]
        except KeyError:
            raise KeyError(f"no allocation for connector {connector_id!r}") from None
