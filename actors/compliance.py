"""Does a charge point follow its profile? Offered limit against measured current, over time.

Pure: times are parameters (monotonic seconds). One :class:`Tracker` per subject: a connector
(our limit against its MeterValues ``Current.Import``) or a metered node (its limit against the
meter). A sample is *over* when a phase draws more than the limit that could be in force plus
``tolerance_a``. "Could be in force": a lower limit only counts ``react_s`` after it was set, since
chargers change their PWM signal every few seconds and cars follow within a few more. A subject is
flagged after being over continuously for ``grace_s`` and cleared after being within its limit
for ``grace_s`` (so a flag does not flap on a single sample).

What the allocator does with a flagged connector (:func:`as_fixed_load`): its draw is load we do
not control. It leaves the allocation; a meter upstream sees its draw as base load, and a node
without a trusted meter has the draw taken off its limit. The others are lowered in one step; the
offender keeps the limit it was sent (it ignores it anyway).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from actors.allocation import ancestry
from actors.allocation_types import ConnectorDemand, NodeInput, PerPhase, grid_phases
from actors.evolve import evolve, value


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceConfig:
    tolerance_a: float = 2.0
    grace_s: float = 30.0
    react_s: float = 10.0
    window_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("tolerance_a", "grace_s", "react_s", "window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"compliance {name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    at_s: float
    allowed_a: PerPhase
    measured_a: PerPhase

    @property
    def excess_a(self) -> float:
        return max(m - a for m, a in zip(self.measured_a, self.allowed_a, strict=True))


@value
class Tracker:
    """The limits set (``(since_s, limit)``, oldest first) and the samples seen, within the
    window, and the current verdict."""

    limits: tuple[tuple[float, PerPhase], ...] = ()
    samples: tuple[Sample, ...] = ()
    over_since_s: float | None = None
    within_since_s: float | None = None
    flagged: bool = False
    flagged_s: float | None = None

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def max_excess_a(self) -> float:
        return max((s.excess_a for s in self.samples), default=0.0)


def limit_set(
    tracker: Tracker, limit_a: PerPhase, *, now_s: float, cfg: ComplianceConfig
) -> Tracker:
    """A new limit is in force from ``now_s`` (a repeat of the current one changes nothing)."""
    if tracker.limits and tracker.limits[-1][1] == limit_a:
        return tracker
    limits = (*tracker.limits, (now_s, limit_a))
    return evolve(tracker, limits=_prune_limits(limits, now_s, cfg))


def _prune_limits(
    limits: tuple[tuple[float, PerPhase], ...], now_s: float, cfg: ComplianceConfig
) -> tuple[tuple[float, PerPhase], ...]:
    # Keep the newest limit set before the horizon: it was still in force at the horizon. A
    # sample up to window_s old is judged against the limit in force react_s before it, so the
    # horizon is that far back. The limits are in the order they were set (limit_set's clock is
    # monotonic), so the scan stops at the first one after the horizon: pruned on every change,
    # only the oldest one or two are before it (a 300 s history of a limit changed every 2 s:
    # 5.0 -> 2.0 us per limit set).
    horizon = now_s - cfg.window_s - cfg.react_s
    first = 0
    for i, (since, _) in enumerate(limits):
        if since > horizon:
            break
        first = i
    return limits[first:] if first else limits


def allowed_at(tracker: Tracker, at_s: float, cfg: ComplianceConfig) -> PerPhase | None:
    """Per phase, the highest limit that could still be in force at ``at_s``: the one in force
    at ``at_s - react_s`` and any set since. None while the first limit is younger than
    ``react_s`` (the charge point had no time to follow it yet)."""
    start = at_s - cfg.react_s
    base_index: int | None = None
    limits = tracker.limits
    for i in range(len(limits) - 1, -1, -1):  # from the newest: the last set before ``start``
        if limits[i][0] <= start:
            base_index = i
            break
    if base_index is None:
        return None
    candidates = [tracker.limits[base_index][1]]
    candidates.extend(limit for since, limit in tracker.limits[base_index + 1 :] if since <= at_s)
    return (
        max(c[0] for c in candidates),
        max(c[1] for c in candidates),
        max(c[2] for c in candidates),
    )


def observe(
    tracker: Tracker, measured_a: PerPhase, *, at_s: float, cfg: ComplianceConfig
) -> Tracker:
    """Fold one measurement in. A sample older than the last one seen is ignored."""
    last = tracker.last
    if last is not None and at_s <= last.at_s:
        return tracker
    allowed = allowed_at(tracker, at_s, cfg)
    if allowed is None:
        return tracker
    sample = Sample(at_s=at_s, allowed_a=allowed, measured_a=measured_a)
    samples = tuple(s for s in (*tracker.samples, sample) if at_s - s.at_s <= cfg.window_s)
    over = sample.excess_a > cfg.tolerance_a
    if over:
        over_since = tracker.over_since_s if tracker.over_since_s is not None else at_s
        within_since = None
    else:
        over_since = None
        within_since = tracker.within_since_s if tracker.within_since_s is not None else at_s
    flagged = tracker.flagged
    flagged_s = tracker.flagged_s
    if not flagged and over_since is not None and at_s - over_since >= cfg.grace_s:
        flagged, flagged_s = True, at_s
    elif flagged and within_since is not None and at_s - within_since >= cfg.grace_s:
        flagged, flagged_s = False, None
    return Tracker(
        limits=_prune_limits(tracker.limits, at_s, cfg),
        samples=samples,
        over_since_s=over_since,
        within_since_s=within_since,
        flagged=flagged,
        flagged_s=flagged_s,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedLoad:
    """The allocation's inputs with the connectors it cannot control taken out."""

    nodes: tuple[NodeInput, ...]
    demands: tuple[ConnectorDemand, ...]
    draw_by_connector: Mapping[str, PerPhase] = field(default_factory=dict)  # per grid phase


