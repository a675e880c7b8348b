"""Schedule grid limits: steps by weekday and local time of day. Pure: time is a parameter.

A step applies on its ``days`` from ``start`` (inclusive) to ``end`` (exclusive), in the
schedule's time zone, so a step written for 17:00-20:00 follows daylight saving time. A step
whose end is not after its start runs past midnight into the next day (and counts as the day it
started on). Where steps overlap, the tighter of each figure applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from actors.grid_limits import GridLimit, LimitValue

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleStep:
    days: frozenset[str]
    start: time
    # time(0, 0) with start > end, or any end < start: runs past midnight; start == end ==
    # time(0, 0): the whole day (from 00:00 to 24:00)
    end: time
    value: LimitValue

    def __post_init__(self) -> None:
        unknown = set(self.days) - set(DAYS)
        if unknown or not self.days:
            raise ValueError(f"schedule days must be among {', '.join(DAYS)}, got {self.days!r}")
        if self.start == self.end != time(0, 0):
            raise ValueError(f"a schedule step needs from != to, got {self.start} twice")

    def active(self, local: datetime) -> bool:
        day = DAYS[local.weekday()]
        previous_day = DAYS[(local.weekday() - 1) % 7]
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        return (day in self.days and t >= self.start) or (
            previous_day in self.days and t < self.end
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSource:
    name: str
    node: str
    timezone: str
    steps: tuple[ScheduleStep, ...]

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone name


def schedule_limit(source: ScheduleSource, *, now_utc: datetime) -> GridLimit | None:
    """The tightest step in force now (None if none is), valid until the next step boundary."""
    zone = ZoneInfo(source.timezone)
    local = now_utc.astimezone(zone)
    active = [s for s in source.steps if s.active(local)]
    expires = _next_boundary(source, zone, local)
    if not active:
        return None
    value = active[0].value
    for step in active[1:]:
        value = _tighter(value, step.value)
    return GridLimit(
        source=source.name,
        node=source.node,
        value=value,
        expires_utc=expires,
        detail=f"schedule step in force at {local:%a %H:%M} {source.timezone}",
    )


def _next_boundary(source: ScheduleSource, zone: ZoneInfo, local: datetime) -> datetime | None:
    now_utc = local.astimezone(ZoneInfo("UTC"))
    best: datetime | None = None
    for offset in range(0, 9):
        day = (local + timedelta(days=offset)).date()
        for step in source.steps:
            for t in (step.start, step.end):
                candidate = datetime.combine(day, t, tzinfo=zone).astimezone(ZoneInfo("UTC"))
                if candidate > now_utc and (best is None or candidate < best):
                    best = candidate
    return best


def _tighter(a: LimitValue, b: LimitValue) -> LimitValue:
    if a.current_a is None:
        current = b.current_a
    elif b.current_a is None:
        current = a.current_a
    else:
        current = (
            min(a.current_a[0], b.current_a[0]),
            min(a.current_a[1], b.current_a[1]),
            min(a.current_a[2], b.current_a[2]),
        )
    powers = [p for p in (a.power_w, b.power_w) if p is not None]
    return LimitValue(current_a=current, power_w=min(powers) if powers else None)
