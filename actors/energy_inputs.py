"""From what the site allocator knows to the control loop's inputs, and back to words. Pure.

The allocator actor keeps the latest meter samples, grid limits and connector reports; these
functions turn them into the site tree (:class:`NodeInput`) and demand (:class:`ConnectorDemand`)
of :mod:`actors.allocation`, and a decision into the ``binding_source`` that the profile batch
and the audit trail carry.

Nodes: "site" (the grid connection), every ``[[feeders]]`` entry, and every charge point that a
grid limit names as its node (e.g. a section 14a limit on one device), hanging on its feeder.
A connector hangs on its charge point's node if there is one, else on its feeder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from actors.allocation_types import (
    ZERO,
    Binding,
    ConnectorDemand,
    MeterSample,
    NodeInput,
    NodeLimit,
    PerPhase,
)
from actors.car_learning import NEVER_SAMPLED
from actors.control_loop import ConnectorDecision, ControlConfig, Mode
from actors.energy_messages import (
    CLOUD_PROFILE,
    ENERGY_CAP,
    FAILSAFE_CURRENT,
    ConnectorReport,
    SiteRulesChanged,
)
from actors.evolve import evolve
from actors.grid_limits import GridLimit, LimitValue, effective_limits
from actors.grid_limits_schedule import schedule_limit
from actors.utc import parse_utc
from config.energy import SITE, ChargePointEnergy, EnergyConfig
from config.energy_limits import GridLimitConfig, ScheduleLimitConfig, StaticLimitConfig

MODE_NAMES: Mapping[Mode, str] = {
    "normal": "normal",
    "no_increase": "stale",
    "failsafe": "fail-safe",
}
DEFAULT_CP = ChargePointEnergy()


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteModel:
    """The fixed shape of the site, from the configuration."""

    parents: Mapping[str, str | None]  # node -> parent, in tree order (root first)
    metered: frozenset[str]
    meter_nodes: Mapping[str, str]  # meter name -> node
    charge_points: Mapping[str, ChargePointEnergy]  # casefolded id -> energy keys
    cp_nodes: Mapping[str, str]  # casefolded charge point id -> its node name
    sources: tuple[str, ...]  # every configured grid-limit source name
    source_configs: Mapping[str, GridLimitConfig]
    fixed_limits: tuple[GridLimit, ...]  # feeders' breakers; a central rule's site cap
    control: ControlConfig
    nominal_voltage_v: float

    @property
    def node_names(self) -> list[str]:
        return list(self.parents)

    def charge_point(self, cp_id: str) -> ChargePointEnergy:
        return self.charge_points.get(cp_id.casefold(), DEFAULT_CP)

    def node_of(self, cp_id: str) -> str:
        return self.placed(cp_id)[1]

    def placed(self, cp_id: str) -> tuple[ChargePointEnergy, str]:
        """The charge point's settings and its node (one lookup of the id for both)."""
        folded = cp_id.casefold()
        cp = self.charge_points.get(folded, DEFAULT_CP)
        node = self.cp_nodes.get(folded)
        return cp, (cp.feeder if node is None else node)


def site_model(energy: EnergyConfig, charge_points: Mapping[str, ChargePointEnergy]) -> SiteModel:
    parents: dict[str, str | None] = {SITE: None}
    for feeder in energy.feeders:
        parents[feeder.name] = feeder.parent
    folded = {cp.casefold(): e for cp, e in charge_points.items()}
    cp_nodes: dict[str, str] = {}
    for g in energy.grid_limits:
        node = g.source.node
        if node not in parents and node.casefold() in folded:
            cp_nodes[node.casefold()] = node
            parents[node] = folded[node.casefold()].feeder
    return SiteModel(
        parents=parents,
        metered=frozenset(m.node for m in energy.meters),
        meter_nodes={m.name: m.node for m in energy.meters},
        charge_points=folded,
        cp_nodes=cp_nodes,
        sources=tuple(g.source.name for g in energy.grid_limits),
        source_configs={g.source.name: g for g in energy.grid_limits},
        fixed_limits=tuple(
            GridLimit(
                source=breaker_name(f.name),
                node=f.name,
                value=LimitValue(current_a=f.limit_a),
                detail="feeder breaker",
            )
            for f in energy.feeders
        ),
        control=energy.allocation.control,
        nominal_voltage_v=energy.allocation.nominal_voltage_v,
    )


