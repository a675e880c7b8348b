"""OCPP broker figures (issue: the OCPP broker).

    python bench/broker.py [--quick]

Every piece runs in its own processes: the edge is ``python run.py --config FILE`` in nodes mode
(launcher, Thespian admin, broker node, energy node), the cloud is ``bench/broker_cloud.py`` (so
that its work does not share this process's loop), the charge points are worker processes
(``sim.loadgen`` and ``bench/broker_load.py``, 2 each). On a 2-core machine they all share the
same two cores: the figures are for that, not for the edge alone.

(a) CALL round trip for N charge points (1 message/s each, the loadgen mix: Heartbeat, MeterValues
    without a transaction, StatusNotification) through the edge vs the same charge points directly
    at the same simulated cloud (``sim.cloud.SimCloud``): p50/p99 both ways, edge-added p99.
    Target: edge-added p99 <= 5 ms. The simulated cloud and the load generators run the edge's
    GC policy (``supervisors/gc_policy.py``): with the default thresholds their own full
    collections (70-165 ms) landed in one run or the other and decided the difference.
(b) Sustained transaction throughput with durability on: MeterValues with a transactionId through
    the edge while the cloud is there (a bare fast cloud, so the edge is what is measured); each is
    committed to the outbox before it goes up and answered after the cloud's answer.
(c) Replay of a backlog built while the cloud was down (charge points sending MeterValues, the edge
    answering and queueing), against the fast cloud: from the cloud's return until the edge's queues
    are empty and the cloud has every message. Target >= 2,000 messages/s.
(d) Broker node RSS per connected idle charge point: 0 vs N connected and booted (each with its
    ChargePoint and CloudLink actors and its upstream session). Target <= 100 KB.

Figures are printed as the last lines.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from bench.broker_edge import CloudProcess, EdgeProcess
from bench.broker_load import LoadResult, LoadSpec, worker_main
from sim.loadgen import LoadReport, percentile, run_load_async

WORKERS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    round_trip_cps: int
    round_trip_s: float
    throughput_cps: int
    throughput_hz: float
    throughput_s: float
    backlog_cps: int
    backlog_per_cp: int
    idle_cps: int


FULL = Scale(
    round_trip_cps=500,
    round_trip_s=20,
    throughput_cps=200,
    throughput_hz=15,
    throughput_s=20,
    backlog_cps=500,
    backlog_per_cp=200,
    idle_cps=500,
)
# --quick: 29.5 s with a backlog of 10,000 and 4 s phases on a host 3x slower than the
# reference, at the limit of 30 (building and replaying the backlog took 10 of them); with 5,000
# the replay's start weighs too much in its rate (1,942 against 2,459 msg/s with 10,000).
QUICK = Scale(
    round_trip_cps=50,
    round_trip_s=3,
    throughput_cps=100,
    throughput_hz=15,
    throughput_s=3,
    backlog_cps=100,
    backlog_per_cp=80,
    idle_cps=50,
)


def say(text: str) -> None:
    print(f"  .. {text}", flush=True)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


async def run_workers(specs: Sequence[LoadSpec]) -> list[LoadResult]:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(
        max_workers=len(specs), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, worker_main, s) for s in specs))
        )


def split(cp_ids: list[str], **fields: object) -> list[LoadSpec]:
    return [
        LoadSpec(worker_index=w, cp_ids=tuple(cp_ids[w::WORKERS]), **fields)  # type: ignore[arg-type]
        for w in range(WORKERS)
    ]


def merged_latencies(results: Sequence[LoadResult]) -> list[float]:
    values = array("d")
    for r in results:
        values.frombytes(r.latencies_ms)
    return sorted(values)


def broker_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def wait_until(what: str, cond: object, timeout_s: float, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


# -- (d) idle connections ---------------------------------------------------------------------------
async def idle_rss(edge: EdgeProcess, n: int) -> dict[str, float]:
    rss0, uss0 = await edge.rss_kb()
    stop_file = Path(tempfile.mkdtemp(prefix="bench-idle-")) / "stop"
    specs = split(ids("RT", n), url=edge.url, mode="idle", stop_file=str(stop_file))
    task = asyncio.get_running_loop().create_task(run_workers(specs))

    async def all_up() -> bool:
        if task.done():
            raise RuntimeError(f"idle workers ended early: {task.result()}")
        site = await edge.site()
        return bool(site["charge_points_connected"] == n and site["cloud_sessions_online"] == n)

    await wait_until(f"{n} idle charge points connected and online", all_up, 120, 0.5)
    await asyncio.sleep(1.0)  # a second for allocator caches and GC of the connect burst
    rss1, uss1 = await edge.rss_kb()
    stop_file.touch()
    results = await task
    failures = sum(r.connect_failures for r in results)
    return {
        "rss0_mb": rss0 / 1024,
        "rss1_mb": rss1 / 1024,
        "per_cp_rss_kb": (rss1 - rss0) / n,
        "per_cp_uss_kb": (uss1 - uss0) / n,
        "failures": failures,
    }


# -- (a) round trip ---------------------------------------------------------------------------------
async def round_trip(url: str, scale: Scale) -> LoadReport:
    return await run_load_async(
        url, scale.round_trip_cps, 1.0, scale.round_trip_s, WORKERS, prefix="RT", timeout_s=30
    )


# -- (b) throughput ---------------------------------------------------------------------------------
async def throughput(edge: EdgeProcess, scale: Scale) -> dict[str, float]:
    node = await edge.broker()
    assert node is not None
    pid = int(node["pid"])
    cpu0 = broker_cpu_s(pid)
    specs = split(
        ids("TP", scale.throughput_cps),
        url=edge.url,
        mode="meter",
        rate_hz=scale.throughput_hz,
        duration_s=scale.throughput_s,
    )
    results = await run_workers(specs)
    cpu = broker_cpu_s(pid) - cpu0
    lat = merged_latencies(results)
    measured = max(r.measured_s for r in results)
    acked = sum(r.acked for r in results)
    return {
        "offered_msg_s": scale.throughput_cps * scale.throughput_hz,
        "msg_s": len(lat) / measured,
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "acked": acked,
        "errors": sum(r.call_errors + r.timeouts + r.disconnects for r in results),
        "rate_limited": sum(r.rate_limited for r in results),
        "broker_cpu_ms_per_msg": cpu * 1000 / max(1, acked),
    }


# -- (c) replay -------------------------------------------------------------------------------------
async def replay(edge: EdgeProcess, cloud: CloudProcess, scale: Scale) -> dict[str, float]:
    await cloud.command("stop")

    async def offline() -> bool:
        return int((await edge.site())["cloud_sessions_online"]) == 0

    await wait_until("the edge to see the outage", offline, 30)
    built_at = time.monotonic()
    specs = split(
        ids("BL", scale.backlog_cps),
        url=edge.url,
        mode="meter",
        rate_hz=18.0,  # under the edge's 20 calls/s per charge point once the burst is used
        count=scale.backlog_per_cp - 2,
        burst=90,
    )
    results = await run_workers(specs)
    build_s = time.monotonic() - built_at
    backlog = sum(r.acked for r in results)
    errors = sum(r.call_errors + r.timeouts + r.disconnects for r in results)
    queued = int((await edge.site())["queued_for_cloud"])
    base = int((await cloud.command("count"))["tx_unique"])
    say(f"backlog of {backlog} acknowledged in {build_s:.1f} s, {queued} queued at the edge")

    node = await edge.broker()
    assert node is not None
    pid = int(node["pid"])
    cpu0 = broker_cpu_s(pid)
    started = time.monotonic()
    await cloud.command("start")
    first_at = 0.0
    while True:
        have = int((await cloud.command("count"))["tx_unique"]) - base
        now = time.monotonic()
        if have and not first_at:
            first_at = now
        if have >= backlog and int((await edge.site())["queued_for_cloud"]) == 0:
            break
        if now - started > 600:
            raise RuntimeError(f"replay incomplete after 600 s: {have} of {backlog}")
        await asyncio.sleep(0.05)
    done = time.monotonic()
    cpu = broker_cpu_s(pid) - cpu0
    counts = await cloud.command("count")
    return {
        "backlog": backlog,
        "queued": queued,
        "build_s": build_s,
        "build_errors": errors,
        "replay_s": done - started,
        "msg_s": backlog / (done - started),
        "first_after_s": first_at - started,
        "msg_s_from_first": backlog / max(1e-9, done - first_at),
        "copies": int(counts["tx_received"]) - int(counts["tx_unique"]),
        "broker_cpu_ms_per_msg": cpu * 1000 / max(1, backlog),
    }


async def run(scale: Scale, quick: bool) -> list[str]:
    sim = CloudProcess("sim")
    await sim.start()
    edge = EdgeProcess(sim.url)
    try:
        say(f"(a) {scale.round_trip_cps} charge points straight at the simulated cloud")
        direct = await round_trip(sim.url, scale)
        await edge.start()
        say(f"(d) {scale.idle_cps} idle charge points on the edge")
        idle = await idle_rss(edge, scale.idle_cps)
        say(f"(a) {scale.round_trip_cps} charge points through the edge")
        node = await edge.broker()
        assert node is not None
        cpu0 = broker_cpu_s(int(node["pid"]))
        via = await round_trip(edge.url, scale)
        rt_cpu = (broker_cpu_s(int(node["pid"])) - cpu0) * 1000 / max(1, via.answered)
    finally:
        await edge.stop()
        await sim.close()

    fast = CloudProcess("fast")
    await fast.start()
    edge2 = EdgeProcess(fast.url)
    try:
        await edge2.start()
        say(f"(b) {scale.throughput_cps} charge points sending MeterValues in a transaction")
        tp = await throughput(edge2, scale)
        say(f"(c) backlog of {scale.backlog_cps * scale.backlog_per_cp} messages, then replay")
        rp = await replay(edge2, fast, scale)
    finally:
        await edge2.stop()
        await fast.close()

    added = via.p99_ms - direct.p99_ms
    ok = {True: "ok", False: "MISSED"}
    n = scale.round_trip_cps
    # --quick: a p99 of its 150 round trips is their second slowest, one scheduling hiccup on a
    # shared host (16-20 ms in two of three quick runs on 2026-11-29, 1.85 in the third).
    added_verdict = f"not judged from {via.answered} round trips" if quick else ok[added <= 5.0]
    return [
        f"bench/broker.py {'--quick ' if quick else ''}on {os.cpu_count()} cores "
        f"(edge in nodes mode, cloud and load generators in their own processes)",
        f"(a) round trip, {n} charge points at 1 msg/s for {scale.round_trip_s:g} s: "
        f"direct p50 {direct.p50_ms:.2f} ms p99 {direct.p99_ms:.2f} ms; via edge p50 "
        f"{via.p50_ms:.2f} ms p99 {via.p99_ms:.2f} ms; edge-added p50 "
        f"{via.p50_ms - direct.p50_ms:.2f} ms p99 {added:.2f} ms (target <= 5 ms: "
        f"{added_verdict}); answered {direct.answered}/{via.answered}, errors "
        f"{direct.errors}/{via.errors}; broker CPU {rt_cpu:.2f} ms/msg",
        f"(b) transaction MeterValues through the edge (durable, online), "
        f"{scale.throughput_cps} charge points offering {tp['offered_msg_s']:.0f} msg/s: "
        f"{tp['msg_s']:.0f} msg/s, round trip p50 {tp['p50_ms']:.1f} ms p99 {tp['p99_ms']:.1f} ms, "
        f"errors {tp['errors']:.0f}, rate-limited {tp['rate_limited']:.0f}; broker CPU "
        f"{tp['broker_cpu_ms_per_msg']:.2f} ms/msg",
        f"(c) replay of {rp['backlog']:.0f} queued messages ({scale.backlog_cps} charge points, "
        f"built in {rp['build_s']:.1f} s): {rp['replay_s']:.1f} s = {rp['msg_s']:.0f} msg/s "
        f"(target >= 2000: {ok[rp['msg_s'] >= 2000]}); first message after "
        f"{rp['first_after_s']:.2f} s, {rp['msg_s_from_first']:.0f} msg/s from then; copies "
        f"{rp['copies']:.0f}; broker CPU {rp['broker_cpu_ms_per_msg']:.2f} ms/msg",
        f"(d) broker node RSS {idle['rss0_mb']:.1f} MB with 0, {idle['rss1_mb']:.1f} MB with "
        f"{scale.idle_cps} idle connected charge points: {idle['per_cp_rss_kb']:.1f} KB each "
        f"(USS {idle['per_cp_uss_kb']:.1f} KB) (target <= 100 KB: "
        f"{ok[idle['per_cp_rss_kb'] <= 100]})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="same figures, smaller scale (< 30 s)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    lines = asyncio.run(run(QUICK if args.quick else FULL, args.quick))
    print(f"(total {time.monotonic() - started:.0f} s)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
