"""Charging profiles as a charge point applies them: pure, ``now`` is always a parameter.

OCPP 1.6 section 3.13 (and 2.0.1 K01, same rules, other names): within one purpose the highest valid
stack level wins, a connector-specific TxDefaultProfile beats one on connector 0 at the same level; a
TxProfile overrules the TxDefaultProfile for its transaction; the ChargePointMaxProfile (2.0.1:
ChargingStationMaxProfile) caps the result, so the composite is the minimum of the transaction limit
and the station limit. Limits in W become A per phase with the period's ``numberPhases`` (3 when
absent) at the nominal voltage. Installing a profile replaces one with the same id, or with the same
connector, purpose and stack level.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sim.car import NOMINAL_VOLTAGE_V


class Purpose(StrEnum):
    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


_PURPOSE_NAMES = {p.value: p for p in Purpose} | {
    "ChargingStationMaxProfile": Purpose.CHARGE_POINT_MAX
}
_RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}


class ProfileError(ValueError):
    """A charging profile that cannot be applied; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePeriod:
    start_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingProfile:
    profile_id: int
    connector_id: int
    stack_level: int
    purpose: Purpose
    kind: str
    rate_unit: str
    periods: tuple[SchedulePeriod, ...]
    installed_utc: datetime
    recurrency: str | None = None
    transaction_id: str | None = None
    valid_from_utc: datetime | None = None
    valid_to_utc: datetime | None = None
    start_schedule_utc: datetime | None = None
    duration_s: int | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Electrical:
    """What converting W to A needs: the connector's phases and voltage."""

    phases: int = 3
    voltage_v: float = NOMINAL_VOLTAGE_V


@dataclass(frozen=True, slots=True, kw_only=True)
class CompositePeriod:
    start_s: int
    limit_a: float


