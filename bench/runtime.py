"""Runtime foundation figures (issue: the runtime foundation).

    python bench/runtime.py [--quick]

Prints, as its last lines:
- in-process actor message throughput (one-way tells) and ask round-trip latency p50/p99;
- in-process restart latency: crash -> the restarted actor answers, p50/p99;
- group-commit throughput against one commit per message, measured in the same run (ratio);
- memory per 1,000 idle actors (RSS delta);
- node restart latency after SIGKILL (real Thespian nodes): kill -> the node takes and commits a
  message again, p50/max.
Targets: >= 100k msg/s, in-process restart < 5 ms, group commit >= 20x, node restart < 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from actors.store_writer import StoreWriter
from drivers.store.codec import persisted
from drivers.store.env import open_store
from supervisors.actor import Actor, ActorContext
from supervisors.messages import StartChild
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@persisted(name="bench.Tick")
@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    n: int


class Sink(Actor):
    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.count = 0
        self.done: asyncio.Future[None] | None = None
        self.expect = 0

    async def receive(self, msg: object) -> Any:
        if isinstance(msg, Tick):
            self.count += 1
            if self.count == self.expect and self.done is not None:
                self.done.set_result(None)
            return None
        if msg == "ping":
            return "pong"
        if msg == "crash":
            raise RuntimeError("bench crash")
        return None


class DurableSink(Sink):
    DURABLE = frozenset({Tick})


class Idle(Actor):
    async def receive(self, msg: object) -> Any:
        return None


async def actor_figures(quick: bool) -> dict[str, float]:
    system = ActorSystem("bench")
    await system.start(
        SupervisorSpec(
            max_restarts=10_000, period_s=1, children=(ChildSpec(id="sink", start=Sink),)
        )
    )
    ref = system.lookup("bench/sink")
    assert ref is not None
    sink = system.actor("bench/sink")
    assert isinstance(sink, Sink)
    n = 100_000 if quick else 500_000
    sink.expect, sink.count = n, 0
    sink.done = asyncio.get_running_loop().create_future()
    t0 = time.perf_counter()
    for i in range(n):
        ref.tell(Tick(n=i))
    await sink.done
    tell_rate = n / (time.perf_counter() - t0)

    rtts = []
    for _ in range(5_000 if quick else 20_000):
        t = time.perf_counter()
        await ref.ask("ping")
        rtts.append(time.perf_counter() - t)

    restarts = []
    for _ in range(100 if quick else 500):
        t = time.perf_counter()
        ref.tell("crash")
        await ref.ask("ping")
        restarts.append(time.perf_counter() - t)

    root = system.root
    assert root is not None
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    idle = 2_000 if quick else 10_000
    for i in range(idle):
        await root.ask(StartChild(spec=ChildSpec(id=f"idle{i}", start=Idle)))
    gc.collect()
    rss1 = psutil.Process().memory_info().rss
    await system.stop(30)
    return {
        "tell_msgs_per_s": tell_rate,
        "ask_p50_us": pct(rtts, 50) * 1e6,
        "ask_p99_us": pct(rtts, 99) * 1e6,
        "restart_p50_ms": pct(restarts, 50) * 1e3,
        "restart_p99_ms": pct(restarts, 99) * 1e3,
        "kb_per_1000_idle_actors": (rss1 - rss0) / idle,  # bytes per actor == KB per 1000
    }


async def commit_figures(quick: bool, workdir: Path) -> dict[str, float]:
    store = open_store(workdir / "commit")
    system = ActorSystem("commit", store=store)
    await system.start(
        SupervisorSpec(
            strategy="rest_for_one",
            children=(
                ChildSpec(id="store", start=StoreWriter),
                ChildSpec(id="sink", start=DurableSink),
            ),
        )
    )
    ref = system.lookup("commit/sink")
    assert ref is not None
    n_single = 500 if quick else 2_000
    t0 = time.perf_counter()
    for i in range(n_single):
        await ref.tell_durable(Tick(n=i))  # the next waits for this one's commit
    single_rate = n_single / (time.perf_counter() - t0)

    n_group = 20_000 if quick else 100_000
    in_flight = 1_000
    t0 = time.perf_counter()
    for start in range(0, n_group, in_flight):
        await asyncio.gather(
            *(ref.tell_durable(Tick(n=i)) for i in range(start, start + in_flight))
        )
    group_rate = n_group / (time.perf_counter() - t0)
    writer = system.actor("commit/store")
    assert isinstance(writer, StoreWriter)
    assert writer.writer is not None
    stats = writer.writer.stats
    await system.stop(30)
    store.close()
    return {
        "one_commit_per_msg_per_s": single_rate,
        "group_commit_msgs_per_s": group_rate,
        "group_commit_ratio": group_rate / single_rate,
        "mean_batches_per_commit": stats.batches_per_commit,
    }


def node_restart_figures(quick: bool, workdir: Path) -> dict[str, float]:
    import subprocess

    from drivers import control
    from drivers.ports import free_tcp_port

    repo = Path(__file__).resolve().parents[1]
    cfg = workdir / "site.toml"
    cfg.write_text(
        f'[site]\nname = "bench"\nstorage_dir = "{workdir / "var"}"\n'
        '[runtime]\nlog_level = "WARNING"\nnode_max_restarts = 1000\n'
    )
    port = free_tcp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.nodes.probe_site", str(cfg), str(port)],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock_path = workdir / "var" / "control.sock"

    def probe_pid() -> int | None:
        try:
            doc = control.ask(sock_path, {"cmd": "status"}, timeout_s=2)
        except control.ControlUnavailable:
            return None
        node = next((n for n in doc["nodes"] if n["name"] == "probe"), None)
        return None if node is None or not node.get("answered") else node.get("pid")

    def committed_roundtrip(msg_id: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"%d\n" % msg_id)
                    if s.recv(64).strip() == b"%d" % msg_id:
                        return
            except OSError:
                time.sleep(0.002)
        raise TimeoutError("node did not come back")

    try:
        deadline = time.monotonic() + 30
        while probe_pid() is None:
            if time.monotonic() > deadline:
                raise TimeoutError("probe site did not start")
            time.sleep(0.05)
        committed_roundtrip(1, time.monotonic() + 10)
        times = []
        for k in range(5 if quick else 20):
            pid = probe_pid()
            assert pid is not None
            t0 = time.monotonic()
            os.kill(pid, 9)
            committed_roundtrip(k + 2, t0 + 10)
            times.append(time.monotonic() - t0)
        return {
            "node_restart_p50_ms": pct(times, 50) * 1e3,
            "node_restart_max_ms": max(times) * 1e3,
        }
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="same figures, smaller scale (< 30 s)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the restart figures crash an actor hundreds of times
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtime-", dir="/var/tmp"))
    try:
        actor = asyncio.run(actor_figures(args.quick))
        commit = asyncio.run(commit_figures(args.quick, workdir))
        node = node_restart_figures(args.quick, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {**actor, **commit, **node}
    targets = {
        "tell_msgs_per_s": (">=", 100_000),
        "restart_p99_ms": ("<", 5),
        "group_commit_ratio": (">=", 20),
        "node_restart_max_ms": ("<", 500),
    }
    print(f"bench/runtime.py {'--quick ' if args.quick else ''}on {os.cpu_count()} cores")
    for key, value in figures.items():
        mark = ""
        if key in targets:
            op, want = targets[key]
            ok = value >= want if op == ">=" else value < want
            mark = f"  target {op} {want:g}: {'ok' if ok else 'MISSED'}"
        print(f"{key:28s} {value:14,.1f}{mark}")
    print("ask latency is an in-loop round trip; node restart = kill -9 to the next commit")


if __name__ == "__main__":
    main()
