"""Light 1.6 charge points with a car charging, for bench/energy.py: many in one process.

    python bench/energy_cps.py DRAWS_FILE   # driven over stdin/stdout, one JSON object a line

Each charge point is one websocket and one reader task (no ``ocpp`` package, like
``sim/loadgen_worker.py``): it boots, reports its connector Preparing, starts one transaction and
reports Charging. Calls from the edge are answered at once: GetConfiguration with stack level 8
and unit Current, SetChargingProfile Accepted, anything else Accepted (TriggerMessage Rejected).

The car follows its TxProfile: it draws min(limit, its maximum) on three phases, written to its
slot of ``DRAWS_FILE`` (float64 per car, mmap-shared with the bench's meter, which adds them up
on every read), and the charge point reports it in a MeterValues (``Current.Import`` on L1-L3:
what the allocator counts as managed current, and needs before it raises a car again).

- A lower limit: the car draws it ``FOLLOW_S`` after the TxProfile arrives; the charge point
  reports it ``REPORT_S`` after the arrival (so the reports do not load the broker while it is
  still sending the other cars their profiles).
- A higher one (the first included: a car draws nothing before its first TxProfile): the charge
  point reports the new current at once and the car draws it ``RAMP_S`` later (after the first,
  the charge point reports it again then). That order is a
  concession to the committed allocator, which counts a car at its last sample until the next
  one arrives (the broker forwards samples once a second): a car whose higher draw reached the
  meter before its sample reached the allocator was counted twice, and the allocator paused the
  cars again a second after raising them (the oscillation the working tree's
  ``actors/car_learning.py`` removes). The figure never depends on it: it ends before any car
  follows a lower limit.

Arrival times: :class:`TimedConnection` stamps ``time.monotonic()`` (CLOCK_MONOTONIC, the same
clock in every process on Linux) when the event loop hands it a text frame from the socket,
before any task runs, so the figure does not include this process's own queue of messages still
to parse and answer. Every TxProfile's (arrival, limit) is kept per charge point.

Commands (one reply line each):
- ``{"cmd": "add", "url": U, "ids": [...], "slots": [...], "max_a": 16}`` ->
  ``{"added", "failed", "first_error"}``
- ``{"cmd": "await", "since_s": T, "below_a": X | null, "at_least_a": Y | null,
  "timeout_s": S}``: until every charge point here has a TxProfile that arrived at or after ``T``
  with a limit below X (or at least Y), then until every car has followed and its MeterValues
  is answered -> ``{"arrivals": [[t, limit] | null, ...], "quiet": bool}``, one per charge point
  (null: none in time).
- ``{"cmd": "latest"}`` -> ``{"limits": [limit | null, ...]}``: each car's latest TxProfile.
- ``{"cmd": "stats"}`` -> ``{"cpu_s", "tx_profiles", "calls", "closed"}``; ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import mmap
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import step_aside

CONFIGURATION = {
    "configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
    ],
    "unknownKey": [],
}
ANSWER_TIMEOUT_S = 30.0
# "deflate": the cars offer permessage-deflate (bench/fanout.py --deflate); unset, they do not.
COMPRESSION_ENV = "BENCH_CARS_COMPRESSION"
NOMINAL_V = 230.0
FOLLOW_S = 0.05  # a car draws a lower limit this long after it arrives (<< the site's settle_s)
REPORT_S = 0.3  # and its charge point reports it this long after (once the fan-out is over)
RAMP_S = 1.2  # a car draws a higher limit after this (> the broker's 1 s demand interval)


class TimedConnection(ClientConnection):
    """A client connection that stamps each incoming text frame as the loop delivers it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: collections.deque[float] = collections.deque()

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
            self.arrivals.append(time.monotonic())
        super().process_event(event)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def profile_limit_a(payload: dict[str, Any]) -> tuple[str, float] | None:
    """(purpose, limit in A per phase) of a 1.6 SetChargingProfile.req, None if unreadable."""
    try:
        profile = payload["csChargingProfiles"]
        schedule = profile["chargingSchedule"]
        limit = float(schedule["chargingSchedulePeriod"][0]["limit"])
        if schedule.get("chargingRateUnit") == "W":
            phases = int(schedule["chargingSchedulePeriod"][0].get("numberPhases", 3))
            limit = limit / NOMINAL_V / phases
        return str(profile["chargingProfilePurpose"]), limit
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class Car:
    index: int
    cp_id: str
    slot: int
    max_a: float
    ws: TimedConnection
    tx_id: int | None = None
    draw_a: float = 0.0
    follow: asyncio.TimerHandle | None = None
    ops: int = 0  # a draw change or a MeterValues under way
    waiting: dict[str, asyncio.Future[list[Any]]] = field(default_factory=dict)
    tx_profiles: list[tuple[float, float]] = field(default_factory=list)  # (arrival, limit_a)
    calls: int = 0
    closed: bool = False
    next_id: int = 0