def as_fixed_load(
    nodes: Sequence[NodeInput],
    demands: Sequence[ConnectorDemand],
    flagged: Sequence[str],
    *,
    meters_trusted: bool,
) -> FixedLoad:
    """Take ``flagged`` connectors out of the allocation: their whole measured draw is load
    nobody controls. A trusted meter upstream already counts it (as base load, now that the
    connector is not managed); every node on its path without one (or every node, when
    ``meters_trusted`` is false: the fail-safe ignores meters) has the draw taken off its limit,
    and the lowered figure names the connector in the node's limit source. The others then share
    what is really left, in one step; the offender keeps whatever limit it was sent.
    """
    by_name = {n.name: n for n in nodes}
    paths = ancestry(nodes)
    current = {n.name: list(n.limit.current_a) for n in nodes}
    sources = {n.name: list(n.limit.sources) for n in nodes}
    totals = {n.name: (n.limit.total_a, n.limit.total_source) for n in nodes}
    kept: list[ConnectorDemand] = []
    draws: dict[str, PerPhase] = {}
    wanted = set(flagged)
    for d in demands:
        cid = d.connector_id
        if cid not in wanted or not d.active:
            kept.append(d)
            continue
        draw = [0.0, 0.0, 0.0]
        for cp_phase, grid_phase in enumerate(grid_phases(d.phase_rotation, 3)):
            draw[grid_phase] += max(0.0, d.measured_a[cp_phase])
        draws[cid] = (draw[0], draw[1], draw[2])
        for name in paths[d.node]:
            node = by_name[name]
            if meters_trusted and node.metered and node.meter is not None:
                continue
            for p in range(3):
                if draw[p] > 0 and math.isfinite(current[name][p]):
                    current[name][p] = max(0.0, current[name][p] - draw[p])
                    base = sources[name][p] or "limit"
                    sources[name][p] = (
                        f"{base} less {draw[p]:.1f} A drawn by {cid} (ignores its profile)"
                    )
            total_a, total_source = totals[name]
            drawn = sum(draw)
            if drawn > 0 and math.isfinite(total_a):
                # A power limit's total too (a charge point dimmed under section 14a).
                totals[name] = (
                    max(0.0, total_a - drawn),
                    f"{total_source or 'power limit'} less {drawn:.1f} A drawn by {cid} "
                    "(ignores its profile)",
                )
    new_nodes = tuple(
        evolve(
            n,
            limit=evolve(
                n.limit,
                current_a=(current[n.name][0], current[n.name][1], current[n.name][2]),
                sources=(sources[n.name][0], sources[n.name][1], sources[n.name][2]),
                total_a=totals[n.name][0],
                total_source=totals[n.name][1],
            ),
        )
        if current[n.name] != list(n.limit.current_a) or totals[n.name][0] != n.limit.total_a
        else n
        for n in nodes
    )
    return FixedLoad(nodes=new_nodes, demands=tuple(kept), draw_by_connector=draws)
