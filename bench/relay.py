"""What relaying a charge point costs the front behind TLS (broker shards, security profile 2).

    python bench/relay.py [--quick] [--cps 100] [--frames 50] [--rounds 3]

With TLS on the OCPP port and several broker nodes, the front does every TLS handshake and
relays the other nodes' charge points (drivers/ocpp/handover.py): it decrypts, encrypts and copies
their bytes, while their websocket handshake and frames run in their node. Here the front is an
``OcppListener`` in this process with a self-signed certificate (openssl CLI); N charge points in
another process (plain websockets clients over wss://, each sending Heartbeat frames one at a
time and waiting for the answer) connect to it. Two ways, alternating ``--rounds`` times:

- relayed: every charge point routed to a peer node (``tests/integration/ocpp_drivers/
  shard_peer.py``, its own process) that answers each frame; the front relays both ways;
- served: the front answers each frame itself (an echo: the least a node does with a frame,
  so the TLS and websocket work without any OCPP handling).

Printed: this process's CPU time per frame (each frame in and each answer out counts) both ways,
their ratio, and the wall time; the figures are the last lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.ocpp.server import ListenerOptions, OcppListener, tls_server_context
from tests.integration.ocpp_drivers import shard_peer
from tests.integration.ocpp_drivers.conftest import KNOWN, PASSWORD, Echo, lookup
from tests.tls_files import TlsFiles, self_signed

# The charge points' process: N wss:// clients (the ids the peer and the front know, in turn),
# each connected before the go, then FRAMES frames one at a time.
CLIENTS = r"""
import asyncio, base64, ssl, sys
from websockets.asyncio.client import connect

port, n, frames, cert, password = sys.argv[1:6]
ids = sys.argv[6:]
context = ssl.create_default_context(cafile=cert)
ready = asyncio.Event()

async def one(i):
    cp = ids[i % len(ids)]
    token = base64.b64encode(f"{cp}:{password}".encode()).decode()
    async with connect(
        f"wss://127.0.0.1:{port}/ocpp/{cp.replace(' ', '%20')}",
        subprotocols=["ocpp1.6"],
        additional_headers={"Authorization": f"Basic {token}"},
        ssl=context,
        compression=None,
        ping_interval=None,
    ) as ws:
        connected.append(i)
        await ready.wait()
        for k in range(int(frames)):
            await ws.send('[2,"%d","Heartbeat",{}]' % k)
            await ws.recv()

connected = []

async def main():
    tasks = [asyncio.create_task(one(i)) for i in range(int(n))]
    while len(connected) < int(n):
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # raises what ended one early
        await asyncio.sleep(0.01)
    print("connected", flush=True)
    sys.stdin.readline()
    ready.set()
    await asyncio.gather(*tasks)
    print("done", flush=True)

asyncio.run(main())
"""


class Peer:
    """The other broker node's end: ``shard_peer`` in a process of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc = shard_peer.spawn(path)

    def close(self) -> None:
        shard_peer.stop(self.proc, 30.0)


async def one_run(
    relay: bool, tls: TlsFiles, peer: Peer, cps: int, frames: int
) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) for every client's frames, after all are
    connected."""
    options = ListenerOptions(
        security_profile=2, ssl_context=tls_server_context(tls.cert, tls.key), open_timeout_s=30
    )
    route = (lambda cp: peer.path) if relay else (lambda cp: None)
    front = OcppListener(Echo(), lookup, options, route=route)
    await front.start()
    clients = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENTS,
        str(front.port),
        str(cps),
        str(frames),
        tls.cert,
        PASSWORD,
        *KNOWN,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert clients.stdin is not None
    assert clients.stdout is not None
    try:
        if (await clients.stdout.readline()).strip() != b"connected":
            raise RuntimeError("the charge points did not all connect")
        cpu0, wall0 = time.process_time(), time.monotonic()
        clients.stdin.write(b"go\n")
        await clients.stdin.drain()
        if (await clients.stdout.readline()).strip() != b"done":
            raise RuntimeError("the charge points did not finish")
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        if relay and front.relayed != cps:
            raise RuntimeError(f"{front.relayed} of {cps} charge points relayed")
    finally:
        await clients.wait()
        await front.stop()
    return cpu, wall


async def run(cps: int, frames: int, rounds: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        tls = self_signed(Path(tmp))
        peer = Peer(Path(tmp) / "peer.sock")
        cpu: dict[bool, list[float]] = {False: [], True: []}
        wall: dict[bool, list[float]] = {False: [], True: []}
        try:
            for r in range(rounds):
                for relay in (False, True):
                    c, w = await one_run(relay, tls, peer, cps, frames)
                    cpu[relay].append(c)
                    wall[relay].append(w)
                    print(
                        f"  .. round {r + 1}: {'relayed' if relay else 'served'} "
                        f"{c * 1000:.0f} ms CPU, {w:.2f} s",
                        flush=True,
                    )
        finally:
            peer.close()
    count = cps * frames * 2  # each frame in and its answer out

    def us(relay: bool) -> float:
        return statistics.median(cpu[relay]) / count * 1e6

    return [
        f"bench/relay.py: {cps} charge points over TLS, {frames} frames each and their answers "
        f"({count} frames), {rounds} rounds alternating, medians",
        f"the front relaying them to another node: {us(True):.1f} us of its CPU a frame, "
        f"wall {statistics.median(wall[True]):.2f} s",
        f"the front serving them itself (an echo): {us(False):.1f} us of its CPU a frame, "
        f"wall {statistics.median(wall[False]):.2f} s; relayed / served: "
        f"{us(True) / us(False):.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 charge points, 2 rounds")
    parser.add_argument("--cps", type=int, default=100)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cps, frames, rounds = (50, 20, 2) if args.quick else (args.cps, args.frames, args.rounds)
    started = time.monotonic()
    lines = asyncio.run(run(cps, frames, rounds))
    print(f"(total {time.monotonic() - started:.0f} s)")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