class Fleet:
    def __init__(self, draws: mmap.mmap) -> None:
        self.draws = draws
        self.following = 0  # cars with a follow (draw change and its MeterValues) under way
        self.quiet = asyncio.Event()
        self.quiet.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.cars: list[Car] = []
        self.changed: collections.deque[int] = collections.deque()  # car indices, new TxProfile
        self.wake = asyncio.Event()
        self.readers: list[asyncio.Task[None]] = []

    # -- the reader: every frame from the edge ----------------------------------------------------
    async def _read(self, car: Car) -> None:
        ws = car.ws
        try:
            async for text in ws:
                arrived = ws.arrivals.popleft() if ws.arrivals else time.monotonic()
                frame = orjson.loads(text)
                if frame[0] != 2:
                    fut = car.waiting.pop(frame[1], None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    continue
                car.calls += 1
                action = frame[2]
                answer: dict[str, Any] = {"status": "Accepted"}
                if action == "GetConfiguration":
                    answer = CONFIGURATION
                elif action == "TriggerMessage":
                    answer = {"status": "Rejected"}
                elif action == "SetChargingProfile":
                    got = profile_limit_a(frame[3])
                    if got is not None and got[0] == "TxProfile":
                        car.tx_profiles.append((arrived, got[1]))
                        self.changed.append(car.index)
                        self.wake.set()
                        self._schedule_follow(car, got[1])
                await ws.send(orjson.dumps([3, frame[1], answer]).decode())
        except ConnectionClosed:
            pass
        finally:
            car.closed = True
            for fut in car.waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{car.cp_id}: connection closed"))

    # -- the car follows its limit ----------------------------------------------------------------
    def _busy(self, car: Car, delta: int) -> None:
        before = car.ops
        car.ops += delta
        if before == 0 and car.ops > 0:
            self.following += 1
            self.quiet.clear()
        elif before > 0 and car.ops == 0:
            self.following -= 1
            if self.following == 0:
                self.quiet.set()

    def _schedule_follow(self, car: Car, limit_a: float) -> None:
        if car.follow is not None:
            car.follow.cancel()  # a newer limit came first: follow that one
            car.follow = None
            self._busy(car, -1)
        target = max(0.0, min(limit_a, car.max_a))
        loop = asyncio.get_running_loop()
        self._busy(car, +1)
        if target > car.draw_a:
            self._spawn_report(car, target)
            # The first (the broker's at the transaction's start, before the energy node has
            # heard of it): the charge point samples the car again once it draws, as a real one
            # would within its sample interval. The sample above came before the loop's change
            # and does not show it, and an increase waits for one that does (up to
            # sample_wait_s, 30 s: the arrivals of --quick took 55 s in all).
            again_s = 0.0 if car.draw_a == 0.0 else None
            car.follow = loop.call_later(RAMP_S, self._draw, car, target, again_s)
        else:
            car.follow = loop.call_later(FOLLOW_S, self._draw, car, target, REPORT_S - FOLLOW_S)

    def _draw(self, car: Car, draw_a: float, report_after_s: float | None) -> None:
        car.follow = None
        car.draw_a = draw_a
        struct.pack_into("d", self.draws, car.slot * 8, draw_a)
        if report_after_s is not None:
            car.follow = asyncio.get_running_loop().call_later(
                report_after_s, self._report_later, car, draw_a
            )
            return
        self._busy(car, -1)

    def _report_later(self, car: Car, draw_a: float) -> None:
        car.follow = None
        self._spawn_report(car, draw_a)
        self._busy(car, -1)

    def _spawn_report(self, car: Car, draw_a: float) -> None:
        self._busy(car, +1)
        task = asyncio.get_running_loop().create_task(self._report(car, draw_a))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report(self, car: Car, draw_a: float) -> None:
        try:
            if car.tx_id is not None:
                await self._call(car, "MeterValues", meter_values(car.tx_id, draw_a))
        except (ConnectionError, RuntimeError, TimeoutError, ConnectionClosed):
            pass  # the car is gone: await reports it as missing
        finally:
            self._busy(car, -1)

    async def _call(self, car: Car, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        car.next_id += 1
        message_id = f"{car.cp_id}-{car.next_id}"
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        car.waiting[message_id] = fut
        await car.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            answer = await fut
        if answer[0] != 3:
            raise RuntimeError(f"{car.cp_id}: {action} answered {answer[2]} {answer[3]}")
        result: dict[str, Any] = answer[2]
        return result

    # -- a car arrives ----------------------------------------------------------------------------
    async def _arrive(
        self, url: str, cp_id: str, slot: int, max_a: float, sem: asyncio.Semaphore
    ) -> None:
        async with sem:
            ws = await connect(
                f"{url.rstrip('/')}/{cp_id}",
                subprotocols=[Subprotocol("ocpp1.6")],
                create_connection=TimedConnection,
                open_timeout=ANSWER_TIMEOUT_S,
                ping_interval=None,
                compression=os.environ.get(COMPRESSION_ENV) or None,
                proxy=None,
                close_timeout=1.0,
            )
            assert isinstance(ws, TimedConnection)
            car = Car(index=len(self.cars), cp_id=cp_id, slot=slot, max_a=max_a, ws=ws)
            self.cars.append(car)
            self.readers.append(asyncio.get_running_loop().create_task(self._read(car)))
            await self._call(
                car, "BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Car"}
            )
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
        await self._call(car, "StatusNotification", status)
        start = {"connectorId": 1, "idTag": "BENCH", "meterStart": 0, "timestamp": utc_now()}
        car.tx_id = int((await self._call(car, "StartTransaction", start))["transactionId"])
        await self._call(car, "StatusNotification", {**status, "status": "Charging"})

    async def add(self, url: str, ids: list[str], slots: list[int], max_a: float) -> dict[str, Any]:
        sem = asyncio.Semaphore(50)
        results = await asyncio.gather(
            *(
                self._arrive(url, cp_id, slot, max_a, sem)
                for cp_id, slot in zip(ids, slots, strict=True)
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        return {
            "added": len(ids) - len(errors),
            "failed": len(errors),
            "first_error": repr(errors[0]) if errors else None,
        }

    # -- waiting for a round of profiles ----------------------------------------------------------
    @staticmethod
    def _match(car: Car, since_s: float, below: float | None, at_least: float | None) -> Any:
        """The first TxProfile at or after ``since_s`` that meets the condition (newest last,
        so only the tail since ``since_s`` is read)."""
        first = None
        for t, limit in reversed(car.tx_profiles):
            if t < since_s:
                break
            if (below is not None and limit < below) or (
                at_least is not None and limit >= at_least
            ):
                first = [t, limit]
        return first

    async def await_profiles(
        self, since_s: float, below: float | None, at_least: float | None, timeout_s: float
    ) -> dict[str, Any]:
        found: list[Any] = [None] * len(self.cars)
        pending: set[int] = set()
        for car in self.cars:
            found[car.index] = self._match(car, since_s, below, at_least)
            if found[car.index] is None:
                pending.add(car.index)
        deadline = time.monotonic() + timeout_s
        while pending:
            self.wake.clear()
            while self.changed:
                i = self.changed.popleft()
                if i in pending:
                    found[i] = self._match(self.cars[i], since_s, below, at_least)
                    if found[i] is not None:
                        pending.discard(i)
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.wake.wait()
        self.changed.clear()
        remaining = deadline - time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, remaining) + RAMP_S + 2.0):
                await self.quiet.wait()
        return {"arrivals": found, "quiet": self.quiet.is_set()}

    def stats(self) -> dict[str, Any]:
        return {
            "cpu_s": time.process_time(),
            "tx_profiles": sum(len(c.tx_profiles) for c in self.cars),
            "calls": sum(c.calls for c in self.cars),
            "closed": sum(1 for c in self.cars if c.closed),
        }

    async def close(self) -> None:
        for car in self.cars:
            if car.follow is not None:
                car.follow.cancel()
        for task in list(self.tasks):
            task.cancel()
        for car in self.cars:
            with contextlib.suppress(Exception):
                await car.ws.close()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


def meter_values(tx_id: int, draw_a: float) -> dict[str, Any]:
    amps = f"{draw_a:.1f}"
    sampled: list[dict[str, str]] = [
        {"value": amps, "measurand": "Current.Import", "phase": p, "unit": "A"}
        for p in ("L1", "L2", "L3")
    ]
    return {
        "connectorId": 1,
        "transactionId": tx_id,
        "meterValue": [{"timestamp": utc_now(), "sampledValue": sampled}],
    }


async def serve(draws: mmap.mmap) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fleet = Fleet(draws)

    def reply(doc: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        sys.stdout.flush()

    try:
        while line := await reader.readline():
            cmd = orjson.loads(line)
            name = cmd.get("cmd")
            try:
                if name == "add":
                    reply(
                        await fleet.add(
                            cmd["url"], list(cmd["ids"]), list(cmd["slots"]), float(cmd["max_a"])
                        )
                    )
                elif name == "await":
                    reply(
                        await fleet.await_profiles(
                            float(cmd["since_s"]),
                            cmd.get("below_a"),
                            cmd.get("at_least_a"),
                            float(cmd["timeout_s"]),
                        )
                    )
                elif name == "latest":
                    reply(
                        {
                            "limits": [
                                c.tx_profiles[-1][1] if c.tx_profiles else None for c in fleet.cars
                            ]
                        }
                    )
                elif name == "stats":
                    reply(fleet.stats())
                elif name == "quit":
                    reply({"bye": True})
                    break
                else:
                    reply({"error": f"unknown command {name!r}"})
            except (OSError, TimeoutError, InvalidHandshake, RuntimeError, KeyError) as exc:
                reply({"error": repr(exc)})
    finally:
        await fleet.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/energy_cps.py DRAWS_FILE")
    step_aside()
    with open(sys.argv[1], "r+b") as f, mmap.mmap(f.fileno(), 0) as shared:
        asyncio.run(serve(shared))
