"""The demo site in a closed loop over simulated time: SiteState, cars and meter, no sockets.

Each simulated second the meter is read (base load plus what every car draws, on the grid phases
the charge point's rotation gives), the broker's demand batch arrives (each connector's last
MeterValues sample, taken every ``meter_interval_s``, and on a 2.0.1 station also when the
charging state changes), and the allocator steps (the tick; plus at once on an event that can
require a decrease, as the actor does). A limit reaches a car ``latency_s`` after the step, and
only when the broker would send it (:func:`actors.profiles.worth_sending`). Cars are
:class:`sim.car.Car`, so they ramp, pause below their thresholds and refuse to start at 6 A as in
the demo. Everything is deterministic for given parameters.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.allocation import overloaded
from actors.allocation_types import PerPhase, grid_phases
from actors.control_loop import StepRecord
from actors.energy_inputs import site_model
from actors.energy_messages import ConnectorReport, DemandBatch
from actors.energy_tree import charge_point_energy
from actors.grid_limit import GridLimitReported
from actors.grid_limits import GridLimit, LimitValue
from actors.meter import MeterRead
from actors.profiles import worth_sending
from actors.site_state import SiteState
from actors.utc import format_utc
from config.schema import parse_site
from sim.base_load import BaseLoad
from sim.car import IEC_MIN_CURRENT_A, Car, CarSpec

T0 = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
START_S = 1000.0

# The demo's cars (sim/site.py DEFAULT_CARS + sim/demo.py), in the order the demo plugs them in.
DEMO_CARS: tuple[CarSpec, ...] = (
    CarSpec(name="sedan-3ph-16a", max_current_a=16.0, energy_need_wh=40_000.0),
    CarSpec(name="suv-3ph-32a", max_current_a=32.0, energy_need_wh=60_000.0),
    CarSpec(name="compact-1ph-l2", max_current_a=32.0, phases=1, single_phase=2),
    CarSpec(name="zoe-no-start-at-6a", max_current_a=32.0, min_start_a=8.0),
    CarSpec(name="van-pauses-below-8a", max_current_a=16.0, pause_below_a=8.0),
    CarSpec(name="estate-3ph-32a", max_current_a=32.0, energy_need_wh=45_000.0),
    CarSpec(name="city-1ph-l1", max_current_a=16.0, phases=1, single_phase=1),
    CarSpec(name="hatch-3ph-16a", max_current_a=16.0, energy_need_wh=25_000.0),
)
# The demo's protocols cycle 1.6, 1.6, 1.6, 2.0.1: stations 4 and 8 speak 2.0.1.
DEMO_V201 = frozenset({3, 7})
DEMO_BASE = BaseLoad(mean_a=(15.0, 11.0, 18.0), daily_swing=0.0, noise_a=0.5)

DEMO_SITE = """
[site]
name = "demo"
[[meters]]
name = "grid"
model = "sdm630"
host = "127.0.0.1"
[[grid_limits]]
name = "main fuse"
kind = "static"
node = "site"
current_a = {fuse_a}
[allocation]
margin_a = 2.0
settle_s = 5.0
min_charge_s = 30.0
min_pause_s = 30.0
[[charge_points]]
id = "DEMO-CP-001"
priority = 10
max_current_a = 32
[[charge_points]]
id = "DEMO-CP-002"
priority = 10
max_current_a = 32
[[charge_points]]
id = "DEMO-CP-003"
max_current_a = 32
[[charge_points]]
id = "DEMO-CP-004"
max_current_a = 32
[[charge_points]]
id = "DEMO-CP-005"
max_current_a = 16
[[charge_points]]
id = "DEMO-CP-006"
max_current_a = 32
phase_rotation = "STR"
[[charge_points]]
id = "DEMO-CP-007"
max_current_a = 32
[[charge_points]]
id = "DEMO-CP-008"
max_current_a = 32
"""

Sample = tuple[float, PerPhase]  # (monotonic s, per charge-point phase)


@dataclass(slots=True)
class Station:
    """One simulated charge point with one connector and (maybe) a car."""

    cp_id: str
    rotation: str
    v201: bool
    sample_offset_s: float
    car: Car | None = None
    arrived_s: float | None = None
    offered_a: float = 0.0
    sent_a: float | None = None  # what the broker last sent (it filters small increases)
    sample: Sample | None = None
    next_sample_s: float = 0.0
    charging_state: str = ""
    sessions: int = 0  # transactions begun here

    @property
    def tx_id(self) -> str | None:
        """The running transaction (None: no car)."""
        return None if self.car is None else f"{self.cp_id}-{self.sessions}"

    def draw_cp(self, now_s: float) -> PerPhase:
        return (0.0, 0.0, 0.0) if self.car is None else self.car.phase_currents_a(now_s)

    def draw_grid(self, now_s: float) -> PerPhase:
        cp = self.draw_cp(now_s)
        out = [0.0, 0.0, 0.0]
        for cp_phase, grid_phase in enumerate(grid_phases(self.rotation, 3)):
            out[grid_phase] += cp[cp_phase]
        return (out[0], out[1], out[2])

    def offer(self, limit_a: float, now_s: float) -> None:
        self.offered_a = 0.0 if limit_a < IEC_MIN_CURRENT_A else limit_a
        if self.car is not None:
            self.car.offer(self.offered_a, now_s)

    def state(self, now_s: float) -> str:
        if self.car is None:
            return "Idle"
        if self.offered_a < IEC_MIN_CURRENT_A:
            return "SuspendedEVSE"
        return "Charging" if self.car.target_a(now_s) > 0 else "SuspendedEV"


@dataclass(slots=True)
class Trace:
    """What happened: every step's record, every limit a car was given, the real grid load."""

    records: list[StepRecord] = field(default_factory=list)
    # Per charge point: (time, limit given to the car, whether the car was drawing just before).
    applied: dict[str, list[tuple[float, float, bool]]] = field(default_factory=dict)
    grid: list[tuple[float, PerPhase]] = field(default_factory=list)

    def transitions(
        self, cp_id: str, *, since_s: float, drawing_only: bool = False
    ) -> list[tuple[float, str]]:
        """(time, "pause"/"resume") of the limits the car was given after ``since_s``.
        ``drawing_only``: leave out the pauses of a car that was not drawing, and the resume
        before such a pause (offering 6 A or 0 A to a car that does not draw changes nothing
        for it)."""
        out: list[tuple[float, str]] = []
        previous: float | None = None
        for at_s, limit, drawing in self.applied.get(cp_id, []):
            if previous is not None and at_s >= since_s:
                if previous > 0 and limit == 0:
                    if drawing or not drawing_only:
                        out.append((at_s, "pause"))
                    elif out and out[-1][1] == "resume":
                        out.pop()
                elif previous == 0 and limit > 0:
                    out.append((at_s, "resume"))
            previous = limit
        return out


