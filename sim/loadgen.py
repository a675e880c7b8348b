"""OCPP load generator: N light charge points over K worker processes, CALL -> CALLRESULT timing.

    python -m sim.loadgen --quick                     # small run against an in-process sim cloud
    python -m sim.loadgen --url ws://127.0.0.1:9000/ocpp --cps 1000 --rate 0.5 --duration 60

Each worker (``sim/loadgen_worker.py``) connects and boots its share of the charge points, then
every charge point sends messages from the mix at ``rate`` Hz with one outstanding CALL, measuring
each round trip. The parent merges the round trips and prints percentiles, throughput and errors.
Bench scripts call :func:`run_load` (or :func:`run_load_async` inside a running event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import sys
import time
from array import array
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

from sim.loadgen_worker import ACTIONS, WorkerResult, WorkerSpec, worker_main

DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("Heartbeat", 1.0),
    ("MeterValues", 3.0),
    ("StatusNotification", 1.0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    url: str
    protocol: str
    charge_points: int
    workers: int
    rate_per_cp_hz: float
    duration_s: float
    connected: int
    connect_failures: int
    sent: int
    answered: int
    call_errors: int
    timeouts: int
    disconnects: int
    errors: int
    first_error: str | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput_msg_s: float
    worker_cpu_s: float
    worker_max_rss_mb: float
    wall_s: float

    def summary(self) -> str:
        return (
            f"loadgen {self.protocol} {self.url}\n"
            f"  charge points {self.charge_points} over {self.workers} workers, "
            f"{self.rate_per_cp_hz:g} Hz each, {self.duration_s:g} s\n"
            f"  connected {self.connected}, connect failures {self.connect_failures}\n"
            f"  sent {self.sent}, answered {self.answered}, throughput "
            f"{self.throughput_msg_s:.1f} msg/s\n"
            f"  round trip ms: p50 {self.p50_ms:.2f}  p90 {self.p90_ms:.2f}  "
            f"p99 {self.p99_ms:.2f}  max {self.max_ms:.2f}\n"
            f"  errors {self.errors} (call errors {self.call_errors}, timeouts {self.timeouts}, "
            f"disconnects {self.disconnects})"
            + (f"\n  first error: {self.first_error}" if self.first_error else "")
            + f"\n  worker CPU {self.worker_cpu_s:.1f} s in {self.wall_s:.1f} s wall, "
            f"largest worker RSS {self.worker_max_rss_mb:.0f} MB"
        )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    # ceil(p * n), forgiving the float error in p * n (0.07 * 100 is 7.000000000000001)
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values) - 1e-9)))
    return float(sorted_values[rank - 1])


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``"Heartbeat=1,MeterValues=3"`` -> ((action, weight), ...); names must be known actions."""
    mix = []
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        if name not in ACTIONS:
            raise ValueError(f"--mix: unknown action {name!r}; known: {', '.join(ACTIONS)}")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise ValueError(f"--mix: weight of {name} must be a number, got {weight!r}") from None
        if value < 0:
            raise ValueError(f"--mix: weight of {name} must be >= 0, got {value}")
        mix.append((name, value))
    if not mix or sum(w for _, w in mix) <= 0:
        raise ValueError(f"--mix: needs at least one action with a positive weight, got {text!r}")
    return tuple(mix)


def merge(
    results: Sequence[WorkerResult],
    *,
    url: str,
    protocol: str,
    rate_per_cp_hz: float,
    duration_s: float,
    wall_s: float,
) -> LoadReport:
    latencies = array("d")
    for r in results:
        latencies.frombytes(r.latencies_ms)
    ordered = sorted(latencies)
    measured = max((r.measured_s for r in results), default=duration_s) or duration_s
    answered = sum(r.answered for r in results)
    call_errors = sum(r.call_errors for r in results)
    timeouts = sum(r.timeouts for r in results)
    disconnects = sum(r.disconnects for r in results)
    connect_failures = sum(r.connect_failures for r in results)
    boot_rejected = sum(r.boot_rejected for r in results)
    return LoadReport(
        url=url,
        protocol=protocol,
        charge_points=sum(r.charge_points for r in results),
        workers=len(results),
        rate_per_cp_hz=rate_per_cp_hz,
        duration_s=duration_s,
        connected=sum(r.connected for r in results),
        connect_failures=connect_failures,
        sent=sum(r.sent for r in results),
        answered=answered,
        call_errors=call_errors,
        timeouts=timeouts,
        disconnects=disconnects,
        errors=call_errors + timeouts + disconnects + connect_failures + boot_rejected,
        first_error=next((r.first_error for r in results if r.first_error), None),
        p50_ms=percentile(ordered, 0.50),
        p90_ms=percentile(ordered, 0.90),
        p99_ms=percentile(ordered, 0.99),
        max_ms=ordered[-1] if ordered else 0.0,
        throughput_msg_s=answered / measured if measured > 0 else 0.0,
        worker_cpu_s=sum(r.cpu_s for r in results),
        worker_max_rss_mb=max((r.max_rss_mb for r in results), default=0.0),
        wall_s=wall_s,
    )


