"""Load-management figures (issue: load management): meter sample -> last SetChargingProfile.

    python bench/energy.py [--quick] [--cars 10,100,500] [--runs 5] [--bg-cps 400]
                           [--bg-rate 1.5] [--car-workers 2] [--verbose] [--peers-compete]
                           [--cpu-affinity auto|off] [--broker-shards N] [--realtime-energy]

For N charge points, each with a car charging (a transaction running, so TxProfiles apply), the
latency from the meter sample that shows an overload to the LAST TxProfile with the lowered limit
arriving at the charge points, p50/p99 over repeated steps, with the broker idle and while it
carries OCPP traffic from other charge points. Target: p99 <= 50 ms at 500 charge points.

Processes (all on 127.0.0.1, all on the same cores): the edge is ``python run.py --config FILE``
in nodes mode (launcher, Thespian admin, broker node, energy node; ``bench/broker_edge.py``); the
cloud is ``bench/broker_cloud.py --kind fast``; the meter is ``sim.meter.SimMeter`` (a real
pymodbus SDM630) in this process; the cars are ``bench/energy_cps.py`` processes; the other
charge points are ``bench/broker_load.py`` workers in ``mix`` mode (2 processes): connected for
the whole run, silent in the idle phases, sending the ``sim.loadgen`` mix (Heartbeat, MeterValues,
StatusNotification) at ``--bg-rate`` each in the loaded ones, relayed to the cloud. So the idle
and loaded figures differ by the traffic alone (same connections, same connectors in every
ProfileBatch). The simulated peers (cars, cloud, other charge points) run at the lowest CPU
priority, in sessions of their own (``bench/peers.py``): on a site they have their own
processors; sharing the edge's two cores at its priority, they took half of them whenever both
were busy (the kernel shares CPU between sessions first), and the fan-out's wall time was twice
its CPU time. ``--peers-compete`` runs them as before, for comparison. ``--cpu-affinity auto``
runs the edge with each node's event loop on a CPU of its own (``[runtime] cpu_affinity``,
supervisors/affinity.py; the default, off, leaves them to the scheduler).

The site (``bench/energy_site.py``): a static grid limit, margin 1 A, cars at most 16 A that
follow their TxProfiles (their draw reaches the meter, and their charge point reports it). A
step raises the other load by 2 A per car: an overload, so every car must drop by 2 A at once.
Four steps down (16 -> 8 A; --quick: two), each once the last one has settled (settle_s: the
cars have followed and the allocator counts them at their new draw; 1.5 s, --quick 0.4 s), then
the other load goes back down and the allocator raises the cars to 16 A on its next tick; a
restore costs 2-3 s, so it comes after every four steps rather than after each. The meter is
polled every 0.2 s.

Timing, across processes on CLOCK_MONOTONIC (system-wide on Linux): the figure starts when the
meter serves the first read after the change (``StepMeter.reading()`` stamps it), NOT at the
change itself (the poll adds 0-0.2 s before it, shown as "poll delay"), and ends when the last
car's event loop gets the TxProfile's frame from its socket (``energy_cps.TimedConnection``).
"first" is the first car's, so last - first is the broker's fan-out to N cars. The target is
on the edge's own figure, as the issue words it: the last SetChargingProfile of the batch WRITTEN
to its socket (the broker stamps each write, ``run.py status`` shows the recent batches under
``profiles``); the cars' receipt adds their own processes' scheduling and is printed beside it. After each step
the energy node's status gives the allocator's ``last_step_ms`` (when no tick has replaced that
step yet). Also printed per phase: CPU of the energy node, the broker node and the cars'
processes, and the background traffic's throughput and round trips. Figures are printed as the
last lines (``bench/energy_report.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from actors.broker_context import merge_batch_reports
from bench.broker import ids, run_workers, split
from bench.broker_edge import CloudProcess, EdgeProcess
from bench.broker_load import LoadResult
from bench.energy_report import (
    FULL,
    QUICK,
    Cut,
    Phase,
    Scale,
    histogram_change,
    lag_histogram,
    report,
)
from bench.energy_site import (
    CAR_MAX_A,
    CUT_A,
    POLL_INTERVAL_S,
    CarWorkers,
    Levels,
    SharedDraws,
    StepMeter,
    car_ids,
    energy_toml,
)
from bench.peers import STEP_ASIDE_ENV
from bench.yardstick import measure_yardstick, yardstick_line
from config.schema import CPU_AFFINITY

DWELL_S = 0.1
CUT_TIMEOUT_S = 5.0
RESTORE_TIMEOUT_S = 15.0
LOAD_SETTLE_S = 0.7  # after the go: every background charge point is sending


T0 = time.monotonic()


def say(text: str) -> None:
    print(f"  .. {time.monotonic() - T0:5.1f} s {text}", flush=True)


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


class Bench:
    def __init__(
        self,
        scale: Scale,
        *,
        verbose: bool = False,
        cpu_affinity: str = "off",
        broker_shards: int = 1,
        realtime_nodes: tuple[str, ...] = (),
    ) -> None:
        self.scale = scale
        self.verbose = verbose
        self.cpu_affinity = cpu_affinity
        self.broker_shards = broker_shards
        self.realtime_nodes = realtime_nodes
        self.levels = Levels.for_cars(max(scale.cars))
        self.ids = car_ids(max(scale.cars))
        self.draws = SharedDraws(max(scale.cars))
        self.meter = StepMeter(self.levels.other_a(scale.cars[0]), self.draws)
        self.cloud = CloudProcess("fast")
        self.cars = CarWorkers(scale.car_workers, self.draws)
        self.edge: EdgeProcess | None = None
        self.files = Path(tempfile.mkdtemp(prefix="bench-energy-load-"))
        self.go = self.files / "go"
        self.stop = self.files / "stop"

    # -- status -----------------------------------------------------------------------------------
    async def node(self, name: str) -> dict[str, Any]:
        assert self.edge is not None
        doc = await self.edge.node(name, timeout_s=10.0)
        if doc is None:
            raise RuntimeError(f"the {name} node does not answer; run.py log: {self.edge.log()}")
        return doc

    async def brokers(self) -> list[dict[str, Any]]:
        """Every broker node's status (one per ``--broker-shards``; the first is the front)."""
        assert self.edge is not None
        return [await self.node(name) for name in self.edge.brokers]

    async def broker_site(self) -> dict[str, int]:
        """The broker nodes' counts, summed."""
        keys = ("charge_points_connected", "cloud_sessions_online", "queued_for_cloud")
        sites = [b["site"] for b in await self.brokers()]
        return {k: sum(int(site[k]) for site in sites) for k in keys}

    async def wait(self, what: str, cond: Any, timeout_s: float, interval_s: float = 0.2) -> None:
        deadline = time.monotonic() + timeout_s
        while not await cond():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"timed out after {timeout_s:g} s waiting for {what}; "
                    f"the allocator: {await self.allocator_view()}"
                )
            await asyncio.sleep(interval_s)

    async def allocator_view(self) -> str:
        """The energy node's meter and first car not at its maximum, for an error message."""
        site = (await self.node("energy"))["site"]
        cars = sorted(
            (k, v)
            for k, v in site.get("connectors", {}).items()
            if k.startswith("EV") and v.get("limit_a") != CAR_MAX_A
        )
        return (
            f"mode {site.get('mode')}, meters {site.get('meters')}, "
            f"{len(cars)} cars below {CAR_MAX_A:g} A, the first: {cars[0] if cars else None}"
        )

    async def all_at_max(self, n: int) -> bool:
        """The allocator gives every car its maximum, and every car has it."""
        connectors = (await self.node("energy"))["site"].get("connectors", {})
        full = sum(
            1
            for k, c in connectors.items()
            if k.startswith("EV") and c.get("limit_a") == CAR_MAX_A and c.get("sent_a") == CAR_MAX_A
        )
        latest = await self.cars.latest_a()
        return full == n and len(latest) == n and all(a == CAR_MAX_A for a in latest)

    # -- the site ---------------------------------------------------------------------------------
    async def grow(self, before: int, after: int) -> None:
        assert self.edge is not None
        say(f"{after - before} more cars start charging ({after} in all)")
        self.meter.set_other_a(self.levels.other_a(after))
        await self.cars.add(self.edge.url, self.ids[before:after])
        await self.cars.await_profiles(0.0, at_least_a=CAR_MAX_A - 0.05, timeout_s=30)
        await self.wait(f"{after} cars at {CAR_MAX_A:g} A", lambda: self.all_at_max(after), 30)

    async def broker_settled(self) -> None:
        """Every charge point's cloud session is up and nothing waits to go up: the arrivals'
        own traffic (sessions opening, boots and transactions relayed) is over."""

        async def quiet() -> bool:
            site = await self.broker_site()
            return bool(
                site["cloud_sessions_online"] >= site["charge_points_connected"]
                and site["queued_for_cloud"] == 0
            )

        await self.wait("the broker to relay the arrivals to the cloud", quiet, 60, 0.5)
        await asyncio.sleep(0.2)

    async def cut(self, n: int, step: int) -> Cut | None:
        """Step ``step``: the other load up into an overload; every car's lowered TxProfile.
        None if no car got one in time."""
        before = self.levels.car_a(step - 1)
        latest = await self.cars.latest_a()
        off = sorted({a or 0.0 for a in latest if a != before})
        if off:
            # The allocator cut again after the last step: cars that had not followed within
            # settle_s counted as load it does not control.
            raise RuntimeError(
                f"before step {step}, {sum(1 for a in latest if a != before)} cars are not at "
                f"{before:g} A but at {off} (the last step's fan-out longer than settle_s "
                f"{self.scale.settle_s:g}?); the allocator: {await self.allocator_view()}"
            )

        # The figure starts at the first read after the change, so that read must show the
        # overload: every car draws what it was given (a car draws a raise RAMP_S after its
        # TxProfile). A phase's first step came while some of its new cars still ramped, and the
        # overload showed on the 2nd to 5th read: 0.4-0.8 s more in the figure (--quick, 50 cars).
        async def drawing() -> bool:
            return abs(self.draws.phase_currents_a()[0] - n * before) < 0.01 * n

        await self.wait(f"{n} cars drawing {before:g} A", drawing, 10, 0.05)
        since = time.monotonic()
        gen = self.meter.set_other_a(self.levels.other_a(n, step))
        got, _ = await self.cars.await_profiles(
            since, below_a=before - CUT_A / 2, timeout_s=CUT_TIMEOUT_S
        )
        read_s = self.meter.first_read_s.get(gen)
        arrived = [g for g in got if g is not None]
        if read_s is None or not arrived:
            return None
        times = [t for t, _ in arrived]
        # The step's own time, unless a later step (a tick) has replaced it in the status.
        site = (await self.node("energy"))["site"]
        step_ms = None
        if site.get("last_step") == "meter shows overload":
            step_ms = float(site.get("last_step_ms", 0.0))
        stages, broker_cpu_ms = await self.edge_stages(since, read_s)
        if self.verbose:
            shown = "-" if stages is None else " / ".join(f"{x:.1f}" for x in stages)
            say(
                f"step {step}: first {(min(times) - read_s) * 1000:.1f} ms, last "
                f"{(max(times) - read_s) * 1000:.1f} ms, limits {sorted({a for _, a in arrived})}, "
                f"allocator step {step_ms} ms; edge stages (step began, sent, received, first and "
                f"last written) {shown} ms"
                f", broker CPU from receipt to the last frame {broker_cpu_ms} ms"
            )
        # The next step only once this one has settled: the cars follow within
        # energy_cps.FOLLOW_S, and after settle_s the allocator counts them at their offer.
        await asyncio.sleep(max(0.0, min(times) + self.scale.settle_s + 0.15 - time.monotonic()))
        return Cut(
            last_ms=(max(times) - read_s) * 1000,
            first_ms=(min(times) - read_s) * 1000,
            poll_ms=(read_s - self.meter.changed_s[gen]) * 1000,
            missing=len(got) - len(arrived),
            odd=sum(1 for _, a in arrived if abs(a - self.levels.car_a(step)) > 0.05),
            step_ms=step_ms,
            written_ms=None if stages is None else stages[-1],
            stages=stages,
            broker_cpu_ms=broker_cpu_ms,
        )

    async def edge_stages(
        self, since_s: float, read_s: float
    ) -> tuple[tuple[float, ...] | None, float | None]:
        """The edge's stamps for the batch this step caused (the batch triggered after the
        change with the most frames written), ms from read_s: the allocator's step that made it
        began, the allocator sent it, the broker received it, its first and its last
        SetChargingProfile written; and the CPU time the broker's loop spent from receipt to the
        last frame."""
        # With several broker nodes, each wrote its part of the step's batch (the same trigger):
        # merged as run.py status merges them.
        reports = [
            list((broker["site"].get("profiles") or {}).get("recent_batches", ()))
            for broker in await self.brokers()
        ]
        # A batch's trigger is when the edge's meter read began (actors.meter): the read that
        # first shows the change may have begun before it and been served after it (the request
        # on its way when the bench changed the load). Those steps were left out, and counted at
        # the cars' receipt (one step in 20 of some runs; the loaded phase's 301.5 ms "p99" of
        # 2026-11-30 15:05 against 115.3 for the 19 others).
        after_ns = (since_s - POLL_INTERVAL_S) * 1e9
        batches = [
            b
            for b in merge_batch_reports(reports)
            if b["trigger_monotonic_ns"] >= after_ns and b["last_written_ms"] is not None
        ]
        if not batches:
            return None, None
        batch = max(batches, key=lambda b: b["written"])
        shift = batch["trigger_monotonic_ns"] / 1e6 - read_s * 1000
        keys = ("step_ms", "sent_ms", "received_ms", "first_written_ms", "last_written_ms")
        if any(batch[k] is None for k in keys):
            return None, batch["cpu_ms"]
        return tuple(float(batch[k]) + shift for k in keys), batch["cpu_ms"]

    async def restore(self, n: int) -> None:
        await asyncio.sleep(DWELL_S)
        since = time.monotonic()
        self.meter.set_other_a(self.levels.other_a(n))
        back, quiet = await self.cars.await_profiles(
            since, at_least_a=CAR_MAX_A - 0.05, timeout_s=RESTORE_TIMEOUT_S
        )
        stuck = sum(1 for b in back if b is None)
        if stuck or not quiet:
            raise RuntimeError(
                f"{stuck} cars not back at {CAR_MAX_A:g} A after {RESTORE_TIMEOUT_S:g} s "
                f"(following: {'done' if quiet else 'not done'}); "
                f"the allocator: {await self.allocator_view()}"
            )
        await asyncio.sleep(DWELL_S)

    # -- one phase --------------------------------------------------------------------------------
    async def phase(self, n: int, loaded: bool, restore_last: bool) -> Phase:
        """``restore_last``: bring the cars back to their maximum after the last run too (not
        when what follows brings them back itself: a grow, which waits for every car at its
        maximum, or the end)."""
        s = self.scale
        say(f"{n} cars, broker {'loaded' if loaded else 'idle'}: {s.runs * s.steps} steps")
        ph = Phase(n=n, loaded=loaded)
        if loaded:
            self.go.touch()
            await asyncio.sleep(LOAD_SETTLE_S)
        energy, broker = await self.node("energy"), await self.node("broker")
        lag0 = {"energy": lag_histogram(energy), "broker": lag_histogram(broker)}
        epid = int(energy["pid"])
        bpids = [int(b["pid"]) for b in await self.brokers()]
        e0, b0, c0 = cpu_s(epid), sum(map(cpu_s, bpids)), await self.cars.cpu_s()
        batches0 = int(energy["site"].get("batches", 0))
        started = time.monotonic()
        for run in range(s.runs):
            for step in range(1, s.steps + 1):
                cut = await self.cut(n, step)
                if cut is None:
                    raise RuntimeError(f"step {step}: no car got a lowered TxProfile in time")
                ph.cuts.append(cut)
            if restore_last or run < s.runs - 1:
                await self.restore(n)
        ph.wall_s = time.monotonic() - started
        ph.energy_cpu_pct = (cpu_s(epid) - e0) / ph.wall_s * 100
        ph.broker_cpu_pct = (sum(map(cpu_s, bpids)) - b0) / ph.wall_s * 100
        ph.cars_cpu_pct = (await self.cars.cpu_s() - c0) / ph.wall_s * 100
        if loaded:
            self.go.unlink()
        energy, broker = await self.node("energy"), await self.node("broker")
        ph.energy_lag = histogram_change(lag0["energy"], lag_histogram(energy))
        ph.broker_lag = histogram_change(lag0["broker"], lag_histogram(broker))
        site = energy["site"]
        ph.max_step_ms = float(site.get("max_step_ms", 0.0))
        ph.batches = int(site.get("batches", 0)) - batches0
        return ph

    # -- the run ----------------------------------------------------------------------------------
    async def background(self) -> list[LoadResult]:
        assert self.edge is not None
        specs = split(
            ids("BG", self.scale.bg_cps),
            url=self.edge.url,
            mode="mix",
            rate_hz=self.scale.bg_rate_hz,
            go_file=str(self.go),
            stop_file=str(self.stop),
        )
        return await run_workers(specs)

    async def run(self) -> list[Phase]:
        await self.cloud.start()
        await self.meter.start()
        self.edge = EdgeProcess(
            self.cloud.url,
            extra_toml=energy_toml(self.meter.port, self.levels, self.ids, self.scale.settle_s),
            prefix="bench-energy-",
            cpu_affinity=self.cpu_affinity,
            broker_shards=self.broker_shards,
            realtime_nodes=self.realtime_nodes,
        )
        load: asyncio.Task[list[LoadResult]] | None = None
        try:
            await self.cars.start()
            await self.edge.start()

            async def ready() -> bool:
                site = (await self.node("energy"))["site"]
                return site.get("mode") == "normal" and bool(site.get("meters"))

            await self.wait("the energy node's first meter reading and limits", ready, 30)
            load = asyncio.get_running_loop().create_task(self.background())
            phases: list[Phase] = []
            have = 0
            for n in self.scale.cars:
                await self.grow(have, n)
                if have == 0:
                    await self.wait_background(n, load)
                await self.broker_settled()
                have = n
                # The loaded phase is followed by a grow or the end: no restore after it.
                for loaded in (False, True):
                    phases.append(await self.phase(n, loaded, restore_last=not loaded))
            self.stop.touch()
            self.split_background(await load, phases)
        except BaseException:
            say(f"failed: the edge's files are kept in {self.edge.dir}")
            raise
        finally:
            self.stop.touch()
            if load is not None and not load.done():
                await asyncio.wait([load], timeout=30)
            await self.cars.close()
            await self.edge.stop()
            await self.cloud.close()
            await self.meter.stop()
            self.draws.close()
            shutil.rmtree(self.files, ignore_errors=True)
        shutil.rmtree(self.edge.dir, ignore_errors=True)
        return phases

    async def wait_background(self, n: int, load: asyncio.Task[list[LoadResult]]) -> None:
        bg = self.scale.bg_cps

        async def up() -> bool:
            if load.done():
                raise RuntimeError(f"background charge points ended early: {load.result()}")
            site = await self.broker_site()
            return int(site["charge_points_connected"]) >= n + bg

        await self.wait(f"{bg} background charge points connected", up, 90, 0.5)

    def split_background(self, results: list[LoadResult], phases: list[Phase]) -> None:
        """Each loaded phase is one go period of every background worker."""
        loaded = [ph for ph in phases if ph.loaded]
        for r in results:
            if r.connect_failures or r.first_error:
                say(f"background worker: {r.connect_failures} failed, first error {r.first_error}")
        for i, ph in enumerate(loaded):
            values = array("d")
            for r in results:
                if i < len(r.segments_ms):
                    values.frombytes(r.segments_ms[i])
            ph.load_ms = sorted(values)
            ph.load_s = max((r.segments_s[i] for r in results if i < len(r.segments_s)), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same figures, smaller scale (< 30 s)")
    parser.add_argument("--cars", help="charge points with a car, comma-separated (10,100,500)")
    parser.add_argument("--runs", type=int, help="runs of steps down per phase")
    parser.add_argument("--bg-cps", type=int, help="other charge points")
    parser.add_argument("--bg-rate", type=float, help="messages/s per other charge point")
    parser.add_argument("--car-workers", type=int, help="processes for the cars (2)")
    parser.add_argument("--verbose", action="store_true", help="print every step")
    parser.add_argument(
        "--peers-compete",
        action="store_true",
        help="the simulated peers at the edge's CPU priority (bench/peers.py; before 2026-11-29)",
    )
    parser.add_argument(
        "--cpu-affinity",
        choices=CPU_AFFINITY,
        default="off",
        help="the edge's [runtime] cpu_affinity (off, the default; auto: supervisors/affinity.py)",
    )
    parser.add_argument(
        "--broker-shards",
        type=int,
        default=1,
        help="the edge's [runtime] broker_shards: broker node processes (1, the default)",
    )
    parser.add_argument(
        "--realtime-energy",
        action="store_true",
        help='the edge\'s [runtime] realtime_nodes = ["energy"] (supervisors/priority.py)',
    )
    args = parser.parse_args(argv)
    # Inherited by every peer this process starts (cars, cloud, load workers); not by the edge,
    # which never reads it.
    os.environ[STEP_ASIDE_ENV] = "0" if args.peers_compete else "1"

    base = QUICK if args.quick else FULL
    cars = tuple(int(x) for x in args.cars.split(",")) if args.cars else base.cars
    scale = Scale(
        cars=cars,
        runs=args.runs or base.runs,
        steps=base.steps,
        bg_cps=args.bg_cps or base.bg_cps,
        bg_rate_hz=args.bg_rate or base.bg_rate_hz,
        car_workers=args.car_workers or base.car_workers,
        settle_s=base.settle_s,
    )
    started = time.monotonic()
    # The host's speed for the edge's code, before and (but for --quick) after; nothing else
    # runs meanwhile.
    yardstick = [measure_yardstick(args.quick)]
    bench = Bench(
        scale,
        verbose=args.verbose,
        cpu_affinity=args.cpu_affinity,
        broker_shards=args.broker_shards,
        realtime_nodes=("energy",) if args.realtime_energy else (),
    )
    phases = asyncio.run(bench.run())
    if not args.quick:
        yardstick.append(measure_yardstick())
    print(f"(total {time.monotonic() - started:.0f} s)")
    report_lines = report(
        phases,
        scale,
        args.quick,
        peers_aside=not args.peers_compete,
        cpu_affinity=args.cpu_affinity,
        broker_shards=args.broker_shards,
        realtime_energy=args.realtime_energy,
    )
    report_lines.append(yardstick_line(yardstick))
    for line in report_lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
