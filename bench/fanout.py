"""The broker's fan-out of a profile batch against the websockets floor, in one run.

    python bench/fanout.py [--quick] [--cps 500] [--batches 20] [--profile] [--deflate]
    python bench/fanout.py --processes K [--quick] [--cps 500] [--batches 20] [--rounds 3]

The broker node runs in this process (single-process mode, broker only; the cloud is
``bench/broker_cloud.py --kind fast``), with N charge points from ``bench/energy_cps.py`` (two
processes) each charging (a transaction running, so each limit becomes a TxProfile). A
:class:`ProfileBatch` lowering (or raising) every connector is handed to ``broker/profiles`` as
the energy node's would be; the figure is the time until the broker wrote the last of its N
SetChargingProfile frames (``profile_writes``), and the broker thread's CPU time meanwhile.

The baseline, measured in the same run: a bare websockets server in this process writes one frame
of the same size to each of N connections held by one client process (plain websocket clients
that answer each frame; no permessage-deflate, like the cars), ``await ws.send(frame)`` in a
loop: what the frames cost without the broker (the library, the loopback sockets and the other
process's wake-ups on these cores).
Printed: both, and their ratio; and the CPU time of the same writes through websockets' send
and through ``OcppConnection.send`` (the broker's), alternating batch by batch. ``--profile``:
cProfile of the broker during the fan-outs. ``--deflate``: the cars offer permessage-deflate
and the listener accepts it (``[listener] compression = "deflate"``; the default declines it).

``--processes K``: what spreading the charge points over K broker processes would give (the
edge has one broker node; ARCHITECTURE.md). One broker process with N charge points, then K
processes with N/K each (each with its own cloud and car processes, the simulated peers stepping
aside as in bench/energy.py), alternating ``--rounds`` times; every process gets its part of the
batch at the same instants (CLOCK_MONOTONIC, shared by the processes), and the figure per
instant is the time until the last frame of all was written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from actors.broker_context import BrokerContext
from actors.cp_state import connector_number
from actors.energy_messages import ConnectorLimit, ProfileBatch
from actors.listener import Listener
from bench.broker_edge import CloudProcess
from bench.energy_cps import COMPRESSION_ENV
from bench.energy_site import CarWorkers, SharedDraws, car_ids
from bench.peers import STEP_ASIDE_ENV
from config.schema import parse_site
from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.connection import OcppConnection
from supervisors.node_messages import NodeSpec
from supervisors.single import SingleProcessSite
from supervisors.system import ActorSystem

REPO = Path(__file__).resolve().parents[1]
FRAME = (
    '[2,"edge-1f2e3d4c5b6a","SetChargingProfile",{"connectorId":1,"csChargingProfiles":'
    '{"chargingProfileId":1001,"stackLevel":8,"chargingProfilePurpose":"TxProfile",'
    '"chargingProfileKind":"Relative","chargingSchedule":{"chargingRateUnit":"A",'
    '"chargingSchedulePeriod":[{"startPeriod":0,"limit":14.0,"numberPhases":3}]},'
    '"transactionId":123}}]'
)
SETTLE_S = 0.5  # between batches: the cars answer, the broker takes the answers
PART_PERIOD_S = 0.6  # --processes: between the instants at which every process gets its part


def site_text(storage: str, cloud_url: str, ids: list[str], compression: str = "off") -> str:
    cps = "".join(f'[[charge_points]]\nid = "{c}"\nmax_current_a = 16\nphases = 3\n' for c in ids)
    return f"""
