"""Load workers for bench/broker.py: 1.6 charge points with a transaction, or idle ones.

``sim.loadgen`` sends MeterValues without a transaction; the broker figures need transaction
messages (durable path: outbox, commit before the answer) and connections that just sit there.
Each worker process runs many light charge points (a websocket and a task each, no ``ocpp``
package), like ``sim/loadgen_worker.py``:

- ``meter``: boot, StartTransaction, then MeterValues with the transactionId at ``rate_hz`` (one
  outstanding CALL) until ``count`` messages or ``duration_s``, then StopTransaction. The edge
  limits each charge point to 20 calls/s (burst 100): a "too many calls" CALLERROR is counted and
  the same message is sent again 50 ms later, so every message counted is one acknowledged.
- ``idle``: boot, then hold the connection until ``stop_file`` exists.
- ``mix`` (bench/energy.py): boot and report the connector Available, then, while ``go_file``
  exists, the ``sim.loadgen`` mix (Heartbeat, MeterValues without a transaction and with no
  current drawn, StatusNotification; 1:3:1) at ``rate_hz``, one outstanding CALL; silent
  (answering the edge's calls) while it does not; until ``stop_file`` exists. Each period with
  ``go_file`` is a segment with its own round trips (``segments_ms``, ``segments_s``), so one
  set of connected charge points can load the broker in some phases and leave it idle in others.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from bench.peers import step_aside

STAMP = "2026-11-28T10:00:00.000Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    worker_index: int
    url: str
    cp_ids: tuple[str, ...]
    mode: str  # "meter" | "idle" | "mix"
    rate_hz: float = 10.0
    count: int = 0  # MeterValues per charge point; 0: until duration_s
    burst: int = 0  # the first this many go without pacing (the edge allows a burst of 100)
    duration_s: float = 10.0
    stop_file: str = ""
    go_file: str = ""  # mix: send while this file exists
    timeout_s: float = 30.0
    connect_concurrency: int = 50


@dataclass(slots=True, kw_only=True)
class LoadResult:
    connected: int = 0
    connect_failures: int = 0
    sent: int = 0
    acked: int = 0  # transaction messages answered with a CALLRESULT (Start + MeterValues + Stop)
    rate_limited: int = 0
    call_errors: int = 0
    timeouts: int = 0
    disconnects: int = 0
    first_error: str | None = None
    measured_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    latencies_ms: bytes = b""
    segments_ms: list[bytes] = field(default_factory=list)  # mix: round trips per go period
    segments_s: list[float] = field(default_factory=list)  # mix: length of each go period


MIX = ("Heartbeat", "MeterValues", "MeterValues", "MeterValues", "StatusNotification")
AVAILABLE = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


class _Gone(Exception):
    pass


class _Worker:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.result = LoadResult()
        self.latencies = array("d")
        self.start_at = 0.0
        self.segment: array[float] | None = None  # mix: the go period under way
        self.segments: list[array[float]] = []
        self.going = asyncio.Event()
        self.stopping = asyncio.Event()

    def _error(self, text: str) -> None:
        if self.result.first_error is None:
            self.result.first_error = text

    async def _exchange(self, ws: ClientConnection, message_id: str, frame: bytes) -> list[object]:
        await ws.send(frame.decode())
        deadline = time.monotonic() + self.spec.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return [0]
            try:
                async with asyncio.timeout(remaining):
                    msg = orjson.loads(await ws.recv())
            except TimeoutError:
                return [0]
            except ConnectionClosed as exc:
                raise _Gone from exc
            if msg[0] == 2:  # a call from the edge (e.g. GetConfiguration): answer, keep waiting
                await ws.send(orjson.dumps([3, msg[1], _answer(str(msg[2]))]).decode())
                continue
            if msg[1] == message_id:
                return list(msg)

    async def _call(
        self,
        ws: ClientConnection,
        message_id: str,
        action: str,
        payload: object,
        timed: bool = False,
    ) -> object:
        """One acknowledged CALL: resent after "too many calls"; None on an error or timeout.
        ``timed``: its round trip (the last attempt's) goes into the latencies."""
        frame = orjson.dumps([2, message_id, action, payload])
        while True:
            self.result.sent += 1
            started = time.perf_counter()
            answer = await self._exchange(ws, message_id, frame)
            if answer[0] == 3:
                if timed:
                    elapsed_ms = (time.perf_counter() - started) * 1000.0
                    self.latencies.append(elapsed_ms)
                    if self.segment is not None:
                        self.segment.append(elapsed_ms)
                return answer[2]
            if answer[0] == 4 and "too many" in str(answer[3]):
                self.result.rate_limited += 1
                await asyncio.sleep(0.05)
                continue
            if answer[0] == 4:
                self.result.call_errors += 1
                self._error(f"{action}: {answer[2]} {answer[3]}")
            else:
                self.result.timeouts += 1
                self._error(f"{action}: no answer in {self.spec.timeout_s:g} s")
            return None

    async def _open(self, cp_id: str, sem: asyncio.Semaphore) -> ClientConnection | None:
        async with sem:
            try:
                ws = await connect(
                    f"{self.spec.url.rstrip('/')}/{cp_id}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    open_timeout=self.spec.timeout_s,
                    ping_interval=None,
                    compression=None,
                    proxy=None,
                    close_timeout=1.0,
                    max_size=None,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self.result.connect_failures += 1
                self._error(f"connect: {exc!r}")
                return None
            try:
                boot = {"chargePointVendor": "Bench", "chargePointModel": "Broker"}
                answer = await self._call(ws, f"{cp_id}-boot", "BootNotification", boot)
            except _Gone:
                self.result.connect_failures += 1
                return None
            if answer is None:
                self.result.connect_failures += 1
                return None
            self.result.connected += 1
            return ws

    async def _meter(self, index: int, cp_id: str, ws: ClientConnection) -> None:
        spec = self.spec
        start = {"connectorId": 1, "idTag": "BENCH", "meterStart": 0, "timestamp": STAMP}
        answer = await self._call(ws, f"{cp_id}-start", "StartTransaction", start)
        if not isinstance(answer, dict):
            return
        tx_id = answer["transactionId"]
        self.result.acked += 1
        interval = 1.0 / spec.rate_hz
        next_at = self.start_at + (index % 97) / 97 * interval
        until = self.start_at + spec.duration_s
        n = 0
        while (spec.count == 0 or n < spec.count) and (spec.count or time.monotonic() < until):
            now = time.monotonic()
            if n < spec.burst:
                next_at = now
            elif next_at > now:
                await asyncio.sleep(next_at - now)
            n += 1
            payload = {
                "connectorId": 1,
                "transactionId": tx_id,
                "meterValue": [{"timestamp": STAMP, "sampledValue": [{"value": str(n)}]}],
            }
            if await self._call(ws, f"{cp_id}-{n}", "MeterValues", payload, timed=True) is not None:
                self.result.acked += 1
            next_at = max(next_at + interval, time.monotonic() - interval)
        stop = {"transactionId": tx_id, "meterStop": n, "timestamp": STAMP}
        if await self._call(ws, f"{cp_id}-stop", "StopTransaction", stop) is not None:
            self.result.acked += 1

    async def _idle(self, ws: ClientConnection) -> None:
        stop = Path(self.spec.stop_file)
        while not await asyncio.to_thread(_stop_requested, stop):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    msg = orjson.loads(await ws.recv())
                    if msg[0] == 2:
                        await ws.send(orjson.dumps([3, msg[1], {"status": "Accepted"}]).decode())

    async def _watch(self) -> None:
        """Mix: one look at ``go_file`` and ``stop_file`` for every charge point of the worker."""
        go, stop = Path(self.spec.go_file), Path(self.spec.stop_file)
        started = 0.0
        while True:
            going, stopping = await asyncio.to_thread(_files, go, stop)
            going = going and not stopping
            if going and not self.going.is_set():
                started = time.monotonic()
                self.segment = array("d")
                self.segments.append(self.segment)
                self.going.set()
            elif not going and self.going.is_set():
                self.going.clear()
                self.segment = None
                self.result.segments_s.append(time.monotonic() - started)
            if stopping:
                self.stopping.set()
                return
            await asyncio.sleep(0.05)

    async def _listen(self, ws: ClientConnection) -> None:
        """Mix, between go periods: answer the edge's calls until a go or a stop."""
        while not self.going.is_set() and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    msg = orjson.loads(await ws.recv())
                    if msg[0] == 2:
                        answer = [3, msg[1], _answer(str(msg[2]))]
                        await ws.send(orjson.dumps(answer).decode())

    async def _mix(self, index: int, cp_id: str, ws: ClientConnection) -> None:
        await self._call(ws, f"{cp_id}-a", "StatusNotification", AVAILABLE)
        interval = 1.0 / self.spec.rate_hz
        n = 0
        next_at = time.monotonic() + (index % 97) / 97 * interval
        while not self.stopping.is_set():
            if not self.going.is_set():
                await self._listen(ws)
                next_at = time.monotonic() + (index % 97) / 97 * interval
                continue
            now = time.monotonic()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                continue  # the go file may be gone by now
            action = MIX[(index + n) % len(MIX)]
            n += 1
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            payload: dict[str, object] = {}
            if action == "StatusNotification":
                payload = AVAILABLE
            elif action == "MeterValues":
                sampled = [
                    {"value": str(n * 10), "measurand": "Energy.Active.Import.Register"},
                    # No car, no current: 16 A here (as sim.loadgen sends) made each of these
                    # connectors one the allocator counts as drawing 16 A on L1, which the meter
                    # never showed, so the loaded phase differed from the idle one by the energy
                    # node's inputs as well as by the traffic (the step's time barely: p50
                    # 10.3-10.6 against 10.8-11.2 ms loaded, two pairs of --runs 5).
                    {"value": "0.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                ]
                payload = {
                    "connectorId": 1,
                    "meterValue": [{"timestamp": stamp, "sampledValue": sampled}],
                }
            await self._call(ws, f"{cp_id}-m{n}", action, payload, timed=True)
            next_at = max(next_at + interval, time.monotonic() - interval)

    async def _run_cp(self, index: int, cp_id: str, ws: ClientConnection) -> None:
        try:
            if self.spec.mode == "idle":
                await self._idle(ws)
            elif self.spec.mode == "mix":
                await self._mix(index, cp_id, ws)
            else:
                await self._meter(index, cp_id, ws)
        except (_Gone, ConnectionClosed) as exc:
            self.result.disconnects += 1
            self._error(f"{cp_id} disconnected: {exc!r}")
        finally:
            await ws.close()

    async def run(self) -> LoadResult:
        cpu = time.process_time()
        sem = asyncio.Semaphore(self.spec.connect_concurrency)
        sockets = await asyncio.gather(*(self._open(c, sem) for c in self.spec.cp_ids))
        self.start_at = time.monotonic()
        watcher = None
        if self.spec.mode == "mix":
            watcher = asyncio.get_running_loop().create_task(self._watch())
        await asyncio.gather(
            *(
                self._run_cp(i, cp_id, ws)
                for i, (cp_id, ws) in enumerate(zip(self.spec.cp_ids, sockets, strict=True))
                if ws is not None
            )
        )
        if watcher is not None:
            await watcher
        self.result.segments_ms = [seg.tobytes() for seg in self.segments]
        self.result.measured_s = time.monotonic() - self.start_at
        self.result.cpu_s = time.process_time() - cpu
        self.result.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.result.latencies_ms = self.latencies.tobytes()
        return self.result


def _answer(action: str) -> dict[str, object]:
    if action == "GetConfiguration":
        return {"configurationKey": []}
    if action == "TriggerMessage":
        return {"status": "Rejected"}
    return {"status": "Accepted"}


def _stop_requested(path: Path) -> bool:
    return path.exists()


def _files(go: Path, stop: Path) -> tuple[bool, bool]:
    return go.exists(), stop.exists()


def worker_main(spec: LoadSpec) -> LoadResult:
    """Entry point in a worker process (spawned)."""
    step_aside()
    return asyncio.run(_Worker(spec).run())