def unreported_limit(config: GridLimitConfig, now_utc: datetime) -> GridLimit | None:
    """What a source that has not reported (its actor keeps failing to start) imposes: a static
    limit its value, a schedule its step in force, the others their fail-safe."""
    if isinstance(config, StaticLimitConfig):
        return config.source.limit()
    if isinstance(config, ScheduleLimitConfig):
        return schedule_limit(config.source, now_utc=now_utc)
    s = config.source
    if s.fail_safe is None:
        return None
    return GridLimit(
        source=s.name, node=s.node, value=s.fail_safe, stale=True, detail="never reported"
    )


RULES_SOURCE = "central rules"


def with_rules(model: SiteModel, rules: SiteRulesChanged) -> SiteModel:
    """The site as the central rules amend it: per charge point priority and maximum current
    (never above the rating in the site file: the rules cannot make a cable carry more), the
    margin, and a cap on the site's current per phase (a limit source of its own)."""
    folded_rules_max = {k.casefold(): v for k, v in rules.max_current_a.items()}
    folded_rules_prio = {k.casefold(): v for k, v in rules.priorities.items()}
    charge_points = dict(model.charge_points)
    for cp in set(folded_rules_max) | set(folded_rules_prio):
        base = charge_points.get(cp, DEFAULT_CP)
        charge_points[cp] = replace(
            base,
            priority=folded_rules_prio.get(cp, base.priority),
            max_current_a=min(base.max_current_a, folded_rules_max.get(cp, math.inf)),
        )
    control = model.control
    if "margin_a" in rules.site:
        control = replace(
            control, allocation=replace(control.allocation, margin_a=rules.site["margin_a"])
        )
    fixed = tuple(g for g in model.fixed_limits if g.source != RULES_SOURCE)
    if "max_current_a" in rules.site:
        cap = rules.site["max_current_a"]
        fixed += (
            GridLimit(
                source=RULES_SOURCE,
                node=SITE,
                value=LimitValue(current_a=(cap, cap, cap)),
                detail=f"central rules version {rules.version}",
            ),
        )
    return replace(model, charge_points=charge_points, control=control, fixed_limits=fixed)


def breaker_name(feeder: str) -> str:
    return f"{feeder} breaker"


def node_limits(model: SiteModel, limits: Iterable[GridLimit | None]) -> dict[str, NodeLimit]:
    """The effective limit of each node: the configured sources and the feeders' breakers."""
    return effective_limits(
        [*model.fixed_limits, *limits],
        model.node_names,
        nominal_voltage_v=model.nominal_voltage_v,
    )


def node_inputs(
    model: SiteModel, limits: Mapping[str, NodeLimit], samples: Mapping[str, MeterSample]
) -> list[NodeInput]:
    return [
        NodeInput(
            name=name,
            parent=parent,
            limit=limits[name],
            metered=name in model.metered,
            meter=samples.get(name),
        )
        for name, parent in model.parents.items()
    ]


def connector_key(charge_point_id: str, connector_id: int) -> str:
    return f"{charge_point_id}/{connector_id}"


def arrival_s(report: ConnectorReport, default_s: float) -> float:
    """Wall-clock arrival as epoch seconds: only its order matters."""
    if report.arrived_utc is None:
        return default_s
    epoch = _epoch_s(report.arrived_utc)
    return default_s if epoch is None else epoch


@functools.lru_cache(maxsize=8192)
def _epoch_s(text: str) -> float | None:
    # Every step asks again for every connector; an arrival stays the same for a whole session.
    try:
        return parse_utc(text, where="arrived_utc").timestamp()
    except ValueError:
        return None