async def run_load_async(
    url: str,
    n_cps: int,
    rate_per_cp_hz: float,
    duration_s: float,
    workers: int,
    *,
    protocol: str = "ocpp1.6",
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX,
    prefix: str = "LOAD",
    password: str | None = None,
    timeout_s: float = 10.0,
    connect_concurrency: int = 50,
) -> LoadReport:
    """Run the load from worker processes without blocking the calling event loop."""
    if n_cps < 1 or workers < 1 or rate_per_cp_hz <= 0 or duration_s <= 0:
        raise ValueError(
            f"loadgen needs cps >= 1, workers >= 1, rate > 0, duration > 0; got cps={n_cps}, "
            f"workers={workers}, rate={rate_per_cp_hz}, duration={duration_s}"
        )
    if protocol not in ("ocpp1.6", "ocpp2.0.1"):
        raise ValueError(f"loadgen protocol must be ocpp1.6 or ocpp2.0.1, got {protocol!r}")
    workers = min(workers, n_cps)
    ids = [f"{prefix}{i:05d}" for i in range(n_cps)]
    specs = [
        WorkerSpec(
            worker_index=w,
            url=url,
            charge_point_ids=tuple(ids[w::workers]),
            protocol=protocol,
            rate_per_cp_hz=rate_per_cp_hz,
            duration_s=duration_s,
            mix=mix,
            timeout_s=timeout_s,
            connect_concurrency=connect_concurrency,
            password=password,
        )
        for w in range(workers)
    ]
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    # spawn, not fork: the caller may run an event loop and threads that must not be copied.
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        results = await asyncio.gather(
            *(loop.run_in_executor(pool, worker_main, spec) for spec in specs)
        )
    return merge(
        results,
        url=url,
        protocol=protocol,
        rate_per_cp_hz=rate_per_cp_hz,
        duration_s=duration_s,
        wall_s=time.monotonic() - started,
    )


def run_load(
    url: str,
    n_cps: int,
    rate_per_cp_hz: float,
    duration_s: float,
    workers: int,
    **options: object,
) -> LoadReport:
    """Blocking form of :func:`run_load_async` for scripts."""
    return asyncio.run(
        run_load_async(url, n_cps, rate_per_cp_hz, duration_s, workers, **options)  # type: ignore[arg-type]
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim.loadgen",
        description="OCPP-J load generator: many light charge points, CALL round-trip timing.",
    )
    p.add_argument(
        "--url",
        help="base URL (the charge point id is appended); default: start a "
        "simulated cloud in this process",
    )
    p.add_argument("--cps", type=int, default=1000, help="number of charge points (1000)")
    p.add_argument("--rate", type=float, default=0.5, help="messages per second per charge point")
    p.add_argument("--duration", type=float, default=30.0, help="measuring time in seconds (30)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--protocol", choices=("ocpp1.6", "ocpp2.0.1"), default="ocpp1.6")
    p.add_argument(
        "--mix",
        default="Heartbeat=1,MeterValues=3,StatusNotification=1",
        help="action weights, e.g. Heartbeat=1,MeterValues=3",
    )
    p.add_argument("--prefix", default="LOAD", help="charge point id prefix")
    p.add_argument("--password", help="HTTP Basic password (user = charge point id)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small run for a smoke test: 50 charge points, 2 Hz, 3 s, 2 workers",
    )
    return p


async def _main(args: argparse.Namespace) -> LoadReport:
    from sim.cloud import SimCloud

    mix = parse_mix(args.mix)
    if args.quick:
        args.cps, args.rate, args.duration, args.workers = 50, 2.0, 3.0, 2
    cloud = None
    url = args.url
    if url is None:
        cloud = SimCloud(heartbeat_interval_s=300)
        await cloud.start()
        url = cloud.url
    try:
        return await run_load_async(
            url,
            args.cps,
            args.rate,
            args.duration,
            args.workers,
            protocol=args.protocol,
            mix=mix,
            prefix=args.prefix,
            password=args.password,
            timeout_s=args.timeout,
        )
    finally:
        if cloud is not None:
            await cloud.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        report = asyncio.run(_main(args))
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report), indent=2) if args.json else report.summary())
    return 0 if report.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
