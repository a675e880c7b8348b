"""One load-generator worker process: many light OCPP-J charge points on one event loop.

No ``ocpp`` package here: a charge point is one websocket and one task that writes a CALL frame from
a template, waits for the CALLRESULT with the same id (answering any CALL the server sends in
between), records the round trip and sleeps until its next slot. That keeps a charge point at a few
tens of kB and a message at a few tens of microseconds, so two workers carry 1,000 charge points on
this machine.
"""

from __future__ import annotations

import asyncio
import base64
import random
import resource
import time
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from supervisors.gc_policy import gc_maintenance

ACTIONS = ("Heartbeat", "MeterValues", "StatusNotification")
# Calls a server may send a load charge point; anything else is answered NotImplemented.
_ACCEPT = {
    "SetChargingProfile",
    "ClearChargingProfile",
    "ChangeConfiguration",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "RequestStartTransaction",
    "RequestStopTransaction",
    "TriggerMessage",
    "DataTransfer",
    "SendLocalList",
    "Reset",
    "ClearCache",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    worker_index: int
    url: str
    charge_point_ids: tuple[str, ...]
    protocol: str
    rate_per_cp_hz: float
    duration_s: float
    # (action, weight)
    mix: tuple[tuple[str, float], ...]
    timeout_s: float
    connect_concurrency: int
    password: str | None = None
    seed: int = 1


@dataclass(slots=True, kw_only=True)
class WorkerResult:
    worker_index: int
    charge_points: int
    connected: int = 0
    connect_failures: int = 0
    boot_rejected: int = 0
    sent: int = 0
    answered: int = 0
    call_errors: int = 0
    timeouts: int = 0
    disconnects: int = 0
    calls_from_server: int = 0
    measured_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    first_error: str | None = None
    # array('d') of round trips in ms, as bytes so the result pickles small
    latencies_ms: bytes = b""
    errors_by_kind: dict[str, int] = field(default_factory=dict)


class _Frames:
    """CALL frames per action, built from pre-serialized templates."""

    def __init__(self, protocol: str) -> None:
        self.v16 = protocol == "ocpp1.6"
        self._stamp = ""
        self._stamp_second = -1

    def _timestamp(self) -> str:
        second = int(time.time())
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._stamp

    def boot(self, message_id: str) -> str:
        if self.v16:
            body = '{"chargePointVendor":"SimLoad","chargePointModel":"Load"}'
        else:
            body = '{"chargingStation":{"model":"Load","vendorName":"SimLoad"},"reason":"PowerUp"}'
        return f'[2,"{message_id}","BootNotification",{body}]'

    def call(self, action: str, message_id: str, energy_wh: int) -> str:
        ts = self._timestamp()
        if action == "Heartbeat":
            body = "{}"
        elif action == "StatusNotification":
            if self.v16:
                body = '{"connectorId":1,"errorCode":"NoError","status":"Available"}'
            else:
                body = (
                    f'{{"timestamp":"{ts}","connectorStatus":"Available","evseId":1,'
                    f'"connectorId":1}}'
                )
        elif self.v16:
            body = (
                f'{{"connectorId":1,"meterValue":[{{"timestamp":"{ts}","sampledValue":['
                f'{{"value":"{energy_wh}","measurand":"Energy.Active.Import.Register","unit":"Wh"}},'
                f'{{"value":"16.0","measurand":"Current.Import","phase":"L1","unit":"A"}}]}}]}}'
            )
        else:
            body = (
                f'{{"evseId":1,"meterValue":[{{"timestamp":"{ts}","sampledValue":['
                f'{{"value":{energy_wh},"measurand":"Energy.Active.Import.Register"}},'
                f'{{"value":16.0,"measurand":"Current.Import","phase":"L1"}}]}}]}}'
            )
        return f'[2,"{message_id}","{action}",{body}]'


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.result = WorkerResult(
            worker_index=spec.worker_index, charge_points=len(spec.charge_point_ids)
        )
        self.latencies = array("d")
        self.done_sockets: list[ClientConnection] = []
        self.frames = _Frames(spec.protocol)
        actions = [a for a, _ in spec.mix]
        weights = [w for _, w in spec.mix]
        self.rng = random.Random(spec.seed * 7919 + spec.worker_index)
        self.choices = self.rng.choices(actions, weights=weights, k=997)
        self.headers: dict[str, str] = {}
        self.measure_from = 0.0
        self.measure_until = 0.0

    def _error(self, kind: str, detail: str) -> None:
        counts = self.result.errors_by_kind
        counts[kind] = counts.get(kind, 0) + 1
        if self.result.first_error is None:
            self.result.first_error = f"{kind}: {detail}"

    async def _connect(self, cp_id: str) -> ClientConnection | None:
        headers = {}
        if self.spec.password is not None:
            token = base64.b64encode(f"{cp_id}:{self.spec.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            return await connect(
                self.spec.url.rstrip("/") + "/" + cp_id,
                subprotocols=[Subprotocol(self.spec.protocol)],
                additional_headers=headers,
                open_timeout=self.spec.timeout_s,
                ping_interval=None,
                compression=None,
                proxy=None,
                close_timeout=1.0,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._error("connect", repr(exc))
            return None

    async def _exchange(self, ws: ClientConnection, frame: str, message_id: str) -> str:
        """Send one CALL and wait for its answer: "result", "error" or "timeout"."""
        await ws.send(frame)
        deadline = time.monotonic() + self.spec.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                async with asyncio.timeout(remaining):
                    raw = await ws.recv()
            except TimeoutError:
                return "timeout"
            msg = orjson.loads(raw)
            if msg[0] == 2:
                self.result.calls_from_server += 1
                if msg[2] in _ACCEPT:
                    answer = [3, msg[1], {"status": "Accepted"}]
                else:
                    answer = [4, msg[1], "NotImplemented", "load client", {}]
                await ws.send(orjson.dumps(answer).decode())
                continue
            if msg[1] != message_id:
                continue  # a late answer to a call that already timed out
            return "result" if msg[0] == 3 else "error"

    async def _boot(self, cp_id: str, sem: asyncio.Semaphore) -> ClientConnection | None:
        async with sem:
            ws = await self._connect(cp_id)
            if ws is None:
                self.result.connect_failures += 1
                return None
            try:
                outcome = await self._exchange(ws, self.frames.boot(f"{cp_id}-b"), f"{cp_id}-b")
            except ConnectionClosed as exc:
                self._error("closed", repr(exc))
                self.result.connect_failures += 1
                return None
            if outcome != "result":
                self.result.boot_rejected += 1
                self._error("boot", outcome)
            self.result.connected += 1
            return ws

    async def _run_cp(self, index: int, cp_id: str, ws: ClientConnection) -> None:
        spec = self.spec
        interval = 1.0 / spec.rate_per_cp_hz
        next_at = self.measure_from + self.rng.uniform(0, interval)
        n = 0
        energy = 0
        result = self.result
        while True:
            now = time.monotonic()
            if next_at >= self.measure_until:
                break
            if next_at > now:
                await asyncio.sleep(next_at - now)
            action = self.choices[(index + n) % len(self.choices)]
            message_id = f"{cp_id}-{n}"
            n += 1
            energy += 10
            frame = self.frames.call(action, message_id, energy)
            started = time.perf_counter()
            result.sent += 1
            try:
                outcome = await self._exchange(ws, frame, message_id)
            except ConnectionClosed as exc:
                result.disconnects += 1
                self._error("closed", repr(exc))
                reconnected = await self._connect(cp_id)
                if reconnected is None:
                    return
                ws = reconnected
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            if outcome == "result":
                result.answered += 1
                self.latencies.append(elapsed_ms)
            elif outcome == "error":
                result.call_errors += 1
                self._error("callerror", action)
            else:
                result.timeouts += 1
                self._error("timeout", action)
            next_at = max(next_at + interval, time.monotonic())
        # Closed once every charge point of the worker is done: a close is work at the server
        # (state saved, upstream session let go), which must not land on the others' last calls.
        self.done_sockets.append(ws)

    async def run(self) -> WorkerResult:
        spec = self.spec
        cpu_start = time.process_time()
        # The edge's GC policy: this process's own full collections would show as round trips.
        gc_task = asyncio.get_running_loop().create_task(gc_maintenance(freeze_every_s=5.0))
        sem = asyncio.Semaphore(spec.connect_concurrency)
        sockets = await asyncio.gather(*(self._boot(cp_id, sem) for cp_id in spec.charge_point_ids))
        self.measure_from = time.monotonic()
        self.measure_until = self.measure_from + spec.duration_s
        await asyncio.gather(
            *(
                self._run_cp(i, cp_id, ws)
                for i, (cp_id, ws) in enumerate(zip(spec.charge_point_ids, sockets, strict=True))
                if ws is not None
            )
        )
        self.result.measured_s = time.monotonic() - self.measure_from
        await asyncio.gather(*(ws.close() for ws in self.done_sockets), return_exceptions=True)
        gc_task.cancel()
        self.result.cpu_s = time.process_time() - cpu_start
        self.result.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.result.latencies_ms = self.latencies.tobytes()
        return self.result


def worker_main(spec: WorkerSpec) -> WorkerResult:
    """Entry point in the worker process."""
    return asyncio.run(_Worker(spec).run())
