"""Another broker node's end of a hand-over, in its own process: an OCPP listener without a port
that serves what the front passes to its Unix socket, each frame answered with this process's id
and the charge point's address as this end sees it.

    python -m tests.integration.ocpp_drivers.shard_peer SOCKET_PATH

Prints "ready" once it takes connections; stops when its stdin closes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from drivers.ocpp.connection import LinkClosed, OcppConnection
from drivers.ocpp.handover import HandoverServer
from drivers.ocpp.server import ListenerOptions, OcppListener
from tests.integration.ocpp_drivers.conftest import lookup


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
