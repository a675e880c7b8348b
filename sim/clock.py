"""Clocks for the simulated peers.

Car physics, meter integration and timestamps read one injected clock, so a test can run the physics
on a :class:`ManualClock` (no real time at all) or a :class:`ScaledClock` (real time, sped up), while
protocol timers (heartbeats, reconnect backoff) stay on asyncio's real clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def utc(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Real time multiplied by ``speed`` from the moment the clock was made.

    A car ramping at 5 A/s under ``speed=10`` takes a tenth of the real time, so integration tests of
    ramps finish quickly without faking asyncio.
    """

    def __init__(self, speed: float, *, start_utc: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"ScaledClock speed must be > 0, got {speed!r}")
        self.speed = speed
        self._real_start = time.monotonic()
        self._utc_start = start_utc if start_utc is not None else datetime.now(UTC)

    def monotonic(self) -> float:
        return (time.monotonic() - self._real_start) * self.speed

    def utc(self) -> datetime:
        return self._utc_start + timedelta(seconds=self.monotonic())


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, *, start_utc: datetime | None = None, start_s: float = 0.0) -> None:
        self._now_s = start_s
        self._start_s = start_s
        self._utc_start = (
            start_utc if start_utc is not None else datetime(2025, 1, 6, 12, 0, 0, tzinfo=UTC)
        )

    def monotonic(self) -> float:
        return self._now_s

    def utc(self) -> datetime:
        return self._utc_start + timedelta(seconds=self._now_s - self._start_s)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"ManualClock cannot go back: advance({seconds!r})")
        self._now_s += seconds


def ocpp_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, the form charge points send."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
