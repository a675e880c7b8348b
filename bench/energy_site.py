"""The site that bench/energy.py steps: its meter, its site file, its cars' processes.

:class:`StepMeter` is the simulator's SDM630 (``sim.meter.SimMeter``, a real pymodbus server) in
the bench process. It shows other load (flat per phase, set by the bench with
:meth:`StepMeter.set_other_a`) plus what the cars draw (:class:`SharedDraws`: one float64 per
car in a file both the bench and the cars' processes map, written by each car as it follows its
TxProfile). It overrides ``reading()`` (called by SimMeter's pymodbus access hook for every
request it serves) to stamp ``time.monotonic()`` at the first read served after each change of
the other load: that read is the meter sample that shows the change.

:class:`Levels` is the arithmetic of the site: a static grid limit ``limit_a`` per phase, margin
1 A, every car at most 16 A. ``other_a(n)``: the other load with which n cars fit at 16 A, 0.5 A
to spare. ``other_a(n, k)``: 2 A more per car for each of k steps: after each step the meter
shows an overload (above the limit less the margin, by 2 A per car less 0.5 A) and every car
must drop by 2 A, to ``car_a(k)``, after which the meter is back under.

:class:`CarWorkers`: the charge points, ``bench/energy_cps.py`` processes driven over pipes.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.base_load import BaseLoad
from sim.meter import MeterReading, SimMeter

REPO = Path(__file__).resolve().parents[1]
CAR_MAX_A = 16.0
CUT_A = 2.0  # per car and step: 16 -> 14 -> 12 ...
MARGIN_A = 1.0
SPARE_A = 0.5
POLL_INTERVAL_S = 0.2


def flat(total_a: float) -> BaseLoad:
    return BaseLoad(mean_a=(total_a, total_a, total_a), daily_swing=0.0, noise_a=0.0)


class SharedDraws:
    """Each car's draw per phase (A, float64 by slot) in a file mapped by every process."""

    def __init__(self, cars: int) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="bench-energy-draws-", dir=folder)
        os.ftruncate(fd, 8 * cars)
        self._map = mmap.mmap(fd, 8 * cars)
        os.close(fd)
        self._format = f"{cars}d"

    def phase_currents_a(self) -> tuple[float, float, float]:
        total = sum(struct.unpack_from(self._format, self._map))
        return (total, total, total)

    def close(self) -> None:
        self._map.close()
        Path(self.path).unlink(missing_ok=True)


class StepMeter(SimMeter):
    def __init__(self, other_a: float, draws: SharedDraws) -> None:
        super().__init__(base_load=flat(other_a), sources=[draws])
        self.generation = 0
        self._seen = 0
        self.changed_s: dict[int, float] = {}
        self.first_read_s: dict[int, float] = {}

    def set_other_a(self, other_a: float) -> int:
        """Other load ``other_a`` per phase from the next read on; returns the change's number."""
        self.base_load = flat(other_a)
        self.generation += 1
        self.changed_s[self.generation] = time.monotonic()
        return self.generation

    def reading(self) -> MeterReading:
        if self._seen != self.generation:
            self._seen = self.generation
            self.first_read_s[self.generation] = time.monotonic()
        return super().reading()


@dataclass(frozen=True, slots=True, kw_only=True)
class Levels:
    limit_a: float

    @classmethod
    def for_cars(cls, n_max: int) -> Levels:
        # 50 A of other load left when n_max cars charge at 16 A.
        return cls(limit_a=CAR_MAX_A * n_max + MARGIN_A + SPARE_A + 50.0)

    def other_a(self, n: int, step: int = 0) -> float:
        """Other load after ``step`` steps with n cars charging."""
        return self.limit_a - MARGIN_A - SPARE_A - CAR_MAX_A * n + CUT_A * n * step

    @staticmethod
    def car_a(step: int) -> float:
        """What every car must be given after ``step`` steps."""
        return CAR_MAX_A - CUT_A * step


def car_ids(n: int) -> list[str]:
    return [f"EV{i:05d}" for i in range(n)]