[site]
name = "fanout"
storage_dir = "{storage}"
[runtime]
mode = "single-process"
log_level = "ERROR"
[listener]
port = 0
auto_register = true
ping_interval_s = 0
compression = "{compression}"
[cloud]
url = "{cloud_url}"
ping_interval_s = 0
[authorization]
unknown_id_offline = "accept"
[[grid_limits]]
name = "fuse"
kind = "static"
node = "site"
current_a = 100000
{cps}"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.asynccontextmanager
async def running_broker(
    ids: list[str], compression: str = "off"
) -> AsyncIterator[tuple[ActorSystem, BrokerContext]]:
    """The broker node in this process (single-process mode, broker only) with the simulated
    cloud and the charge points ``ids`` (bench/energy_cps.py, two processes), each charging,
    their boots' own traffic over."""
    cloud = CloudProcess("fast")
    await cloud.start()
    draws = SharedDraws(len(ids))
    cars = CarWorkers(2, draws)
    site: SingleProcessSite | None = None
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        try:
            text = site_text(f"{tmp}/var", cloud.url, ids, compression)
            config = parse_site(text, source="bench/fanout.py", base_dir=Path(tmp))
            site = SingleProcessSite(config, (NodeSpec(name="broker", kind="broker"),))
            await site.start()
            system = site.runtimes["broker"].system
            assert system is not None
            listener = system.actor("broker/listener")
            assert isinstance(listener, Listener)
            broker = listener.broker
            await cars.start()
            await cars.add(f"ws://127.0.0.1:{broker.listener_port}/ocpp", ids)
            await asyncio.sleep(2 * SETTLE_S)  # the boots' own traffic is over
            yield system, broker
        finally:
            await cars.close()
            draws.close()
            if site is not None:
                site.stop_event.set()
                for runtime in site.runtimes.values():
                    await runtime.stop(5.0)
            await cloud.close()


def running_txs(system: ActorSystem, ids: list[str]) -> dict[str, str]:
    """Each charge point's transaction on connector 1 (the energy node decides a limit for a
    transaction, and the broker puts it in that transaction's TxProfile only)."""
    txs: dict[str, str] = {}
    for cp in ids:
        running = system.actor(f"broker/charge_points/{cp}").report()["transactions"]
        txs[cp] = next(
            str(k) for k, t in running.items() if connector_number(str(t["connector"])) == 1
        )
    return txs


def lowering(txs: dict[str, str], limit_a: float, trigger_ns: int) -> ProfileBatch:
    """A batch changing every connector of ``txs`` (charge point -> its transaction) to
    ``limit_a``, as the energy node's."""
    return ProfileBatch(
        limits=tuple(
            ConnectorLimit(
                charge_point_id=cp,
                connector_id=1,
                limit_a=limit_a,
                phases=3,
                binding_source="grid_limit:fuse/L1",
                reason="bench",
                transaction_id=tx_id,
            )
            for cp, tx_id in txs.items()
        ),
        default_limit_a=6.0,
        computed_utc="2026-01-01T00:00:00.000Z",
        trigger_monotonic_ns=trigger_ns,
        full=False,
        sent_monotonic_ns=trigger_ns,
    )


