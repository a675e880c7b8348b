"""The cloud's TxProfiles beside the edge's (pure: no I/O, no clock reads; ``now`` is a parameter).

The edge's TxProfile sits at the charge point's highest stack level with a fixed id per connector
(:mod:`actors.profiles`). Within the TxProfile purpose a charge point follows the highest stack
level alone (OCPP 1.6 3.13.2, 2.0.1 K01), so by itself:

- a TxProfile the cloud sets at a lower level is shadowed by the edge's: the cloud's limit (a
  tariff, a customer's choice, a fleet's cap) is ignored whenever the edge's is above it;
- one at the edge's level (on the many charge points that take only level 0 there is no other)
  replaces the edge's: the car follows the cloud's limit and the site's is ignored until the
  energy node changes that connector's limit.

So the broker keeps what the cloud set for each transaction, once the charge point accepted it, and
the edge's TxProfile carries min(the edge's limit, the cloud's limit at that moment); when the
cloud's schedule changes its value (a period begins, its duration or validity ends, a recurrence
begins again) the broker sends it again (``CloudCap.until``). Likewise the cloud's
TxDefaultProfiles: the limit of a transaction without a TxProfile of the cloud's (the edge's
TxProfile would shadow them too; a connector's own overrides the station's), and on the station a
cap on the edge's safe TxDefaultProfile (the cloud's at the edge's level replaces it). The cloud's
ChargePointMaxProfiles likewise cap the edge's (within that purpose too the highest level wins:
one above the edge's would lift the charge point's cap, one below it would be shadowed). Only the
first schedule of a 2.0.1 profile is read (the others are ISO 15118 offers, K01.FR.70); a schedule
in watts becomes amperes per phase over its periods' ``numberPhases`` at the nominal voltage; when
absent, 3 as OCPP says, but no more than the charge point's phases: one wired on a single phase
gives the watts on it (W / U A), and three would hold the car at a third of what the cloud allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from actors.utc import format_utc, parse_utc
from drivers.ocpp.codes import OcppVersion

DEFAULT_PHASES = 3  # a period without numberPhases: three (1.6 and 2.0.1 alike) ...
_RECURRENCE_S = {"Daily": 86_400.0, "Weekly": 604_800.0}
DOC_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudProfile:
    """One TxProfile (kept with its transaction) or TxDefaultProfile of the cloud's (``to_doc``).
    ``periods``: (start offset s, limit in ``unit``, phases or None)."""

    profile_id: int
    stack_level: int
    kind: str  # Absolute, Relative, Recurring
    recurrency: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    start: datetime | None  # startSchedule
    duration_s: float | None
    unit: str  # "A" or "W"
    periods: tuple[tuple[float, float, int | None], ...]
    set_utc: datetime  # when the charge point accepted it

    def to_doc(self) -> dict[str, Any]:
        return {
            "v": DOC_VERSION,
            "id": self.profile_id,
            "stack_level": self.stack_level,
            "kind": self.kind,
            "recurrency": self.recurrency,
            "valid_from": _text(self.valid_from),
            "valid_to": _text(self.valid_to),
            "start": _text(self.start),
            "duration_s": self.duration_s,
            "unit": self.unit,
            "periods": [list(p) for p in self.periods],
            "set_utc": format_utc(self.set_utc),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CloudProfile:
        if doc.get("v") != DOC_VERSION:
            raise ValueError(f"cloud profile record: unknown version {doc.get('v')!r}")
        return cls(
            profile_id=int(doc["id"]),
            stack_level=int(doc["stack_level"]),
            kind=str(doc["kind"]),
            recurrency=doc.get("recurrency"),
            valid_from=_time(doc.get("valid_from"), "valid_from"),
            valid_to=_time(doc.get("valid_to"), "valid_to"),
            start=_time(doc.get("start"), "start"),
            duration_s=None if doc.get("duration_s") is None else float(doc["duration_s"]),
            unit=str(doc["unit"]),
            periods=tuple(
                (float(s), float(lim), None if ph is None else int(ph))
                for s, lim, ph in doc["periods"]
            ),
            set_utc=parse_utc(doc["set_utc"], where="set_utc"),
        )


def _text(value: datetime | None) -> str | None:
    return None if value is None else format_utc(value)


def _time(value: Any, where: str) -> datetime | None:
    return None if value is None else parse_utc(value, where=where)


# -- the cloud's requests ---------------------------------------------------------------------


TX_PROFILE = "TxProfile"
TX_DEFAULT = "TxDefaultProfile"
MAX_PROFILE = "ChargePointMaxProfile"  # 2.0.1: ChargingStationMaxProfile, read as this
_PURPOSES = {
    TX_PROFILE: TX_PROFILE,
    TX_DEFAULT: TX_DEFAULT,
    MAX_PROFILE: MAX_PROFILE,
    "ChargingStationMaxProfile": MAX_PROFILE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudSet:
    """A SetChargingProfile of the cloud's that sets a TxProfile, a TxDefaultProfile or a
    ChargePointMaxProfile: its purpose, on which connector (1.6) or EVSE (2.0.1; 0: the station,
    a TxDefaultProfile or the max profile), for which transaction (a TxProfile's; None: the one
    running there), and the profile."""

    purpose: str
    connector_id: int
    transaction_id: str | None
    profile: CloudProfile


def profile_set(version: OcppVersion, request: Mapping[str, Any], now: datetime) -> CloudSet | None:
    """The TxProfile, TxDefaultProfile or ChargePointMaxProfile (2.0.1 ChargingStationMaxProfile)
    a SetChargingProfile request sets (None: it sets another purpose). Raises ValueError naming
    the field when the profile cannot be read."""
    if version is OcppVersion.V16:
        profile = request.get("csChargingProfiles")
        connector = request.get("connectorId")
        id_key = "chargingProfileId"
    else:
        profile = request.get("chargingProfile")
        connector = request.get("evseId")
        id_key = "id"
    if not isinstance(profile, Mapping):
        return None
    purpose = _PURPOSES.get(str(profile.get("chargingProfilePurpose")))
    if purpose is None:
        return None
    schedule = profile.get("chargingSchedule")
    if version is not OcppVersion.V16:
        if not isinstance(schedule, list) or not schedule:
            raise ValueError(f"chargingProfile.chargingSchedule: expected a list, got {schedule!r}")
        schedule = schedule[0]
    if not isinstance(schedule, Mapping):
        raise ValueError(f"chargingSchedule: expected an object, got {schedule!r}")
    lowest = 1 if purpose == TX_PROFILE else 0
    if not isinstance(connector, int) or connector < lowest:
        raise ValueError(f"a {purpose} needs a connector/EVSE id >= {lowest}, got {connector!r}")
    if purpose == MAX_PROFILE and connector != 0:
        raise ValueError(f"a {purpose} is for connector/EVSE 0, got {connector!r}")
    unit = schedule.get("chargingRateUnit")
    if unit not in ("A", "W"):
        raise ValueError(f"chargingSchedule.chargingRateUnit: expected A or W, got {unit!r}")
    raw_periods = schedule.get("chargingSchedulePeriod")
    if not isinstance(raw_periods, list) or not raw_periods:
        raise ValueError(f"chargingSchedulePeriod: expected a non-empty list, got {raw_periods!r}")
    periods: list[tuple[float, float, int | None]] = []
    for i, p in enumerate(raw_periods):
        where = f"chargingSchedulePeriod[{i}]"
        if not isinstance(p, Mapping):
            raise ValueError(f"{where}: expected an object, got {p!r}")
        start, limit, phases = p.get("startPeriod"), p.get("limit"), p.get("numberPhases")
        if not _number(start) or start < 0:
            raise ValueError(f"{where}.startPeriod: expected a number >= 0, got {start!r}")
        if not _number(limit) or limit < 0:
            raise ValueError(f"{where}.limit: expected a number >= 0, got {limit!r}")
        if phases is not None and phases not in (1, 2, 3):
            raise ValueError(f"{where}.numberPhases: expected 1, 2 or 3, got {phases!r}")
        periods.append((float(start), float(limit), phases))
    periods.sort(key=lambda p: p[0])
    kind = profile.get("chargingProfileKind")
    if kind not in ("Absolute", "Relative", "Recurring"):
        raise ValueError(
            f"chargingProfileKind: expected Absolute, Relative or Recurring, got {kind!r}"
        )
    recurrency = profile.get("recurrencyKind")
    if kind == "Recurring" and recurrency not in _RECURRENCE_S:
        raise ValueError(f"recurrencyKind: expected Daily or Weekly, got {recurrency!r}")
    duration = schedule.get("duration")
    if duration is not None and (not _number(duration) or duration < 0):
        raise ValueError(f"chargingSchedule.duration: expected a number >= 0, got {duration!r}")
    tx = profile.get("transactionId")
    profile_id = profile.get(id_key)
    level = profile.get("stackLevel")
    if not isinstance(profile_id, int) or not isinstance(level, int):
        raise ValueError(
            f"{id_key} and stackLevel: expected integers, got {profile_id!r}, {level!r}"
        )
    return CloudSet(
        purpose=purpose,
        connector_id=connector,
        transaction_id=None if tx is None or purpose != TX_PROFILE else str(tx),
        profile=CloudProfile(
            profile_id=profile_id,
            stack_level=level,
            kind=kind,
            recurrency=recurrency if kind == "Recurring" else None,
            valid_from=_time(profile.get("validFrom"), "validFrom"),
            valid_to=_time(profile.get("validTo"), "validTo"),
            start=_time(schedule.get("startSchedule"), "startSchedule"),
            duration_s=None if duration is None else float(duration),
            unit=unit,
            periods=tuple(periods),
            set_utc=now,
        ),
    )


def profile_id_of(version: OcppVersion, request: Mapping[str, Any]) -> int | None:
    """The id of the profile a SetChargingProfile ``request`` sets, whatever its purpose (None:
    it has none that can be read)."""
    if version is OcppVersion.V16:
        profile, id_key = request.get("csChargingProfiles"), "chargingProfileId"
    else:
        profile, id_key = request.get("chargingProfile"), "id"
    found = profile.get(id_key) if isinstance(profile, Mapping) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clears(
    version: OcppVersion,
    request: Mapping[str, Any],
    profile: CloudProfile,
    connector_id: int,
    purpose: str = TX_PROFILE,
) -> bool:
    """Whether a ClearChargingProfile ``request`` removes ``profile`` (of ``purpose``, on
    ``connector_id``): the profile it names by id, else every criterion it gives must match;
    with none, it clears all."""
    if version is OcppVersion.V16:
        named = request.get("id")
        criteria: Mapping[str, Any] = request
        connector = request.get("connectorId")
    else:
        named = request.get("chargingProfileId")
        found = request.get("chargingProfileCriteria")
        criteria = found if isinstance(found, Mapping) else {}
        connector = criteria.get("evseId")
    if isinstance(named, int):
        # An id clears that profile alone, whatever else the request says: 1.6 3.13.5's "or";
        # 2.0.1 K10 likewise (EVerest's libocpp clears by the id alone, K10.FR.03). Read as "the
        # id, or else the criteria", a clear naming another id dropped the cloud's profile that
        # the station still held (shadowed by the edge's), and its lower limit with it.
        return named == profile.profile_id
    named_purpose = criteria.get("chargingProfilePurpose")
    wanted = None if named_purpose is None else _PURPOSES.get(str(named_purpose), "")
    level = criteria.get("stackLevel")
    return (
        (connector is None or connector == connector_id)
        and (wanted is None or wanted == purpose)
        and (level is None or level == profile.stack_level)
    )


# -- the cloud's limit at a moment --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudCap:
    """The cloud's limit on a transaction now, in amperes per phase (None: none now), the profile
    it comes from, and when it may change next (None: not while these profiles hold)."""

    limit_a: float | None
    profile_id: int | None
    until: datetime | None


def value_at(
    profile: CloudProfile, now: datetime, *, tx_started: datetime | None
) -> tuple[tuple[float, int | None] | None, datetime | None]:
    """``profile``'s period at ``now`` (its limit in the profile's unit and its phases; None:
    the profile gives no limit then) and the next moment that may change."""
    if profile.valid_to is not None and now >= profile.valid_to:
        return None, None
    if profile.valid_from is not None and now < profile.valid_from:
        return None, profile.valid_from
    if profile.kind == "Relative":
        # Relative to the transaction's start (a TxProfile's "situation-specific start point").
        base = tx_started or profile.set_utc
    else:
        base = profile.start or profile.set_utc
    offset_s = (now - base).total_seconds()
    cycle_s = _RECURRENCE_S.get(profile.recurrency or "")
    if cycle_s is not None and offset_s >= 0:
        cycles = math.floor(offset_s / cycle_s)
        base += timedelta(seconds=cycles * cycle_s)
        offset_s -= cycles * cycle_s
    if offset_s < 0:
        return None, _within(profile, base)
    cycle_end = None if cycle_s is None else base + timedelta(seconds=cycle_s)
    if profile.duration_s is not None and offset_s >= profile.duration_s:
        return None, _within(profile, cycle_end)
    current: tuple[float, int | None] | None = None
    next_s: float | None = None
    for start_s, limit, phases in profile.periods:
        if start_s <= offset_s:
            current = (limit, phases)
        else:
            next_s = start_s
            break
    ends = [
        t
        for t in (
            None if next_s is None else base + timedelta(seconds=next_s),
            None if profile.duration_s is None else base + timedelta(seconds=profile.duration_s),
            cycle_end,
            profile.valid_to,
        )
        if t is not None and t > now
    ]
    return current, min(ends, default=None)


def _within(profile: CloudProfile, moment: datetime | None) -> datetime | None:
    if moment is None or (profile.valid_to is not None and moment >= profile.valid_to):
        return None
    return moment


def default_cap_at(
    defaults: Iterable[tuple[int, CloudProfile]],
    connector_id: int,
    now: datetime,
    *,
    tx_started: datetime | None,
    nominal_voltage_v: float,
    phases: int = DEFAULT_PHASES,
) -> CloudCap:
    """The cloud's TxDefaultProfiles' limit on a transaction on ``connector_id`` (``defaults``:
    (connector, profile), 0 the station's): the connector's own where one has a period then,
    else the station's (a TxDefaultProfile on a connector overrides the station's there)."""
    own = [p for c, p in defaults if c == connector_id and connector_id != 0]
    station = [p for c, p in defaults if c == 0]
    first = cap_at(
        own, now, tx_started=tx_started, nominal_voltage_v=nominal_voltage_v, phases=phases
    )
    if first.limit_a is not None:
        return first
    second = cap_at(
        station, now, tx_started=tx_started, nominal_voltage_v=nominal_voltage_v, phases=phases
    )
    return replace(second, until=earliest(first.until, second.until))


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a < b else b


def cap_at(
    profiles: Iterable[CloudProfile],
    now: datetime,
    *,
    tx_started: datetime | None,
    nominal_voltage_v: float,
    phases: int = DEFAULT_PHASES,
) -> CloudCap:
    """The cloud's limit on the transaction at ``now``: that of its highest stack level with a
    period then (as the charge point itself would choose among them), in A per phase.
    ``phases``: the charge point's; a period in watts without ``numberPhases`` counts three, or
    these if fewer."""
    best: tuple[int, CloudProfile, float, int | None] | None = None
    until: datetime | None = None
    for profile in profiles:
        value, changes = value_at(profile, now, tx_started=tx_started)
        if changes is not None and (until is None or changes < until):
            until = changes
        if value is not None and (best is None or profile.stack_level > best[0]):
            best = (profile.stack_level, profile, value[0], value[1])
    if best is None:
        return CloudCap(limit_a=None, profile_id=None, until=until)
    _, profile, limit, period_phases = best
    if profile.unit == "W":
        absent = min(DEFAULT_PHASES, max(1, phases))  # ... or the charge point's, if fewer
        limit = limit / ((period_phases or absent) * nominal_voltage_v)
    return CloudCap(limit_a=limit, profile_id=profile.profile_id, until=until)