class ClosedLoop:
    def __init__(
        self,
        cars: Sequence[CarSpec | None] = DEMO_CARS,
        *,
        base: BaseLoad = DEMO_BASE,
        fuse_a: float = 63.0,
        meter_interval_s: float = 10.0,
        latency_s: float = 0.3,
        v201: frozenset[int] = DEMO_V201,
        default_a: float = 6.0,
        base_hold_s: float = 0.0,
        report_idle: bool = False,
    ) -> None:
        """``report_idle``: connectors without a car are reported too (as the broker does), so
        a car arrives at a connector the allocator knows (its session begins under the
        TxDefaultProfile, actors.control_types.beginning) rather than at one seen first."""
        config = parse_site(DEMO_SITE.format(fuse_a=fuse_a), source="<demo>", base_dir=Path("."))
        assert config.energy is not None
        model = site_model(config.energy, charge_point_energy(config))
        # A tunable the site file does not offer (yet).
        model = replace(model, control=replace(model.control, base_hold_s=base_hold_s))
        self.state = SiteState(model, actor="energy/allocator", started_s=START_S)
        self.base = base
        self.fuse_a = fuse_a
        self.meter_interval_s = meter_interval_s
        self.latency_s = latency_s
        self.default_a = default_a
        self.report_idle = report_idle
        self.now_s = START_S
        self.trace = Trace()
        self.stations = [
            Station(
                cp_id=f"DEMO-CP-{i + 1:03d}",
                rotation=model.charge_point(f"DEMO-CP-{i + 1:03d}").phase_rotation,
                v201=i in v201,
                sample_offset_s=(i * 1.3) % meter_interval_s,
            )
            for i in range(len(cars))
        ]
        self.specs = list(cars)
        # (at_s, seq, cp_id, limit, the transaction it was decided for)
        self._pending: list[tuple[float, int, str, float, str | None]] = []
        self._seq = 0
        self.state.limit_reported(
            GridLimitReported(
                source="main fuse",
                node="site",
                limit=GridLimit(
                    source="main fuse",
                    node="site",
                    value=LimitValue(current_a=(fuse_a, fuse_a, fuse_a)),
                ),
                fallback=None,
                heartbeat_s=600.0,
                reported_monotonic_s=START_S,
            ),
            START_S,
            self.utc(START_S),
        )

    # -- clocks ---------------------------------------------------------------------------------
    def utc(self, now_s: float) -> datetime:
        return T0 + timedelta(seconds=now_s - START_S)

    # -- the site -------------------------------------------------------------------------------
    def plug(self, index: int, spec: CarSpec | None = None) -> None:
        st = self.stations[index]
        chosen = spec or self.specs[index]
        assert chosen is not None
        st.car = Car(chosen, now_s=self.now_s)
        st.sessions += 1
        # The safe TxDefaultProfile the broker installs at boot applies until a TxProfile comes.
        st.offer(self.default_a, self.now_s)
        st.arrived_s = self.now_s
        st.sample = None
        st.sent_a = None
        st.next_sample_s = self.now_s + st.sample_offset_s + 1.0

    def unplug(self, index: int) -> None:
        st = self.stations[index]
        st.offer(0.0, self.now_s)
        st.car = None
        st.arrived_s = None
        st.sample = None

    def grid_a(self, now_s: float) -> PerPhase:
        base = self.base.currents_a(self.utc(now_s))
        total = list(base)
        for st in self.stations:
            for p, a in enumerate(st.draw_grid(now_s)):
                total[p] += a
        return (total[0], total[1], total[2])

    def _take_samples(self, now_s: float) -> None:
        for st in self.stations:
            if st.car is None:
                continue
            state = st.state(now_s)
            changed = st.v201 and state != st.charging_state
            st.charging_state = state
            if now_s >= st.next_sample_s or changed:
                st.sample = (now_s, st.draw_cp(now_s))
                if now_s >= st.next_sample_s:
                    st.next_sample_s += self.meter_interval_s

    def _report(self) -> DemandBatch:
        reports = []
        for st in self.stations:
            here = st.car is not None and st.arrived_s is not None
            if not here and not self.report_idle:
                continue
            sample = st.sample if here else None
            reports.append(
                ConnectorReport(
                    charge_point_id=st.cp_id,
                    connector_id=1,
                    connected=True,
                    plugged=here,
                    charging=here,
                    transaction_id=st.tx_id if here else None,
                    arrived_utc=format_utc(self.utc(st.arrived_s))
                    if here and st.arrived_s is not None
                    else None,
                    status=st.charging_state if here else "Available",
                    measured_a=None if sample is None else sample[1],
                    offered_a=st.offered_a if here else None,
                    power_w=None,
                    energy_wh=None,
                    sampled_utc=None if sample is None else format_utc(self.utc(sample[0])),
                )
            )
        return DemandBatch(
            reports=tuple(reports), sent_utc=format_utc(self.utc(self.now_s)), complete=True
        )

    def _step(self, now_s: float) -> None:
        out = self.state.step(now_s=now_s, now_utc=self.utc(now_s))
        if out is None:
            return
        record = self.state.record
        if record is not None:
            self.trace.records.append(record)
        if out.batch is None:
            return
        for limit in out.batch.limits:
            st = next(s for s in self.stations if s.cp_id == limit.charge_point_id)
            # The broker puts a limit in the TxProfile of the transaction it was decided for only
            # (actors.cp_energy): one for no car, or for the last car, does not reach a new car.
            if limit.transaction_id is None or limit.transaction_id != st.tx_id:
                continue
            if worth_sending(limit.limit_a, st.sent_a):
                st.sent_a = limit.limit_a
                self._seq += 1
                heapq.heappush(
                    self._pending,
                    (now_s + self.latency_s, self._seq, st.cp_id, limit.limit_a, st.tx_id),
                )

    def _apply_due(self, until_s: float) -> None:
        while self._pending and self._pending[0][0] <= until_s:
            at_s, _, cp_id, limit, tx_id = heapq.heappop(self._pending)
            st = next(s for s in self.stations if s.cp_id == cp_id)
            if tx_id != st.tx_id:
                continue  # its transaction ended on the way
            drawing = max(st.draw_cp(at_s)) >= 1.0
            st.offer(limit, at_s)
            self.trace.applied.setdefault(cp_id, []).append((at_s, st.offered_a, drawing))

    def run(self, seconds: float) -> None:
        """Advance ``seconds`` in 1 s ticks: meter read, demand batch, then the tick step."""
        end = self.now_s + seconds
        while self.now_s < end - 1e-9:
            self.now_s += 1.0
            now = self.now_s
            self._apply_due(now - 0.5)
            read_s = now - 0.5
            grid = self.grid_a(read_s)
            self.trace.grid.append((read_s, grid))
            why, _ = self.state.meter_read(
                MeterRead(
                    meter="grid",
                    node="site",
                    current_a=grid,
                    total_power_w=None,
                    read_monotonic_s=read_s,
                    read_utc=self.utc(read_s),
                    duration_s=0.001,
                ),
                self.utc(read_s),
            )
            if why is not None:
                self._step(read_s)
                self._apply_due(now)
            self._take_samples(now)
            why, _ = self.state.demand(self._report(), now, self.utc(now))
            if why is not None:
                self._step(now)
            self._step(now)
            self._apply_due(now)

    def arrive_like_the_demo(self, gap_s: float = 3.0) -> None:
        for i, spec in enumerate(self.specs):
            if spec is not None:
                self.plug(i)
            self.run(gap_s)


def physical_overloads(record: StepRecord, limits: Mapping[str, float]) -> list[str]:
    """Constraints the limits decided in this step exceed with no margin at all."""
    return [
        f"{c.node} {c.phase}"
        for c in overloaded(list(record.nodes), list(record.demands), limits, margin_a=0.0)
    ]
