"""The load-management sections of a site file: meters, feeders, allocation, and the energy
fields of each charge point. Grid limits are in :mod:`config.energy_limits`.

```toml
[[meters]]
name = "grid"              # required, unique
model = "sdm630"           # a built-in map (config/meters/*.toml: abb_b23, em24, em340,
                           # sdm630, sunspec, sunspec_float, sunspec_int, umg604) ...
# map_file = "meters/my_meter.toml"   # ... or a map you wrote (relative to this file)
host = "192.168.1.30"      # required
port = 502                 # default 502
unit_id = 1                # default 1 (Modbus device id; 1 on Eastron meters)
framer = "tcp"             # "tcp" (Modbus/TCP) or "rtu" (RTU framing over TCP: RS-485 gateways)
poll_interval_s = 1.0      # default 1.0; faster than 1-2 Hz buys nothing
timeout_s = 1.0            # default 1.0; one failed read is reported at once, no retries
node = "site"              # what it measures: "site" (the grid connection) or a feeder name

[[feeders]]                # a sub-circuit with its own breaker
name = "garage"            # required, unique, not "site"
parent = "site"            # default "site"; feeders may hang on feeders
limit_a = 32               # required: breaker rating per phase, a number or [L1, L2, L3]

[allocation]
margin_a = 1.0             # kept free per phase on every node while chargers react
min_current_a = 6.0        # lowest current offered (IEC 61851: 6 A); below it: paused
settle_s = 7.0             # a change must be this old before the next increase
increase_step_a = 4.0      # at most this much more per increase
min_pause_s = 60.0         # a paused connector stays paused at least this long
min_charge_s = 60.0        # a started connector is not paused for this long (unless a
                           # physical limit would be exceeded)
stale_no_increase_s = 3.0  # meter older than this: no increases
stale_failsafe_s = 10.0    # meter older than this: fail-safe budget
failsafe_current_a = 6.0   # fail-safe cap per connector (0: pause all; else at least 6)
# failsafe_total_a = 32    # fail-safe budget per phase at the site (number or [L1, L2, L3])
draw_slack_a = 1.0         # a settled car drawing less than offered keeps its draw + this
resume_margin_a = 1.0      # a connector at 0 A starts only if its minimum + this fits
probe_step_a = 2.0         # a car not drawing at the minimum is offered this much more, once
sample_wait_s = 30.0       # an increase waits this long at most for the car's sample
base_hold_s = 0.0          # base load taken as its peak over this long (0: as read)
nominal_voltage_v = 230.0  # converts power limits to current
compliance_tolerance_a = 2.0  # a connector drawing more than its limit + this ...
compliance_grace_s = 30.0  # ... for this long is flagged (its draw counted as fixed load);
compliance_react_s = 10.0  # a lowered limit is judged this long after it was sent


[[charge_points]]          # energy keys of a charge point (the rest is the OCPP section)
priority = 0               # default 0; higher is served first, equal share within a priority
phases = 3                 # 1 or 3: phases the charge point is wired with
phase_rotation = "RST"     # grid phases of charge point L1, L2, L3 (OCPP PhaseRotation):
                           # RST, RTS, SRT, STR, TRS, TSR
max_current_a = 32         # per phase, the charge point's (and cable's) rating
feeder = "site"            # the node it hangs on: "site" or a feeder name
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from actors.allocation_types import ROTATIONS, AllocationConfig, PerPhase
from actors.compliance import ComplianceConfig
from actors.control_loop import ControlConfig, FailSafe
from actors.control_types import IEC_MIN_CURRENT_A
from config.energy_limits import ContactLimitConfig, GridLimitConfig, per_phase
from config.energy_limits import from_table as grid_limit_from_table
from config.fields import ConfigError, Table
from drivers.modbus.decode import ReadPlan
from drivers.modbus.errors import UnknownMeterModel
from drivers.modbus.registers import RegisterMap, known_models, load_map_file, load_model

SITE = "site"
FRAMERS = ("tcp", "rtu")


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterConfig:
    name: str
    register_maps: tuple[RegisterMap, ...]  # one, or the SunSpec candidates
    model: str  # the built-in name, or the map file path
    host: str
    port: int = 502
    unit_id: int = 1
    framer: Literal["tcp", "rtu"] = "tcp"
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    node: str = SITE


@dataclass(frozen=True, slots=True, kw_only=True)
class FeederConfig:
    name: str
    parent: str
    limit_a: PerPhase


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationSection:
    control: ControlConfig
    nominal_voltage_v: float = 230.0
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointEnergy:
    priority: int = 0
    phases: int = 3
    phase_rotation: str = "RST"
    max_current_a: float = 32.0
    feeder: str = SITE


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyConfig:
    meters: tuple[MeterConfig, ...]
    feeders: tuple[FeederConfig, ...]
    grid_limits: tuple[GridLimitConfig, ...]
    allocation: AllocationSection

    def node_names(self) -> list[str]:
        return [SITE, *(f.name for f in self.feeders)]


def meter_from_table(t: Table) -> MeterConfig:
    name = t.string("name")
    if not name:
        raise t.error("name", "a non-empty name")
    model = t.string("model", None)
    map_file = t.string("map_file", None)
    if (model is None) == (map_file is None):
        raise t.error("model", "exactly one of model (a built-in map) or map_file")
    if model is not None:
        try:
            maps = load_model(model)
        except UnknownMeterModel:
            raise t.error("model", "one of " + ", ".join(known_models()), model) from None
        label = model
    else:
        path = Path(map_file)
        if not path.is_absolute() and not t.source.startswith("<"):
            path = Path(t.source).parent / path
        maps = (load_map_file(path),)  # raises ConfigError naming the map file and key
        label = str(path)
    meter = MeterConfig(
        name=name,
        register_maps=maps,
        model=label,
        host=t.string("host", nonempty="a host name or address"),
        port=t.integer("port", 502, min=1, max=65535),
        unit_id=t.integer("unit_id", 1, min=0, max=255),
        framer=t.string("framer", "tcp", choices=FRAMERS),
        poll_interval_s=t.number("poll_interval_s", 1.0, min=0.05, max=60),
        timeout_s=t.number("timeout_s", 1.0, min=0.05, max=30),
        node=t.string("node", SITE),
    )
    if not any(m.field("current_l1_a") for m in maps):
        raise t.error("model", "a register map with phase currents (current_l1_a..)", label)
    t.reject_unknown()
    return meter


def feeder_from_table(t: Table) -> FeederConfig:
    name = t.string("name")
    if not name or name == SITE:
        raise t.error("name", f"a non-empty name other than {SITE!r}", name)
    limit = per_phase(t, "limit_a")
    assert limit is not None
    feeder = FeederConfig(name=name, parent=t.string("parent", SITE), limit_a=limit)
    t.reject_unknown()
    return feeder


def allocation_from_table(t: Table) -> AllocationSection:
    min_current = t.number("min_current_a", 6.0, min=6.0, max=80.0)
    no_increase = t.number("stale_no_increase_s", 3.0, min=0.5)
    failsafe_after = t.number("stale_failsafe_s", 10.0, min=1.0)
    if failsafe_after <= no_increase:
        if not t.has("stale_failsafe_s"):  # blame the key that was written
            raise t.error(
                "stale_no_increase_s",
                f"a value < stale_failsafe_s ({failsafe_after:g}, its default)",
                no_increase,
            )
        raise t.error(
            "stale_failsafe_s", f"a value > stale_no_increase_s ({no_increase:g})", failsafe_after
        )
    fs_current = t.number("failsafe_current_a", IEC_MIN_CURRENT_A, min=0.0, max=80.0)
    if 0 < fs_current < IEC_MIN_CURRENT_A:
        # a car does not draw below 6 A (IEC 61851): the loop counts it as 0, the broker's safe
        # TxDefaultProfile would say it. (Between 6 A and min_current_a is meaningful: a new
        # car draws it until the loop's first decision; actors.control_types.beginning.)
        raise t.error(
            "failsafe_current_a",
            f"0 (pause all) or at least {IEC_MIN_CURRENT_A:g} (IEC 61851)",
            fs_current,
        )
    fs_total = per_phase(t, "failsafe_total_a", required=False)
    control = ControlConfig(
        allocation=AllocationConfig(
            margin_a=t.number("margin_a", 1.0, min=0.0, max=50.0),
            min_current_a=min_current,
            draw_slack_a=t.number("draw_slack_a", 1.0, min=0.0, max=32.0),
        ),
        settle_s=t.number("settle_s", 7.0, min=0.0, max=120.0),
        increase_step_a=t.number("increase_step_a", 4.0, min=0.1, max=80.0),
        min_pause_s=t.number("min_pause_s", 60.0, min=0.0),
        min_charge_s=t.number("min_charge_s", 60.0, min=0.0),
        stale_no_increase_s=no_increase,
        stale_failsafe_s=failsafe_after,
        failsafe=FailSafe(current_a=fs_current, total_a=fs_total),
        resume_margin_a=t.number("resume_margin_a", 1.0, min=0.0, max=32.0),
        probe_step_a=t.number("probe_step_a", 2.0, min=0.0, max=32.0),
        sample_wait_s=t.number("sample_wait_s", 30.0, min=0.0, max=600.0),
        base_hold_s=t.number("base_hold_s", 0.0, min=0.0, max=600.0),
    )

    section = AllocationSection(
        control=control,
        nominal_voltage_v=t.number("nominal_voltage_v", 230.0, min=100, max=500),
        compliance=ComplianceConfig(
            tolerance_a=t.number("compliance_tolerance_a", 2.0, min=0.0, max=32.0),
            grace_s=t.number("compliance_grace_s", 30.0, min=0.0, max=3600.0),
            react_s=t.number("compliance_react_s", 10.0, min=0.0, max=600.0),
        ),
    )
    t.reject_unknown()
    return section


def charge_point_energy_from_table(t: Table) -> ChargePointEnergy:
    """The energy keys of one ``[[charge_points]]`` table. Does not call ``reject_unknown``:
    the charge point loader reads its other keys and calls it once."""
    rotation = t.string("phase_rotation", "RST", choices=ROTATIONS)
    phases = t.integer("phases", 3)
    if phases not in (1, 3):
        raise t.error("phases", "1 or 3 (phases the charge point is wired with)", phases)
    return ChargePointEnergy(
        priority=t.integer("priority", 0, min=-1000, max=1000),
        phases=phases,
        phase_rotation=rotation,
        max_current_a=t.number("max_current_a", 32.0, min=6.0, max=80.0),
        feeder=t.string("feeder", SITE),
    )


def energy_from_root(
    t: Table, *, charge_points: Sequence[tuple[str, ChargePointEnergy]] = ()
) -> EnergyConfig:
    """Read ``[[meters]]``, ``[[feeders]]``, ``[[grid_limits]]`` and ``[allocation]`` from the
    site file's root table and check the references between them (and the charge points')."""
    meters = tuple(meter_from_table(m) for m in t.tables("meters"))
    feeders = tuple(feeder_from_table(f) for f in t.tables("feeders"))
    limits = tuple(grid_limit_from_table(g) for g in t.tables("grid_limits"))
    allocation = allocation_from_table(
        t.table("allocation", Table({}, source=t.source, path="allocation"))
    )
    config = EnergyConfig(meters=meters, feeders=feeders, grid_limits=limits, allocation=allocation)
    check_references(t, config, charge_points)
    return config


def check_references(
    t: Table, config: EnergyConfig, charge_points: Sequence[tuple[str, ChargePointEnergy]]
) -> None:
    """Names are unique, every node named exists, the feeder tree has no cycle, the site has a
    limit, and at most one meter measures each node."""

    def fail(key: str, expected: str, got: object) -> ConfigError:
        return ConfigError(t.source, key, expected, got)

    feeders = {f.name: f for f in config.feeders}
    if len(feeders) != len(config.feeders):
        raise fail("feeders", "unique feeder names", [f.name for f in config.feeders])
    nodes = set(config.node_names())
    for i, f in enumerate(config.feeders):
        if f.parent not in nodes:
            raise fail(f"feeders[{i}].parent", "'site' or a feeder name", f.parent)
        seen = {f.name}
        parent = f.parent
        while parent != SITE:
            if parent in seen:
                raise fail(f"feeders[{i}].parent", "a feeder tree without cycles", f.parent)
            seen.add(parent)
            parent = feeders[parent].parent
    cp_names = {name for name, _ in charge_points}
    # A grid limit's node names a feeder or a charge point (section 14a dims one device): a
    # feeder named like a charge point took the charge point's contact (the feeder's limit).
    for i, f in enumerate(config.feeders):
        if f.name in cp_names:
            raise fail(f"feeders[{i}].name", "a name no charge point has", f.name)
    limit_nodes = nodes | cp_names
    names: set[str] = set()
    for i, g in enumerate(config.grid_limits):
        if g.source.name in names:
            raise fail(f"grid_limits[{i}].name", "a unique name", g.source.name)
        names.add(g.source.name)
        if g.source.node not in limit_nodes:
            raise fail(
                f"grid_limits[{i}].node", "'site', a feeder or a charge point id", g.source.node
            )
    if not any(g.source.node == SITE for g in config.grid_limits):
        raise fail("grid_limits", "at least one limit on node 'site' (e.g. the main fuse)", None)
    metered: dict[str, str] = {}
    meter_names: set[str] = set()
    for i, m in enumerate(config.meters):
        if m.name in meter_names:
            raise fail(f"meters[{i}].name", "a unique name", m.name)
        meter_names.add(m.name)
        if m.node not in nodes:
            raise fail(f"meters[{i}].node", "'site' or a feeder name", m.node)
        if m.node in metered:
            raise fail(
                f"meters[{i}].node",
                f"a node no other meter measures ({metered[m.node]!r} does)",
                m.node,
            )
        metered[m.node] = m.name
    control = config.allocation.control
    for i, m in enumerate(config.meters):
        # A meter's read is poll_interval_s old (plus a slow read's time) just before the next
        # one comes: at stale_failsafe_s or more, the site would fall to its fail-safe between
        # two good reads. (Past stale_no_increase_s only the ticks between reads hold; the step
        # right after each read sees it fresh.) A slow read takes up to timeout_s per request,
        # and a map whose registers lie apart takes several requests a read.
        requests = read_requests(m.register_maps)
        if m.poll_interval_s + requests * m.timeout_s >= control.stale_failsafe_s:
            slow = (
                f"timeout_s {m.timeout_s:g}"
                if requests == 1
                else f"{requests} requests a read ({m.model}) x timeout_s {m.timeout_s:g}"
            )
            raise fail(
                f"meters[{i}].poll_interval_s",
                "poll_interval_s + a slow read below [allocation] stale_failsafe_s "
                f"({control.stale_failsafe_s:g}; {slow})",
                m.poll_interval_s,
            )
    minimum = control.allocation.min_current_a
    for name, cp in charge_points:
        if cp.feeder not in nodes:
            raise fail(f"charge_points[{name}].feeder", "'site' or a feeder name", cp.feeder)
        if cp.max_current_a < minimum:  # it would never be offered its minimum: never charge
            raise fail(
                f"charge_points[{name}].max_current_a",
                f"at least [allocation] min_current_a ({minimum:g})",
                cp.max_current_a,
            )


ENERGY_SECTIONS = ("meters", "feeders", "grid_limits", "allocation")


def site_energy_from_tables(
    top: Table, cp_tables: Sequence[Table]
) -> tuple[EnergyConfig | None, list[ChargePointEnergy]]:
    """The site file's load-management sections and each charge point's energy keys (the hook
    :func:`config.schema.parse_site` calls). A site with none of ``[[meters]]``, ``[[feeders]]``,
    ``[[grid_limits]]`` or ``[allocation]`` has no load management: None, and its charge points
    may then only hang on "site". A relative contact ``path`` is taken from the site file's
    directory, as a meter's ``map_file`` is."""
    cp_energy = [charge_point_energy_from_table(t) for t in cp_tables]
    named = [
        (str(t.data.get("id", f"#{i}")), e)
        for i, (t, e) in enumerate(zip(cp_tables, cp_energy, strict=True))
    ]
    if not any(top.has(name) for name in ENERGY_SECTIONS):
        for i, (_, cp) in enumerate(named):
            if cp.feeder != SITE:
                raise ConfigError(
                    top.source,
                    f"charge_points[{i}].feeder",
                    "'site' (the site file has no [[feeders]])",
                    cp.feeder,
                )
        return None, cp_energy
    config = energy_from_root(top, charge_points=named)
    if not top.source.startswith("<"):
        base = Path(top.source).parent
        limits = tuple(
            replace(g, path=str(base / g.path))
            if isinstance(g, ContactLimitConfig) and not Path(g.path).is_absolute()
            else g
            for g in config.grid_limits
        )
        config = replace(config, grid_limits=limits)
    return config, cp_energy


def read_requests(maps: Sequence[RegisterMap]) -> int:
    """Requests a good read of a meter with these maps makes (the SunSpec candidates: the most
    of any; the model scan comes once, before the first reading)."""
    return max((len(ReadPlan(m).blocks) for m in maps), default=1)