def parse_time(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProfileError(f"{field}: expected an ISO 8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProfileError(f"{field}: expected an ISO 8601 time, got {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _schedule_fields(
    schedule: Mapping[str, Any], where: str
) -> tuple[str, tuple[SchedulePeriod, ...], dict[str, Any]]:
    unit = str(schedule.get("charging_rate_unit", ""))
    if unit not in ("A", "W"):
        raise ProfileError(f"{where}.chargingRateUnit: expected 'A' or 'W', got {unit!r}")
    raw_periods = schedule.get("charging_schedule_period") or []
    periods = tuple(
        SchedulePeriod(
            start_s=int(p["start_period"]),
            limit=float(p["limit"]),
            number_phases=None if p.get("number_phases") is None else int(p["number_phases"]),
        )
        for p in raw_periods
    )
    if not periods or periods[0].start_s != 0:
        raise ProfileError(f"{where}.chargingSchedulePeriod: the first period must start at 0")
    if any(b.start_s <= a.start_s for a, b in itertools.pairwise(periods)):
        raise ProfileError(f"{where}.chargingSchedulePeriod: startPeriod must increase")
    extra = {
        "start_schedule_utc": parse_time(schedule.get("start_schedule"), f"{where}.startSchedule"),
        "duration_s": None if schedule.get("duration") is None else int(schedule["duration"]),
        "min_charging_rate": (
            None
            if schedule.get("min_charging_rate") is None
            else float(schedule["min_charging_rate"])
        ),
    }
    return unit, periods, extra


def _purpose(value: object, where: str) -> Purpose:
    try:
        return _PURPOSE_NAMES[str(value)]
    except KeyError:
        raise ProfileError(f"{where}.chargingProfilePurpose: unknown {value!r}") from None


def profile_from_v16(
    connector_id: int, cs: Mapping[str, Any], *, installed_utc: datetime
) -> ChargingProfile:
    """From the snake_case ``csChargingProfiles`` of a 1.6 SetChargingProfile."""
    unit, periods, extra = _schedule_fields(cs["charging_schedule"], "csChargingProfiles")
    tx = cs.get("transaction_id")
    return ChargingProfile(
        profile_id=int(cs["charging_profile_id"]),
        connector_id=connector_id,
        stack_level=int(cs["stack_level"]),
        purpose=_purpose(cs["charging_profile_purpose"], "csChargingProfiles"),
        kind=str(cs["charging_profile_kind"]),
        recurrency=cs.get("recurrency_kind"),
        transaction_id=None if tx is None else str(tx),
        valid_from_utc=parse_time(cs.get("valid_from"), "csChargingProfiles.validFrom"),
        valid_to_utc=parse_time(cs.get("valid_to"), "csChargingProfiles.validTo"),
        rate_unit=unit,
        periods=periods,
        installed_utc=installed_utc,
        **extra,
    )


def profile_from_v201(
    evse_id: int, cp: Mapping[str, Any], *, installed_utc: datetime
) -> ChargingProfile:
    """From the snake_case ``chargingProfile`` of a 2.0.1 SetChargingProfile (first schedule)."""
    schedules = cp.get("charging_schedule") or []
    if not schedules:
        raise ProfileError("chargingProfile.chargingSchedule: at least one schedule expected")
    unit, periods, extra = _schedule_fields(schedules[0], "chargingProfile.chargingSchedule[0]")
    tx = cp.get("transaction_id")
    return ChargingProfile(
        profile_id=int(cp["id"]),
        connector_id=evse_id,
        stack_level=int(cp["stack_level"]),
        purpose=_purpose(cp["charging_profile_purpose"], "chargingProfile"),
        kind=str(cp["charging_profile_kind"]),
        recurrency=cp.get("recurrency_kind"),
        transaction_id=None if tx is None else str(tx),
        valid_from_utc=parse_time(cp.get("valid_from"), "chargingProfile.validFrom"),
        valid_to_utc=parse_time(cp.get("valid_to"), "chargingProfile.validTo"),
        rate_unit=unit,
        periods=periods,
        installed_utc=installed_utc,
        **extra,
    )


def period_limit_a(period: SchedulePeriod, unit: str, electrical: Electrical) -> float:
    if unit == "A":
        return period.limit
    phases = period.number_phases or electrical.phases
    return period.limit / (electrical.voltage_v * phases)


def _schedule_start(
    p: ChargingProfile, now: datetime, tx_start_utc: datetime | None
) -> datetime | None:
    if p.kind == "Relative":
        # Relative to the transaction; a station-wide profile outside one counts from installation.
        return tx_start_utc if tx_start_utc is not None else p.installed_utc
    start = p.start_schedule_utc or p.installed_utc
    if p.kind == "Recurring":
        every = _RECURRENCE.get(p.recurrency or "Daily", timedelta(days=1))
        start += every * math.floor((now - start) / every)
    return start


def active_period(
    p: ChargingProfile, now: datetime, tx_start_utc: datetime | None
) -> SchedulePeriod | None:
    """The period of ``p`` in force at ``now``, or None when ``p`` does not apply then."""
    if p.valid_from_utc is not None and now < p.valid_from_utc:
        return None
    if p.valid_to_utc is not None and now >= p.valid_to_utc:
        return None
    start = _schedule_start(p, now, tx_start_utc)
    if start is None:
        return None
    elapsed_s = (now - start).total_seconds()
    if elapsed_s < 0 or (p.duration_s is not None and elapsed_s >= p.duration_s):
        return None
    current = None
    for period in p.periods:
        if period.start_s <= elapsed_s:
            current = period
    return current


class ProfileStore:
    """The profiles installed on one charge point, keyed by connector (0 = the whole station)."""

    def __init__(self) -> None:
        self._profiles: dict[int, ChargingProfile] = {}

    @property
    def profiles(self) -> tuple[ChargingProfile, ...]:
        return tuple(self._profiles.values())

    def install(self, profile: ChargingProfile) -> None:
        for key, old in list(self._profiles.items()):
            same_slot = (old.connector_id, old.purpose, old.stack_level) == (
                profile.connector_id,
                profile.purpose,
                profile.stack_level,
            )
            if key == profile.profile_id or same_slot:
                del self._profiles[key]
        self._profiles[profile.profile_id] = profile

    def taken_level(self, profile: ChargingProfile) -> str | None:
        """Why a 2.0.1 station as EVerest's libocpp refuses ``profile`` (its reasonCode; None:
        it does not), where 1.6 would have it replace the one it meets (3.13.2): another id
        holds its stack level, a TxProfile of the same transaction (K01.FR.39: InvalidStackLevel)
        or a profile of its purpose on the same EVSE whose validity overlaps it (K01.FR.06:
        DuplicateProfile); a TxDefaultProfile on the station and one on an EVSE at one level
        likewise (K01.FR.52/53)."""
        for old in self._profiles.values():
            if old.profile_id == profile.profile_id or old.stack_level != profile.stack_level:
                continue
            if old.purpose != profile.purpose:
                continue
            if profile.purpose == Purpose.TX:
                if old.transaction_id == profile.transaction_id:
                    return "InvalidStackLevel"
                continue
            if profile.purpose == Purpose.TX_DEFAULT and (old.connector_id == 0) != (
                profile.connector_id == 0
            ):
                return "DuplicateProfile"
            if old.connector_id == profile.connector_id and _overlap(old, profile):
                return "DuplicateProfile"
        return None

    def clear(
        self,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Remove matching profiles (all criteria given must match); returns how many."""
        doomed = [
            key
            for key, p in self._profiles.items()
            if (profile_id is None or key == profile_id)
            and (connector_id is None or p.connector_id == connector_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]
        for key in doomed:
            del self._profiles[key]
        return len(doomed)

    def end_transaction(self, connector_id: int) -> None:
        """TxProfiles live only as long as their transaction."""
        self.clear(connector_id=connector_id, purpose=Purpose.TX)

    def _winner(
        self,
        purpose: Purpose,
        connectors: Iterable[int],
        connector_id: int,
        now: datetime,
        tx_start_utc: datetime | None,
        tx_id: str | None,
    ) -> tuple[ChargingProfile, SchedulePeriod] | None:
        wanted = set(connectors)
        best: tuple[int, int, ChargingProfile, SchedulePeriod] | None = None
        for p in self._profiles.values():
            if p.purpose != purpose or p.connector_id not in wanted:
                continue
            if purpose == Purpose.TX and p.transaction_id not in (None, tx_id):
                continue
            period = active_period(p, now, tx_start_utc)
            if period is None:
                continue
            rank = (p.stack_level, 1 if p.connector_id == connector_id else 0)
            if best is None or rank > (best[0], best[1]):
                best = (rank[0], rank[1], p, period)
        return None if best is None else (best[2], best[3])

    def limit_a(
        self,
        connector_id: int,
        now: datetime,
        *,
        tx_start_utc: datetime | None,
        tx_id: str | None,
        electrical: Electrical,
    ) -> float | None:
        """Composite limit per phase for ``connector_id`` at ``now``; None when nothing limits."""
        limits: list[float] = []
        tx_limit = None
        if tx_start_utc is not None:
            tx_limit = self._winner(
                Purpose.TX, (connector_id,), connector_id, now, tx_start_utc, tx_id
            )
        if tx_limit is None:
            tx_limit = self._winner(
                Purpose.TX_DEFAULT, (0, connector_id), connector_id, now, tx_start_utc, tx_id
            )
        station = self._winner(
            Purpose.CHARGE_POINT_MAX, (0,), connector_id, now, tx_start_utc, tx_id
        )
        for found in (tx_limit, station):
            if found is not None:
                profile, period = found
                limits.append(period_limit_a(period, profile.rate_unit, electrical))
        return min(limits) if limits else None

    def station_limit_a(self, now: datetime, electrical: Electrical) -> float | None:
        found = self._winner(Purpose.CHARGE_POINT_MAX, (0,), 0, now, None, None)
        if found is None:
            return None
        return period_limit_a(found[1], found[0].rate_unit, electrical)

    def composite(
        self,
        connector_id: int,
        start: datetime,
        duration_s: int,
        *,
        tx_start_utc: datetime | None,
        tx_id: str | None,
        electrical: Electrical,
        default_a: float,
    ) -> list[CompositePeriod]:
        """The composite schedule over ``duration_s`` from ``start``, merged where equal."""
        end = start + timedelta(seconds=duration_s)
        moments = {start}
        for p in self._profiles.values():
            moments.update(_breakpoints(p, start, end, tx_start_utc))
        periods: list[CompositePeriod] = []
        for moment in sorted(m for m in moments if start <= m < end):
            limit = self.limit_a(
                connector_id,
                moment,
                tx_start_utc=tx_start_utc,
                tx_id=tx_id,
                electrical=electrical,
            )
            value = min(default_a, limit) if limit is not None else default_a
            offset = int((moment - start).total_seconds())
            if periods and periods[-1].limit_a == value:
                continue
            if periods and periods[-1].start_s == offset:
                periods[-1] = CompositePeriod(start_s=offset, limit_a=value)
            else:
                periods.append(CompositePeriod(start_s=offset, limit_a=value))
        return periods


def _breakpoints(
    p: ChargingProfile, start: datetime, end: datetime, tx_start_utc: datetime | None
) -> set[datetime]:
    """Moments in [start, end] where ``p`` may change what it says."""
    found = {t for t in (p.valid_from_utc, p.valid_to_utc) if t is not None}
    first = _schedule_start(p, start, tx_start_utc)
    if first is None:
        return found
    every = _RECURRENCE.get(p.recurrency or "Daily") if p.kind == "Recurring" else None
    base = first
    while base <= end:
        found.update(base + timedelta(seconds=period.start_s) for period in p.periods)
        if p.duration_s is not None:
            found.add(base + timedelta(seconds=p.duration_s))
        if every is None:
            break
        base += every
    return found


def _overlap(a: ChargingProfile, b: ChargingProfile) -> bool:
    """Whether the validity periods of ``a`` and ``b`` meet (absent: from ever, to ever)."""
    a_ends_before_b = (
        a.valid_to_utc is not None
        and b.valid_from_utc is not None
        and (a.valid_to_utc < b.valid_from_utc)
    )
    b_ends_before_a = (
        b.valid_to_utc is not None
        and a.valid_from_utc is not None
        and (b.valid_to_utc < a.valid_from_utc)
    )
    return not (a_ends_before_b or b_ends_before_a)
