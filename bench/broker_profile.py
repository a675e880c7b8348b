"""Where the broker's time goes under bench/broker.py's round-trip load (cProfile, loop stalls).

    python bench/broker_profile.py [--quick] [--cps 500] [--seconds 20] [--mix Heartbeat=1,...]
                                   [--top 30]

The broker node runs in this process (single-process mode, the same actor tree as in nodes
mode) under cProfile while ``sim.loadgen`` workers send 1 message/s per charge point through it to
the simulated cloud (its own process). Printed: the functions with the most own time and the most
cumulative time; timing logs of what can stall the event loop (garbage collections per
generation, the periodic status snapshot, loop lag sampled every 5 ms); the round trip
percentiles. ``--no-profile`` leaves cProfile out (it roughly doubles the CPU per message). Two knobs
for the fixes the report proposes, without changing the runtime's files: ``--gc-freeze`` calls
``gc.freeze()`` once the charge points are connected (their long-lived objects leave the
collector's generations), and ``--snapshot-interval S`` sets the node's status snapshot period.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.broker_edge import CloudProcess, site_text
from config.schema import parse_site
from drivers.ports import free_tcp_port
from drivers.store.env import open_store
from drivers.store.writer import GroupCommitWriter
from sim.loadgen import parse_mix, run_load_async
from supervisors import node_runtime
from supervisors.node_messages import NodeSpec
from supervisors.node_runtime import NodeRuntime
from supervisors.single import SingleProcessSite

TABLES = ("outbox", "outbox_dead", "audit", "audit_time", "audit_cp")  # see broker_edge.py


class Timings:
    """Garbage collections, status snapshots and loop lag, as they happen."""

    def __init__(self) -> None:
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.snapshots: list[float] = []
        self.lags: list[float] = []
        self.commits: list[float] = []
        self._gc_start = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc[info["generation"]].append(time.perf_counter() - self._gc_start)

    async def sample_lag(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - before - 0.005)

    def wrap_status(self) -> None:
        original = NodeRuntime.status
        timings = self

        async def timed(runtime: NodeRuntime, timeout_s: float = 0.5) -> dict[str, object]:
            started = time.perf_counter()
            try:
                return await original(runtime, timeout_s)
            finally:
                timings.snapshots.append(time.perf_counter() - started)

        NodeRuntime.status = timed  # type: ignore[method-assign,assignment]

    def wrap_commits(self) -> None:
        original = GroupCommitWriter._commit
        commits = self.commits

        def timed(writer: GroupCommitWriter, ops: list[Any]) -> None:
            started = time.perf_counter()
            try:
                original(writer, ops)
            finally:
                commits.append(time.perf_counter() - started)

        GroupCommitWriter._commit = timed  # type: ignore[method-assign,assignment]

    def report(self, seconds: float) -> list[str]:
        lines = []
        commits = sorted(self.commits)
        if commits:
            lines.append(
                f"store commits (fsync, writer thread): {len(commits)}, p50 "
                f"{commits[len(commits) // 2] * 1000:.1f} ms, p99 "
                f"{commits[int(len(commits) * 0.99)] * 1000:.1f} ms, max {commits[-1] * 1000:.1f} ms"
            )
        for gen, values in self.gc.items():
            if values:
                lines.append(
                    f"gc generation {gen}: {len(values)} collections, {sum(values) * 1000:.0f} ms "
                    f"in all, longest {max(values) * 1000:.1f} ms"
                )
        if self.snapshots:
            lines.append(
                f"status snapshots (NodeRuntime.status, every 2 s): {len(self.snapshots)}, "
                f"mean {sum(self.snapshots) / len(self.snapshots) * 1000:.1f} ms, longest "
                f"{max(self.snapshots) * 1000:.1f} ms (wall, the loop is busy for most of it)"
            )
        lags = sorted(self.lags)
        if lags:
            over = [x for x in lags if x > 0.02]
            lines.append(
                f"loop lag sampled every 5 ms: p50 {lags[len(lags) // 2] * 1000:.1f} ms, p99 "
                f"{lags[int(len(lags) * 0.99)] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms; "
                f"{len(over)} samples over 20 ms in {seconds:g} s"
            )
        return lines


AREAS = (
    ("select.epoll", "waiting in epoll (idle, not CPU)"),
    ("_socket.socket", "socket send/recv (kernel)"),
    ("site-packages/websockets", "websockets (framing, protocol)"),
    ("asyncio", "asyncio (loop, handles, futures, timers)"),
    ("supervisors/", "actor layer (cells, mailboxes, commits)"),
    ("drivers/store", "store (submit, writer)"),
    ("drivers/ocpp", "OCPP drivers (parse, validate, connection)"),
    ("actors/", "broker actors (charge point, cloud link, rules, audit)"),
    ("orjson", "orjson"),
    ("fastjsonschema", "schema validation"),
    ("<string>", "schema validation (generated code)"),
)


def own_time_by_area(stats: pstats.Stats, answered: int) -> str:
    """Own (not cumulative) profiled time summed by area of the code, per message."""
    totals: dict[str, float] = {}
    others: dict[str, float] = {}
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{name}"
        label = next((lab for key, lab in AREAS if key in where), "other")
        totals[label] = totals.get(label, 0.0) + row[2]
        if label == "other":
            others[where] = others.get(where, 0.0) + row[2]
    lines = ["own time by area (profiled; divide by about 2 for unprofiled figures):"]
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        per_msg = seconds * 1e6 / max(1, answered)
        lines.append(f"  {seconds:7.2f} s  {per_msg:7.0f} us/msg  {label}")
    top = sorted(others.items(), key=lambda kv: -kv[1])[:8]
    lines.append("  other, largest: " + ", ".join(f"{w} {t:.2f} s" for w, t in top))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    cloud = CloudProcess("sim")
    await cloud.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-broker-profile-"))
    port = free_tcp_port()
    text = site_text(tmp / "var", port, cloud.url).replace('"nodes"', '"single-process"')
    config = parse_site(text, source="profile site", base_dir=tmp)
    store = open_store(config.storage_dir / "broker")
    for name in TABLES:
        store.table(name)
    if args.snapshot_interval is not None:
        node_runtime.SNAPSHOT_INTERVAL_S = args.snapshot_interval
    site = SingleProcessSite(
        config, (NodeSpec(name="energy", kind="energy"), NodeSpec(name="broker", kind="broker"))
    )
    await site.start()
    timings = Timings()
    timings.wrap_status()
    timings.wrap_commits()
    url = f"ws://127.0.0.1:{port}/ocpp"
    try:
        # Connect and boot first (not profiled), then measure a steady load.
        await run_load_async(url, args.cps, 1.0, 1.0, 2, prefix="RT", mix=parse_mix(args.mix))
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        profiler = cProfile.Profile()
        lag = asyncio.get_running_loop().create_task(timings.sample_lag())
        gc.callbacks.append(timings.on_gc)
        started = time.process_time()
        if args.profile:
            profiler.enable()
        report = await run_load_async(
            url, args.cps, 1.0, args.seconds, 2, prefix="RT", mix=parse_mix(args.mix)
        )
        profiler.disable()
        cpu = time.process_time() - started
        if args.census:
            census = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            print(f"gc-tracked objects after the load: {sum(census.values())}")
            for name, n in census.most_common(25):
                print(f"  {n:8d} {name}")
        gc.callbacks.remove(timings.on_gc)
        lag.cancel()
    finally:
        await site.stop()
        await cloud.close()
    if args.profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
        print(own_time_by_area(stats, report.answered))
    for line in timings.report(args.seconds):
        print(line)
    print(report.summary())
    print(
        f"this process (the edge{' + cProfile' if args.profile else ''}): {cpu:.1f} s CPU for "
        f"{report.answered} answered = {cpu * 1000 / max(1, report.answered):.2f} ms/msg"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cps", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mix", default="Heartbeat=1,MeterValues=3,StatusNotification=1")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--census", action="store_true", help="count live objects by type")
    parser.add_argument("--snapshot-interval", type=float)
    parser.add_argument(
        "--quick", action="store_true", help="the same figures at 100 charge points for 5 s"
    )
    args = parser.parse_args()
    if args.quick:
        args.cps, args.seconds = min(args.cps, 100), min(args.seconds, 5.0)
    asyncio.run(main(args))