def energy_toml(meter_port: int, levels: Levels, ids: list[str], settle_s: float) -> str:
    """The load-management part of the site file (appended to bench/broker_edge.py's)."""
    cars = "".join(
        f'[[charge_points]]\nid = "{cp}"\nmax_current_a = {CAR_MAX_A:g}\nphases = 3\n' for cp in ids
    )
    # Short settle_s and no dwell: a step can follow the last one soon, and the tick (1 s)
    # raises the cars again soon after the other load is back down. settle_s must exceed the
    # time a car takes to follow a lower limit (its TxProfile's delivery plus
    # energy_cps.FOLLOW_S), or the allocator counts its draw above the new offer as load it
    # does not control and cuts again.
    return f"""
[[meters]]
name = "grid"
model = "sdm630"
host = "127.0.0.1"
port = {meter_port}
poll_interval_s = {POLL_INTERVAL_S}
timeout_s = 0.5

[[grid_limits]]
name = "fuse"
kind = "static"
node = "site"
current_a = {levels.limit_a:g}

[allocation]
margin_a = {MARGIN_A:g}
settle_s = {settle_s:g}
increase_step_a = {CAR_MAX_A:g}
min_pause_s = 0.0
min_charge_s = 0.0

{cars}"""


class CarWorkers:
    """``bench/energy_cps.py`` processes; cars are dealt to them in turn, each with its slot
    in ``draws``."""

    def __init__(self, workers: int, draws: SharedDraws) -> None:
        self.count = workers
        self.draws = draws
        self.procs: list[asyncio.subprocess.Process] = []
        self.cars = 0

    async def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(REPO / "bench" / "energy_cps.py"),
                    self.draws.path,
                    cwd=REPO,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )

    async def _ask(self, proc: asyncio.subprocess.Process, doc: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(doc).encode() + b"\n")
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"charge point worker {proc.pid} ended (asked {doc['cmd']})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"charge point worker {proc.pid}: {answer['error']}")
        return answer

    async def _all(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(self._ask(p, d) for p, d in zip(self.procs, docs, strict=True)))
        )

    async def add(self, url: str, ids: list[str]) -> None:
        shares: list[dict[str, Any]] = [
            {"cmd": "add", "url": url, "ids": [], "slots": [], "max_a": CAR_MAX_A}
            for _ in self.procs
        ]
        for i, cp in enumerate(ids):
            share = shares[(self.cars + i) % len(self.procs)]
            share["ids"].append(cp)
            share["slots"].append(self.cars + i)
        answers = await self._all(shares)
        failed = sum(int(a["failed"]) for a in answers)
        if failed:
            first = next(a["first_error"] for a in answers if a["failed"])
            raise RuntimeError(f"{failed} of {len(ids)} cars did not start charging: {first}")
        self.cars += len(ids)

    async def await_profiles(
        self,
        since_s: float,
        *,
        below_a: float | None = None,
        at_least_a: float | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[list[tuple[float, float] | None], bool]:
        """Per car, the first TxProfile since ``since_s`` whose limit is below ``below_a`` (or
        at least ``at_least_a``): (arrival monotonic s, limit A), or None if none in time; and
        whether every car has followed its last limit and reported it since."""
        doc = {
            "cmd": "await",
            "since_s": since_s,
            "below_a": below_a,
            "at_least_a": at_least_a,
            "timeout_s": timeout_s,
        }
        answers = await self._all([doc] * len(self.procs))
        out: list[tuple[float, float] | None] = []
        for a in answers:
            out.extend(None if x is None else (float(x[0]), float(x[1])) for x in a["arrivals"])
        return out, all(bool(a["quiet"]) for a in answers)

    async def latest_a(self) -> list[float | None]:
        """Each car's latest TxProfile limit (None: none yet)."""
        out: list[float | None] = []
        for a in await self._all([{"cmd": "latest"}] * self.count):
            out.extend(a["limits"])
        return out

    async def cpu_s(self) -> float:
        return sum(float(a["cpu_s"]) for a in await self._all([{"cmd": "stats"}] * self.count))

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is not None:
                continue
            try:
                await asyncio.wait_for(self._ask(proc, {"cmd": "quit"}), 10)
                await asyncio.wait_for(proc.wait(), 10)
            except (TimeoutError, RuntimeError, OSError):
                proc.kill()
                await proc.wait()
