"""Load-management figures (issue: load management).

    python bench/allocator.py [--quick] [--connectors 500] [--rounds 200] [--events 20]

``--quick``: 100 connectors, 60 rounds, 8 overload events (a few seconds). The step figures run
under the nodes' garbage-collector policy (``supervisors/gc_policy.py``: young generation at
20,000, what lived a while frozen), as the energy node does; with the interpreter's defaults, its
collections were the step's p99 (90-170 ms against a p50 of 15-25 ms).

Prints:
- the allocator's step time (SiteState.step: inputs, control loop, compliance, batch, audit
  records built) for N connectors on 10 feeders, p50/p99/max, in steady state and when every
  connector changes (a site-wide decrease), and for a decrease the time until the batch is
  handed over (``urgent``: before its records and compliance bookkeeping are built); and in
  steady state at the meter's pace, between two DemandBatches (each connector's demand reused);
  and on bench/energy.py's site at its pace (steps on the tick and on overloads, a DemandBatch
  of every connector each second, the cars following), an overload until its batch is handed
  over;
- end to end on the real energy node in-process (pymodbus SDM630 on loopback, LMDB in a temp
  dir): meter sample taken -> ProfileBatch handed to the broker link (a decrease leaves before
  its audit records commit), p50/p99 over overload events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.compliance import ComplianceConfig, Tracker, limit_set
from actors.control_loop import finish
from actors.energy_inputs import site_model
from actors.energy_messages import ConnectorReport, DemandBatch, ProfileBatch
from actors.energy_tree import charge_point_energy, energy_spec
from actors.grid_limit import GridLimitReported
from actors.grid_limits import GridLimit, LimitValue
from actors.meter import MeterRead
from actors.site_allocator import AllocatorSettings
from actors.site_state import SiteState
from actors.utc import format_utc
from bench.energy_site import Levels, car_ids, energy_toml
from bench.yardstick import QUICK_ROUNDS, REFERENCE_MS, ROUNDS, workload_ms
from config.schema import SiteConfig, parse_site
from drivers.store.env import open_store
from supervisors.gc_policy import FREEZE_EVERY_S, YOUNG_THRESHOLD
from supervisors.system import ActorSystem

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
FEEDERS = 10


def site(n: int, meter_port: int = 502) -> SiteConfig:
    parts = ['[site]\nname = "bench"\n']
    for i in range(FEEDERS):
        parts.append(f'[[feeders]]\nname = "f{i}"\nlimit_a = {n // FEEDERS * 16}\n')
    for i in range(n):
        parts.append(f'[[charge_points]]\nid = "CP{i:04d}"\nfeeder = "f{i % FEEDERS}"\n')
    parts.append(
        f'[[meters]]\nname = "grid"\nmodel = "sdm630"\nhost = "127.0.0.1"\nport = {meter_port}\n'
        "poll_interval_s = 0.2\ntimeout_s = 0.5\n"
        f'[[grid_limits]]\nname = "fuse"\nkind = "static"\ncurrent_a = {n * 10}\n'
        "[allocation]\nsettle_s = 0.0\nmin_charge_s = 0.0\nmin_pause_s = 0.0\n"
    )
    return parse_site("".join(parts), source="<bench>", base_dir=Path("."))


def reports(n: int, draw_a: float, at: datetime) -> DemandBatch:
    """Connectors CP0000.. each drawing ``draw_a``, sampled at ``at``."""
    ids = [f"CP{i:04d}" for i in range(n)]
    return demand_batch(ids, dict.fromkeys(ids, draw_a), dict.fromkeys(ids, at), at)


def demand_batch(
    ids: list[str],
    draw_a: Mapping[str, float],
    sampled: Mapping[str, datetime],
    at: datetime,
    *,
    complete: bool = False,
) -> DemandBatch:
    """Each charge point's connector 1 charging, its car arrived i s after T0."""
    return DemandBatch(
        reports=tuple(
            ConnectorReport(
                charge_point_id=cp,
                connector_id=1,
                connected=True,
                plugged=True,
                charging=True,
                transaction_id=str(i),
                arrived_utc=format_utc(T0 + timedelta(seconds=i)),
                status="Charging",
                measured_a=(draw_a[cp],) * 3,
                offered_a=None,
                power_w=None,
                energy_wh=None,
                sampled_utc=format_utc(sampled[cp]),
            )
            for i, cp in enumerate(ids)
        ),
        sent_utc=format_utc(at),
        complete=complete,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fused_site(n: int, now: float) -> SiteState:
    """The allocator's state for :func:`site` with its static limit reported at ``now``."""
    config = site(n)
    assert config.energy is not None
    state = SiteState(
        site_model(config.energy, charge_point_energy(config)), actor="bench", started_s=now
    )
    static_limit(state, n * 10.0, now)
    return state


def static_limit(state: SiteState, current_a: float, now: float) -> None:
    """The static source "fuse" reports ``current_a`` per phase on the site at ``now``."""
    state.limit_reported(
        GridLimitReported(
            source="fuse",
            node="site",
            limit=GridLimit(
                source="fuse", node="site", value=LimitValue(current_a=(current_a,) * 3)
            ),
            fallback=None,
            heartbeat_s=1e9,
            reported_monotonic_s=now,
        ),
        now,
        T0,
    )


def grid_read(state: SiteState, total_a: float, now: float, at: datetime) -> str | None:
    """The grid meter shows ``total_a`` on every phase, read at ``now``; why it steps at once
    (an overload), if it does."""
    why, _ = state.meter_read(
        MeterRead(
            meter="grid",
            node="site",
            current_a=(total_a, total_a, total_a),
            total_power_w=None,
            read_monotonic_s=now,
            read_utc=at,
            duration_s=0.001,
        ),
        at,
    )
    return why


def step_times(n: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    """The allocator's step on :func:`fused_site` for ``rounds`` rounds (a second each): ms of
    the steps where nothing changes, of those where every limit changes, and, of those that
    lower every limit, until the lowering batch is handed over."""
    now = 100.0
    state = fused_site(n, now)

    def utc() -> datetime:
        return T0 + timedelta(seconds=now - 100.0)

    # The energy node's GC policy (supervisors/gc_policy.py), here by rounds instead of a timer:
    # a round is a second of the site's time, and the node freezes every FREEZE_EVERY_S.
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    gc.collect()
    gc.freeze()
    steady: list[float] = []
    changing: list[float] = []
    handed: list[float] = []  # a lowering batch: step start -> handed over (before its records)
    for r in range(rounds):
        now += 1.0
        if r % int(FREEZE_EVERY_S) == 0:
            gc.freeze()
        draw = 8.0
        state.demand(reports(n, draw, utc()), now, utc())
        # Every other round the base load jumps: every connector decreases (or rises back).
        # First half: a steady base load (after the ramp, few or no changes); second half: the
        # base load jumps every other round, so every connector decreases or rises back.
        base = 1500.0 if r > rounds // 2 and r % 2 else 10.0
        total = base + n * draw
        grid_read(state, total, now, utc())
        marks: list[float] = []
        started = time.perf_counter()
        out = state.step(
            now_s=now,
            now_utc=utc(),
            urgent=lambda _batch, stamp=marks.append: stamp(time.perf_counter()),
        )
        elapsed = (time.perf_counter() - started) * 1000
        assert out is not None
        if len(out.records) > n // 2:
            changing.append(elapsed)
            if marks:
                handed.append((marks[0] - started) * 1000)
        elif not out.records:
            steady.append(elapsed)
    return steady, changing, handed


def step_figures(n: int, rounds: int) -> None:
    steady, changing, handed = step_times(n, rounds)
    for name, values in (
        ("nothing changes", steady),
        ("every limit changes", changing),
        ("every limit lowered, until the batch is handed over", handed),
    ):
        if values:
            print(
                f"step, {n} connectors, {name}: p50 {statistics.median(values):.2f} ms, "
                f"p99 {pct(values, 0.99):.2f} ms, max {max(values):.2f} ms ({len(values)} steps)"
            )


def between_batches_figure(n: int, rounds: int) -> None:
    """Steps at the meter's pace (every 0.2 s) with a DemandBatch every fifth, as on a site: the
    four steps between two batches reuse each connector's demand (``DemandCache``)."""
    now = 100.0
    state = fused_site(n, now)

    def utc() -> datetime:
        return T0 + timedelta(seconds=now - 100.0)

    gc.collect()
    gc.freeze()
    between: list[float] = []
    for r in range(rounds):
        now += 0.2
        if r % 5 == 0:
            state.demand(reports(n, 8.0, utc()), now, utc())
        total = 10.0 + n * 8.0
        grid_read(state, total, now, utc())
        started = time.perf_counter()
        state.step(now_s=now, now_utc=utc())
        if r % 5:
            between.append((time.perf_counter() - started) * 1000)
    print(
        f"step, {n} connectors, between two DemandBatches (a step every 0.2 s, a batch every "
        f"1 s): p50 {statistics.median(between):.2f} ms, p99 {pct(between, 0.99):.2f} ms "
        f"({len(between)} steps)"
    )


def site_pace_figure(n: int, rounds: int) -> None:
    """bench/energy.py's site at its pace, on the allocator's state alone: the meter read every
    0.2 s, a DemandBatch of every connector each second (new objects; a car's report changes
    only when its draw does) between two ticks, as the broker's come, the cars drawing what they
    were last given; the other load up by 2 A a car four times, 1.8 s apart, then back down.
    Steps when the allocator takes them: on a read that shows an overload, on the tick (each
    second, after the read) and on the first read after the last change settled
    (SiteAllocator._settled); after a DemandBatch that no step followed, the next read without
    a step prepares the next step's counts (SiteAllocator._prepare). The figure: an overload's
    step until its lowering batch is handed over."""
    levels = Levels.for_cars(n)
    ids = car_ids(n)
    config = parse_site(
        '[site]\nname = "bench"\n' + energy_toml(502, levels, ids, settle_s=1.5),
        source="<bench>",
        base_dir=Path("."),
    )
    assert config.energy is not None
    now = 100.0
    state = SiteState(
        site_model(config.energy, charge_point_energy(config)), actor="bench", started_s=now
    )
    static_limit(state, levels.limit_a, now)

    def utc() -> datetime:
        return T0 + timedelta(seconds=now - 100.0)

    draw = dict.fromkeys(ids, 0.0)
    sampled = dict.fromkeys(ids, T0)

    gc.collect()
    gc.freeze()
    handed: list[float] = []
    cut = 0
    last_step_s = now
    prepare_due = False
    for r in range(rounds * 5):
        now += 0.2
        if r % 5 == 2:
            state.demand(demand_batch(ids, draw, sampled, utc(), complete=True), now, utc())
            prepare_due = True
        if r >= 25 and r % 9 == 0:
            cut = (cut + 1) % 5
        other = levels.other_a(n, cut)
        total = other + sum(draw.values())
        why = grid_read(state, total, now, utc())
        settles_s = state.settles_s()
        settled = settles_s is not None and last_step_s < settles_s <= now
        if why is None and r % 5 and not settled:
            # no overload, no tick, no change settled since the last step: no step
            if prepare_due:
                state.prepare(now)
            prepare_due = False
            continue
        prepare_due = False
        last_step_s = now
        started = time.perf_counter()
        run = state.stepping(now_s=now, now_utc=utc())
        try:
            next(run)
        except StopIteration as done:
            out = done.value
        else:
            if why is not None:
                handed.append((time.perf_counter() - started) * 1000)
            out = finish(run)
        if out is not None and out.batch is not None:
            for lim in out.batch.limits:
                draw[lim.charge_point_id] = lim.limit_a
                sampled[lim.charge_point_id] = utc()
    print(
        f"step, {n} connectors, bench/energy.py's site at its pace (a DemandBatch each second): "
        f"overload -> lowering batch handed over p50 {statistics.median(handed):.2f} ms, p99 "
        f"{pct(handed, 0.99):.2f} ms ({len(handed)} overloads)"
    )


def compliance_figure() -> None:
    """The compliance tracker of a connector whose limit changed every 2 s for 300 s (its window):
    what one more limit costs (the step does this for every changed connector)."""
    cfg = ComplianceConfig()
    tracker, now = Tracker(), 0.0
    for i in range(400):
        now += 2.0
        tracker = limit_set(tracker, (6.0 + i % 2,) * 3, now_s=now, cfg=cfg)
    runs = timeit.repeat(
        lambda: limit_set(tracker, (20.0,) * 3, now_s=now + 2.0, cfg=cfg), number=2000, repeat=5
    )
    print(
        f"compliance: one more limit on a {len(tracker.limits)}-limit history: "
        f"{min(runs) / 2000 * 1e6:.2f} us"
    )


async def end_to_end(n: int, events: int) -> None:
    from tests.integration.energy_node.harness import sdm630_server, set_meter

    async with sdm630_server((10.0, 10.0, 10.0)) as server:
        config = site(n, server.port)
        got: list[tuple[int, ProfileBatch]] = []
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(Path(tmp) / "lmdb")
            system = ActorSystem("energy", store=store)
            arrived = asyncio.Event()

            def remote(path: str, msg: object) -> None:
                if isinstance(msg, ProfileBatch):
                    got.append((time.monotonic_ns(), msg))
                    arrived.set()

            system.remote = remote
            await system.start(
                energy_spec(
                    config.energy,
                    charge_point_energy(config),
                    node="energy",
                    settings=AllocatorSettings(tick_s=30.0),
                )
            )
            allocator = system.lookup("energy/allocator")
            assert allocator is not None
            await asyncio.sleep(0.5)  # first meter read
            allocator.tell(reports(n, 6.0, datetime.now(UTC)))
            latencies: list[float] = []
            for i in range(events):
                count = len(got)
                high = i % 2 == 0
                total = n * 10.0 + 50.0 if high else 10.0 + n * 6.0  # over the fuse, or not
                arrived.clear()
                await set_meter(server, (total, total, total))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 3.0)
                if len(got) > count and high:
                    received_ns, batch = got[count]
                    if batch.trigger_monotonic_ns:
                        latencies.append((received_ns - batch.trigger_monotonic_ns) / 1e6)
                await asyncio.sleep(0.25)
            await system.stop(5.0)
            store.close()
    counted = latencies[1:]  # the first overload event warms the node up (imports, caches)
    if counted:
        print(
            f"meter sample -> ProfileBatch sent, {n} connectors: p50 "
            f"{statistics.median(counted):.1f} ms, p99 {pct(counted, 0.99):.1f} ms, "
            f"max {max(counted):.1f} ms ({len(counted)} overload events after a warm-up one; "
            "the sample time is when its read started)"
        )
        print("  each, the warm-up first: " + ", ".join(f"{x:.0f}" for x in latencies))
    else:
        print("end to end: no overload batch observed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connectors", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="100 connectors, fewer rounds")
    parser.add_argument(
        "--yardstick",
        action="store_true",
        help=f"print only the host's yardstick (bench/yardstick.py; ms, {REFERENCE_MS:g} on the "
        "reference host)",
    )
    args = parser.parse_args()
    if args.yardstick:
        print(f"{workload_ms(QUICK_ROUNDS if args.quick else ROUNDS):.2f}")
        return
    if args.quick:
        args.connectors, args.rounds, args.events = 100, 60, 8
    step_figures(args.connectors, args.rounds)
    between_batches_figure(args.connectors, args.rounds)
    site_pace_figure(args.connectors, args.rounds)
    compliance_figure()
    asyncio.run(end_to_end(args.connectors, args.events))


if __name__ == "__main__":
    main()
