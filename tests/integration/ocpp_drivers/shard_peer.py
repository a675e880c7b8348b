"""Another broker node's end of a hand-over, in its own process: an OCPP listener without a port
that serves what the front passes to its Unix socket, each frame answered with this process's id
and the charge point's address as this end sees it.

    python -m tests.integration.ocpp_drivers.shard_peer SOCKET_PATH

Prints "ready" once it takes connections; stops when its stdin closes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson

from drivers.ocpp.connection import LinkClosed, OcppConnection
from drivers.ocpp.handover import HandoverServer
from drivers.ocpp.server import ListenerOptions, OcppListener
from tests.integration.ocpp_drivers.conftest import lookup

REPO = Path(__file__).resolve().parents[3]


async def answer(connection: OcppConnection) -> None:
    try:
        while True:
            text = await connection.recv()
            await connection.send(
                orjson.dumps(
                    {
                        "pid": os.getpid(),
                        "id": connection.charge_point_id,
                        "remote": connection.remote_address,
                        "frame": text,
                    }
                ).decode()
            )
    except LinkClosed:
        pass


def spawn(path: Path) -> subprocess.Popen[str]:
    """This module in a process of its own, serving ``path``; returns once it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.ocpp_drivers.shard_peer", str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the shard peer for {path} did not start")
    return proc


def stop(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> None:
    """Close its stdin (it stops then); kill it if it has not within ``timeout_s``."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        proc.stdout.close()


async def main(path: Path) -> None:
    listener = OcppListener(answer, lookup, ListenerOptions(security_profile=1), listening=False)
    await listener.start()
    server = HandoverServer(path, listener.adopt)
    await server.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await server.close()
    await listener.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
