"""The cloud for bench/broker.py, in its own process, driven over stdin/stdout (one JSON a line).

    python bench/broker_cloud.py --kind sim|fast

``sim``: the simulated CSMS (``sim.cloud.SimCloud``, on the ``ocpp`` package: validates and records
every message) for the round-trip comparison. ``fast``: a bare OCPP-J answerer (no validation,
canned answers) so that the edge, not the cloud, is what the throughput and replay figures measure;
it counts transaction messages by (charge point, message id), so copies are seen as copies.

Commands: ``count`` -> {"tx_unique", "tx_received", "calls", "sessions"}; ``stop`` (an outage:
every session closed, the port refuses), ``start``, ``quit``. The first line printed is
{"port": N}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import step_aside
from supervisors.gc_policy import gc_maintenance

TX_ACTIONS = frozenset({"StartTransaction", "MeterValues", "StopTransaction", "TransactionEvent"})


class FastCloud:
    def __init__(self) -> None:
        self.port = 0
        self.server: Server | None = None
        self.calls = 0
        self.tx_received = 0
        self.tx_seen: set[tuple[str, str]] = set()
        self.sessions = 0
        self.next_tx = 1

    async def start(self) -> None:
        if self.server is None:
            self.server = await serve(
                self._handle,
                "127.0.0.1",
                self.port,
                subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
                compression=None,
                ping_interval=None,
                max_size=None,
            )
            self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def count(self) -> dict[str, Any]:
        return {
            "tx_unique": len(self.tx_seen),
            "tx_received": self.tx_received,
            "calls": self.calls,
            "sessions": self.sessions,
        }

    def _answer(self, action: str) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": "Accepted"}}
        if action == "StartTransaction":
            self.next_tx += 1
            return {"transactionId": self.next_tx, "idTagInfo": {"status": "Accepted"}}
        return {}

    async def _handle(self, ws: ServerConnection) -> None:
        cp_id = (ws.request.path if ws.request else "").rstrip("/").rsplit("/", 1)[-1]
        self.sessions += 1
        try:
            async for text in ws:
                frame = orjson.loads(text)
                if frame[0] != 2:
                    continue
                self.calls += 1
                action = frame[2]
                if action in TX_ACTIONS:
                    self.tx_received += 1
                    self.tx_seen.add((cp_id, frame[1]))
                await ws.send(orjson.dumps([3, frame[1], self._answer(action)]).decode())
        except ConnectionClosed:
            pass


class SimCloudAdapter:
    def __init__(self) -> None:
        from sim.cloud import SimCloud

        self.cloud = SimCloud(heartbeat_interval_s=300, response_timeout_s=30)

    @property
    def port(self) -> int:
        return self.cloud.port

    async def start(self) -> None:
        await self.cloud.start()

    async def stop(self) -> None:
        await self.cloud.stop()

    def count(self) -> dict[str, Any]:
        received = [m for cp in self.cloud.charge_points for m in self.cloud.received(cp)]
        tx = [m for m in received if m.action in TX_ACTIONS]
        return {
            "tx_unique": len({(m.charge_point_id, m.message_id) for m in tx}),
            "tx_received": len(tx),
            "calls": len(received),
            "sessions": sum(cp.connect_count for cp in self.cloud.charge_points.values()),
        }


async def main(kind: str) -> None:
    cloud: FastCloud | SimCloudAdapter = FastCloud() if kind == "fast" else SimCloudAdapter()
    await cloud.start()
    # The edge's GC policy here too: this process's full collections (70-165 ms at 500 charge
    # points with the default thresholds) landed in both the direct and the through-the-edge runs.
    gc_task = asyncio.get_running_loop().create_task(gc_maintenance(freeze_every_s=5.0))
    print(orjson.dumps({"port": cloud.port}).decode(), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line in ("", "quit"):
            break
        if line == "stop":
            await cloud.stop()
            answer: dict[str, Any] = {"ok": True}
        elif line == "start":
            await cloud.start()
            answer = {"ok": True}
        elif line == "count":
            answer = cloud.count()
        else:
            answer = {"error": f"unknown command {line!r}"}
        print(orjson.dumps(answer).decode(), flush=True)
    gc_task.cancel()
    await cloud.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("sim", "fast"), default="fast")
    step_aside()
    asyncio.run(main(parser.parse_args().kind))