def demand_of(
    model: SiteModel,
    report: ConnectorReport,
    *,
    default_arrival_s: float,
    measured_a: PerPhase | None = None,
    sampled_s: float | None = None,
) -> ConnectorDemand:
    """The connector's demand; ``measured_a`` overrides the report's (see :func:`sample_as_of`)
    and ``sampled_s`` says when it was taken (monotonic; ``-inf``: never)."""
    cp, node = model.placed(report.charge_point_id)
    measured: PerPhase = measured_a or report.measured_a or ZERO
    max_a, max_source = cp.max_current_a, ""
    cloud_a = report.cloud_cap_a
    if cloud_a is not None and cloud_a < max_a:
        max_a, max_source = max(0.0, cloud_a), CLOUD_PROFILE
    if report.energy_blocked:
        # No more energy for this transaction (the broker holds it at 0 A whatever it is sent):
        # the loop pauses it at once, and its room goes to the others.
        max_a, max_source = 0.0, ENERGY_CAP
    return ConnectorDemand(
        connector_id=connector_key(report.charge_point_id, report.connector_id),
        node=node,
        # A charge point whose link is down still draws what it was last given: keep it counted.
        active=report.plugged and report.charging,
        max_current_a=max_a,
        max_source=max_source,
        phases=cp.phases,
        phase_rotation=cp.phase_rotation,
        priority=cp.priority,
        arrived_s=arrival_s(report, default_arrival_s),
        measured_a=(max(0.0, measured[0]), max(0.0, measured[1]), max(0.0, measured[2])),
        sampled_s=sampled_s,
    )


class DemandCache:
    """:func:`demand_of` for every step, made again only when its inputs changed.

    A step (each tick, a second apart, and on events) asks for every connector's demand; its
    report, its sample and the site model change at most with a DemandBatch or the central
    rules, so the demand is kept with the very objects it was made from and reused while they
    are the same objects (reports, samples and the model are immutable and replaced on change;
    SiteState keeps the object of a report the broker sends again unchanged). A connector
    without an arrival time arrives "now" at each step: its kept demand gets the step's time
    while it is active. The arrival only ranks cars, so an idle connector's demand is kept as it
    is, and the loop's work for it stays the same objects (CountMemo.parked).
    Measured at 500 connectors (the loop timed alone in a scratch copy): 1.7 ms on a step after
    a batch, 0.3 ms on the steps between (``bench/allocator.py`` prints the whole step).
    """

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[str, tuple[ConnectorReport, object, SiteModel, bool, ConnectorDemand]] = {}

    def demand(
        self,
        key: str,
        model: SiteModel,
        report: ConnectorReport,
        sample: tuple[float, PerPhase] | None,
        *,
        now_s: float,
    ) -> ConnectorDemand:
        kept = self._kept.get(key)
        if kept is not None and kept[0] is report and kept[1] is sample and kept[2] is model:
            d = kept[4]
            return (
                evolve(d, arrived_s=now_s) if kept[3] and d.active and d.arrived_s != now_s else d
            )
        d = demand_of(
            model,
            report,
            default_arrival_s=now_s,
            measured_a=None if sample is None else sample[1],
            sampled_s=NEVER_SAMPLED if sample is None else sample[0],
        )
        arrives_now = math.isnan(arrival_s(report, math.nan))
        self._kept[key] = (report, sample, model, arrives_now, d)
        return d

    def demands(
        self,
        model: SiteModel,
        reports: Mapping[str, ConnectorReport],
        measured: Mapping[str, Sequence[tuple[float, PerPhase]]],
        meter_s: float | None,
        *,
        now_s: float,
    ) -> list[ConnectorDemand]:
        """:meth:`demand` of every report, with its sample as of ``meter_s`` (:func:`sample_as_of`)."""
        kept = self._kept
        out: list[ConnectorDemand] = []
        for key, report in reports.items():
            samples = measured.get(key)
            if not samples:
                sample = None
            elif meter_s is not None and samples[-1][0] <= meter_s:
                sample = samples[-1]  # (sample_as_of's answer for most: the newest)
            else:
                sample = sample_as_of(samples, meter_s)
            k = kept.get(key)
            if k is not None and k[0] is report and k[1] is sample and k[2] is model and not k[3]:
                out.append(k[4])
            else:
                out.append(self.demand(key, model, report, sample, now_s=now_s))
        return out

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the connectors not in ``keep`` (gone from the reports)."""
        keep = set(keep)
        for key in [k for k in self._kept if k not in keep]:
            del self._kept[key]


def sample_as_of(
    samples: Sequence[tuple[float, PerPhase]], meter_s: float | None
) -> tuple[float, PerPhase] | None:
    """The sample :func:`measured_as_of` picks, with its time (None without samples)."""
    if not samples:
        return None
    if meter_s is None:
        return samples[-1]
    for sample in reversed(samples):
        if sample[0] <= meter_s:
            return sample
    return samples[0]


def measured_as_of(samples: Sequence[tuple[float, PerPhase]], meter_s: float | None) -> PerPhase:
    """The connector's draw as the meter saw it: the latest sample taken at or before the meter
    sample (``meter_s``); the oldest one if every sample is newer; zero without samples.

    Base load is meter minus managed draw. A connector sample newer than the meter's would count
    a ramp the meter does not show yet as managed, so the base load would come out too low and
    the headroom too high (a ramp of 8 -> 16 -> 24 A that ran ahead of a meter still showing the
    8 A). When every sample is newer (a connector just reported for the first time) the oldest
    is used rather than zero: zero would count its whole draw twice and pause cars for a minute
    on a reading one poll old, while the error the other way lasts one meter poll and is bounded
    by the safe default profile the car started under. Without a meter: the newest sample."""
    sample = sample_as_of(samples, meter_s)
    return ZERO if sample is None else sample[1]


def is_decrease(old: Mapping[str, NodeLimit], new: Mapping[str, NodeLimit]) -> bool:
    """Did any node's phase or total limit go down (so limits in force may no longer fit)?"""
    for name, lim in new.items():
        before = old.get(name)
        if before is None:
            return True
        if any(n < b for n, b in zip(lim.current_a, before.current_a, strict=True)):
            return True
        if lim.total_a < before.total_a:
            return True
    return False