async def all_written(broker: BrokerContext, trigger_ns: int, n: int, what: str) -> int:
    """When the last of the batch's ``n`` frames was written (monotonic ns)."""
    deadline = time.monotonic() + 10
    while broker.profile_writes.batches.get(trigger_ns, {}).get("written", 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not every frame written in 10 s")
        await asyncio.sleep(0)
    last_ns: int = broker.profile_writes.batches[trigger_ns]["last_ns"]
    return last_ns


async def broker_fanout(
    n: int, batches: int, profile: bool, compression: str = "off"
) -> tuple[list[float], list[float]]:
    """(ms to the last frame written, broker thread CPU ms) per batch."""
    ids = car_ids(n)
    async with running_broker(ids, compression) as (system, broker):
        txs = running_txs(system, ids)
        prof = cProfile.Profile()
        took: list[float] = []
        cpu: list[float] = []
        for i in range(batches + 2):  # the first two warm up
            trigger = time.monotonic_ns()
            cpu0 = time.thread_time()
            if profile and i >= 2:
                prof.enable()
            system.send("broker/profiles", lowering(txs, 10.0 if i % 2 else 12.0, trigger))
            last_ns = await all_written(broker, trigger, n, f"batch {i}")
            if profile and i >= 2:
                prof.disable()
            if i >= 2:
                took.append((last_ns - trigger) / 1e6)
                cpu.append((time.thread_time() - cpu0) * 1000)
            await asyncio.sleep(SETTLE_S)
        if profile:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        return took, cpu


async def process_part(n: int, batches: int, tag: str) -> list[float]:
    """``--processes``: one broker process's part, ``n`` charge points (ids prefixed ``tag``).
    Says "ready" on stdout once they are connected, reads the first instant (monotonic s) from
    stdin, then hands itself a batch lowering each of them at that instant + i * PART_PERIOD_S
    (the same instants in every process); ms from each instant to its last frame written."""
    ids = [f"{tag}-{c}" for c in car_ids(n)]
    async with running_broker(ids) as (system, broker):
        txs = running_txs(system, ids)
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = float(line)
        took: list[float] = []
        for i in range(batches):
            at = t0 + i * PART_PERIOD_S
            await asyncio.sleep(max(0.0, at - time.monotonic() - 0.005))
            while time.monotonic() < at:
                pass  # to the instant, not a timer's "about then"
            trigger = time.monotonic_ns()
            system.send("broker/profiles", lowering(txs, 10.0 if i % 2 else 12.0, trigger))
            last_ns = await all_written(broker, trigger, n, f"{tag} batch {i}")
            took.append((last_ns - int(at * 1e9)) / 1e6)
        return took


def processes_fanout(n: int, k: int, batches: int) -> list[float]:
    """The fan-out of N frames split over ``k`` broker processes (N/k charge points each, with
    their own cloud and car processes), each handed its part at the same instants: per instant,
    ms until the last frame of all was written (the slowest process)."""
    parts = [
        subprocess.Popen(
            [sys.executable, __file__, "--part", str(n // k), str(batches), f"p{j}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        for j in range(k)
    ]
    try:
        for part in parts:
            assert part.stdout is not None
            if part.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a broker process did not start (exit {part.wait()})")
        t0 = time.monotonic() + 0.5
        for part in parts:  # every process first, then wait for them
            assert part.stdin is not None
            part.stdin.write(f"{t0}\n")
            part.stdin.close()
        results = []
        for part in parts:
            assert part.stdout is not None
            out = part.stdout.read()
            if part.wait(timeout=60) != 0:
                raise RuntimeError(f"a broker process failed (exit {part.returncode})")
            results.append(orjson.loads(out.strip().splitlines()[-1]))
    finally:
        for part in parts:
            if part.poll() is None:
                part.kill()
                part.wait()
    # the first two instants warm up
    return [max(r[i] for r in results) for i in range(2, batches)]


async def bare_fanout(n: int, batches: int) -> tuple[list[float], list[float], list[float]]:
    """The baseline: wall time per batch of ``await ws.send(frame)`` (websockets' own send),
    and this thread's CPU time per batch for it and for ``OcppConnection.send`` (the broker's
    write, which skips websockets' async context manager on an open socket with room in its
    buffer), the two alternating batch by batch so both see the same host."""
    conns: list[ServerConnection] = []
    ready = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        conns.append(ws)
        if len(conns) == n:
            ready.set()
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", str(port), str(n), cwd=REPO
        )
        try:
            await asyncio.wait_for(ready.wait(), 60)
            ours = [
                OcppConnection(ws, charge_point_id=f"cp{i}", ocpp_version=OcppVersion.V16)
                for i, ws in enumerate(conns)
            ]
            took: list[float] = []
            cpu_ws: list[float] = []
            cpu_ours: list[float] = []
            for i in range(2 * batches + 2):
                started, cpu = time.perf_counter(), time.thread_time()
                if i % 2:
                    for conn in ours:
                        await conn.send(FRAME)
                else:
                    for ws in conns:
                        await ws.send(FRAME)
                # OcppConnection.send holds a frame to the end of the loop's turn: the CPU of
                # writing it is counted once it is written (the same turn for both).
                await asyncio.sleep(0)
                if i >= 2:
                    spent = (time.thread_time() - cpu) * 1000
                    if i % 2:
                        cpu_ours.append(spent)
                    else:
                        took.append((time.perf_counter() - started) * 1000)
                        cpu_ws.append(spent)
                await asyncio.sleep(SETTLE_S)
            return took, cpu_ws, cpu_ours
        finally:
            client.kill()
            await client.wait()


async def client_main(port: int, n: int) -> None:
    """The baseline's peers: answer each frame, as a charge point would."""
    conns = [
        await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, compression=None)
        for _ in range(n)
    ]

    async def answer(ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                await ws.send('[3,"edge-1f2e3d4c5b6a",{"status":"Accepted"}]')

    await asyncio.gather(*(answer(ws) for ws in conns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 charge points, 8 batches")
    parser.add_argument("--cps", type=int, default=500)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="the cars offer permessage-deflate and the listener accepts it (compression = deflate)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="K",
        help="instead: the fan-out split over K broker processes against one (alternating)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--processes: alternations")
    parser.add_argument("--client", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--part", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        asyncio.run(client_main(*args.client))
        return 0
    logging.basicConfig(level=logging.ERROR)
    if args.part:
        n_part, count, tag = args.part
        took = asyncio.run(process_part(int(n_part), int(count), tag))
        print(orjson.dumps(took).decode())
        return 0
    n, batches = (100, 8) if args.quick else (args.cps, args.batches)
    started = time.monotonic()
    if args.processes:
        return processes_main(n, args.processes, batches, 1 if args.quick else args.rounds)
    compression = "off"
    if args.deflate:
        compression = "deflate"
        os.environ[COMPRESSION_ENV] = compression  # the cars' processes offer it
    took, cpu = asyncio.run(broker_fanout(n, batches, args.profile, compression))
    bare, cpu_ws, cpu_ours = asyncio.run(bare_fanout(n, batches))
    b50, f50 = statistics.median(took), statistics.median(bare)
    w50, o50 = statistics.median(cpu_ws), statistics.median(cpu_ours)
    print(f"(total {time.monotonic() - started:.0f} s, {os.cpu_count()} cores)")
    print(
        f"broker fan-out of {n} SetChargingProfile (batch received -> last frame written): "
        f"p50 {b50:.1f} ms p99 {pct(took, 0.99):.1f} ms ({b50 * 1000 / n:.0f} us per frame), "
        f"broker thread CPU p50 {statistics.median(cpu):.1f} ms; {len(took)} batches; "
        + (
            "permessage-deflate offered by the cars and accepted (--deflate)"
            if args.deflate
            else "plain frames"
        )
    )
    print(
        f"bare websockets, the same frame to {n} connections: p50 {f50:.1f} ms p99 "
        f"{pct(bare, 0.99):.1f} ms ({f50 * 1000 / n:.0f} us per frame); "
        f"broker / bare: {b50 / f50:.2f}"
    )
    print(
        f"the same writes, CPU of this thread per batch (alternating): websockets' send p50 "
        f"{w50:.1f} ms, OcppConnection.send (the broker's) p50 {o50:.1f} ms; ratio {o50 / w50:.2f}"
    )
    return 0


def processes_main(n: int, k: int, batches: int, rounds: int) -> int:
    """One broker process with N charge points, then K with N/K each, ``rounds`` times."""
    # As bench/energy.py: the simulated peers run on what the brokers leave (bench/peers.py);
    # competing with them, K processes were no faster than one here.
    os.environ[STEP_ASIDE_ENV] = "1"
    started = time.monotonic()
    one: list[float] = []
    split: list[float] = []
    for r in range(rounds):
        one += processes_fanout(n, 1, batches)
        split += processes_fanout(n, k, batches)
        print(f"  .. round {r + 1} of {rounds}: {time.monotonic() - started:.0f} s", flush=True)
    print(f"(total {time.monotonic() - started:.0f} s, {os.cpu_count()} cores)")
    o50, s50 = statistics.median(one), statistics.median(split)
    print(
        f"broker fan-out of {n} SetChargingProfile, batch handed over -> last frame written, "
        f"the same instants: one broker process p50 {o50:.1f} ms p90 {pct(one, 0.9):.1f} ms; "
        f"split over {k} processes ({n // k} charge points each) p50 {s50:.1f} ms p90 "
        f"{pct(split, 0.9):.1f} ms ({len(split)} batches); split / one: {s50 / o50:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
