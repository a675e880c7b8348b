"""Fixed scenarios for the allocator's step, and what each step decided, as text.

The steps' decisions (limit, target, action, binding source, reason), the batches' limits and
the audit records are kept as one digest per step in ``step_golden.json``, generated from the
code before the step was made faster (13f9795): ``test_step_golden.py`` fails when any of
them changes. Regenerate only for a change of decisions that is meant:

    python -m tests.unit.energy_actors.step_golden
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actors.control_types import FailSafe
from actors.energy_inputs import site_model
from actors.energy_messages import ConnectorReport, DemandBatch, SiteRulesChanged
from actors.energy_tree import charge_point_energy
from actors.grid_limit import GridLimitReported
from actors.grid_limits import GridLimit, LimitValue
from actors.meter import MeterRead
from actors.site_state import SiteState, StepOutput
from actors.utc import format_utc
from config.schema import parse_site
from sim.base_load import BaseLoad
from sim.car import CarSpec
from tests.unit.energy_actors.closed_loop import DEMO_CARS, ClosedLoop

GOLDEN = Path(__file__).with_name("step_golden.json")
T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


def canonical(state: SiteState, out: StepOutput | None) -> str:
    """What one step decided and sent, as text (the decisions in force, the batch, the records)."""
    if out is None:
        return f"no step ({state.mode})"
    lines = [f"mode {state.mode}; lowers {out.lowers}"]
    if out.batch is not None:
        lines.append(f"batch full {out.batch.full}, default {out.batch.default_limit_a!r}")
        lines.extend(repr(dataclasses.astuple(lim)) for lim in out.batch.limits)
    for rec in out.records:
        lines.append(
            json.dumps(
                [rec.charge_point_id, rec.kind.value, rec.decision, rec.reason, rec.inputs],
                sort_keys=True,
            )
        )
    lines.append(json.dumps(state.decisions, sort_keys=True))
    return "\n".join(lines)


def recording(state: SiteState, steps: list[str]) -> None:
    """Every step of ``state`` from now on adds its :func:`canonical` text to ``steps``."""
    step = state.step

    def recorded(**kw: object) -> StepOutput | None:
        out = step(**kw)  # type: ignore[arg-type]
        steps.append(canonical(state, out))
        return out

    state.step = recorded  # type: ignore[method-assign]


def demo_with_events(steps: list[str]) -> None:
    """The demo's cars with idle connectors reported and the base-load hold; new central rules,
    a meter that goes quiet (stale, then the fail-safe), a car that leaves and one that comes."""
    loop = ClosedLoop(report_idle=True, base_hold_s=30.0, fuse_a=40.0)
    recording(loop.state, steps)
    loop.arrive_like_the_demo()
    loop.run(60.0)
    loop.state.rules_changed(
        SiteRulesChanged(
            version=2,
            priorities={"DEMO-CP-003": 20},
            max_current_a={"DEMO-CP-002": 8.0},
            site={"margin_a": 1.0},
        )
    )
    loop.run(40.0)
    quiet = loop.state.meter_read
    loop.state.meter_read = lambda msg, now_utc: (None, [])  # type: ignore[method-assign]
    loop.run(12.0)
    loop.state.meter_read = quiet  # type: ignore[method-assign]
    loop.run(20.0)
    loop.unplug(1)
    loop.run(15.0)
    loop.plug(1, CarSpec(name="slow", max_current_a=10.0, ramp_up_a_per_s=1.0))
    loop.run(60.0)


def rogue_and_failsafe_total(steps: list[str]) -> None:
    """A car that ignores its profile (its draw becomes load nobody controls), 1-phase and
    reluctant cars, and a fail-safe total the installer declared."""
    cars = (*DEMO_CARS[:5], CarSpec(name="1ph-l3", max_current_a=20.0, phases=1, single_phase=3))
    loop = ClosedLoop(
        cars,
        base=BaseLoad(mean_a=(20.0, 12.0, 25.0), daily_swing=0.0, noise_a=0.8, seed=7),
        fuse_a=63.0,
        meter_interval_s=5.0,
        latency_s=1.2,
    )
    st = loop.state
    model = replace(
        st.model,
        control=replace(st.model.control, failsafe=FailSafe(current_a=10.0, total_a=(40.0,) * 3)),
    )
    st.model = st.base_model = model
    recording(st, steps)
    loop.arrive_like_the_demo(gap_s=1.0)
    for t in range(120):
        loop.run(1.0)
        car = loop.stations[2].car
        if t > 30 and car is not None:
            car.offer(car.spec.max_current_a, loop.now_s)  # it ignores what it is offered
    quiet = st.meter_read
    st.meter_read = lambda msg, now_utc: (None, [])  # type: ignore[method-assign]
    loop.run(15.0)
    st.meter_read = quiet  # type: ignore[method-assign]
    loop.run(30.0)


FEEDERS = 4


def feeders_site(n: int) -> SiteState:
    parts = ['[site]\nname = "golden"\n']
    for i in range(FEEDERS):
        parts.append(f'[[feeders]]\nname = "f{i}"\nlimit_a = {n // FEEDERS * 16}\n')
    for i in range(n):
        prio = "\npriority = 5" if i % 7 == 0 else ""
        parts.append(
            f'[[charge_points]]\nid = "CP{i:04d}"\nfeeder = "f{i % FEEDERS}"{prio}\n'
            f'phase_rotation = "{("RST", "STR", "TRS")[i % 3]}"\n'
        )
    parts.append(
        '[[meters]]\nname = "grid"\nmodel = "sdm630"\nhost = "127.0.0.1"\n'
        f'[[grid_limits]]\nname = "fuse"\nkind = "static"\ncurrent_a = {n * 10}\n'
        "[allocation]\nsettle_s = 2.0\nmin_charge_s = 0.0\nmin_pause_s = 0.0\n"
    )
    config = parse_site("".join(parts), source="<golden>", base_dir=Path("."))
    assert config.energy is not None
    state = SiteState(
        site_model(config.energy, charge_point_energy(config)), actor="golden", started_s=100.0
    )
    state.limit_reported(
        GridLimitReported(
            source="fuse",
            node="site",
            limit=GridLimit(
                source="fuse", node="site", value=LimitValue(current_a=(n * 10.0,) * 3)
            ),
            fallback=None,
            heartbeat_s=1e9,
            reported_monotonic_s=100.0,
        ),
        100.0,
        T0,
    )
    return state


def feeders_jumping(steps: list[str]) -> None:
    """40 connectors on four feeders, two priorities, three rotations: a base load that jumps
    every other round (every limit lowered, then raised), the cars following their limits."""
    n = 40
    state = feeders_site(n)
    recording(state, steps)
    given: dict[str, float] = {}
    now = 100.0
    for r in range(60):
        now += 1.0
        at = T0 + timedelta(seconds=now - 100.0)
        ids = [f"CP{i:04d}" for i in range(n)]
        reports = tuple(
            ConnectorReport(
                charge_point_id=cp,
                connector_id=1,
                connected=True,
                plugged=i % 11 != 3,
                charging=i % 11 != 3,
                transaction_id=str(i),
                arrived_utc=format_utc(T0 + timedelta(seconds=i)),
                status="Charging",
                measured_a=(min(given.get(cp, 6.0), 6.0 + i % 5),) * 3,
                offered_a=None,
                power_w=None,
                energy_wh=None,
                sampled_utc=format_utc(at - timedelta(seconds=i % 3)),
            )
            for i, cp in enumerate(ids)
        )
        state.demand(DemandBatch(reports=reports, sent_utc=format_utc(at)), now, at)
        base = 150.0 if r > 20 and r % 2 else 10.0
        total = base + sum(given.values())
        state.meter_read(
            MeterRead(
                meter="grid",
                node="site",
                current_a=(total, total * 0.9, total * 1.1),
                total_power_w=None,
                read_monotonic_s=now,
                read_utc=at,
                duration_s=0.001,
            ),
            at,
        )
        out = state.step(now_s=now, now_utc=at, urgent=lambda _batch: None)
        if out is not None and out.batch is not None:
            for lim in out.batch.limits:
                given[lim.charge_point_id] = lim.limit_a


SCENARIOS: dict[str, Callable[[list[str]], None]] = {
    "demo_with_events": demo_with_events,
    "rogue_and_failsafe_total": rogue_and_failsafe_total,
    "feeders_jumping": feeders_jumping,
}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(name: str) -> list[str]:
    steps: list[str] = []
    SCENARIOS[name](steps)
    return steps


def generate() -> dict[str, list[str]]:
    return {name: [digest(text) for text in run(name)] for name in SCENARIOS}


if __name__ == "__main__":
    golden = generate()
    GOLDEN.write_text(json.dumps(golden, indent=0) + "\n")
    print(", ".join(f"{name}: {len(d)} steps" for name, d in golden.items()), file=sys.stderr)