def over_limit(sample: PerPhase, limit: NodeLimit, margin_a: float) -> bool:
    """The meter shows a node using more than its limit less the margin: decrease now."""
    if any(m > lim - margin_a for m, lim in zip(sample, limit.current_a, strict=True)):
        return True
    return math.isfinite(limit.total_a) and sum(sample) > limit.total_a - 3 * margin_a


def binding_source(decision: ConnectorDecision, mode: Mode) -> str:
    """What bound the limit, as the batch and the audit trail name it."""
    if decision.action == "hold" and mode == "no_increase":
        return "stale meter: no increase"
    b: Binding = decision.binding
    if b.kind in ("car_max", "below_min"):
        if b.source == FAILSAFE_CURRENT:
            return "fail-safe"  # the fail-safe mode's cap on every connector's maximum
        if b.source:
            return b.source  # e.g. the cloud's TxProfile, in every mode
    if b.kind in ("node", "paused"):
        where = b.source or f"node {b.node}"
        return f"grid_limit:{where}/{b.phase}"
    return _KIND_SOURCES.get(b.kind, b.kind)


_KIND_SOURCES = {
    "car_max": "car max",
    "undrawn": "car draw",
    "below_min": "car max below minimum",
    "inactive": "no car",
}


def finite(value: float | None, digits: int = 3) -> float | None:
    """A JSON-able number: infinity and NaN become None."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def limit_json(lim: NodeLimit) -> dict[str, Any]:
    out: dict[str, Any] = {
        phase: {"limit_a": finite(a), "source": src or None}
        for phase, a, src in zip(("L1", "L2", "L3"), lim.current_a, lim.sources, strict=True)
    }
    if math.isfinite(lim.total_a):
        out["total"] = {"limit_a": finite(lim.total_a), "source": lim.total_source}
    return out


def seconds_between(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()
