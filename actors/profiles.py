"""Charging profiles as OCPP payloads, and when a new limit is worth sending. Pure: no I/O.

What works in the field (ENERGY-NOTES.md): one TxProfile per transaction with a FIXED profile id per
connector (so a new one replaces the old, never piles up ids or stack levels), current in A with
``numberPhases`` explicit, one period starting at 0; power in W only where the charge point does
not take A; a safe TxDefaultProfile on connector 0 and a ChargePointMaxProfile installed at boot;
stack levels within the charge point's ChargeProfileMaxStackLevel. Never "clear all": it would
remove the safety profile too.

The edge's profiles sit at the charge point's highest stack level so that, within a purpose, the
local safety limit wins over a cloud profile (across purposes the charge point takes the minimum
anyway). Their ids come from ``profile_id_base`` so they do not collide with the cloud's.

:class:`ChargePointCapabilities` is an input: the broker's ChargePoint actor fills it from
GetConfiguration (1.6, :func:`capabilities_from_v16`) or GetVariables (2.0.1,
:func:`capabilities_from_v201`) and from what the charge point rejected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from actors.energy_messages import ConnectorLimit
from actors.utc import format_utc
from drivers.ocpp.codes import OcppVersion

Unit = Literal["A", "W"]
ACTION = "SetChargingProfile"
DEFAULT_PROFILE_ID_BASE = 900_000
HYSTERESIS_A = 0.5
_RESOLUTION_A = 0.1  # 1.6 limits are multiples of 0.1
_TENTHS_PER_A = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointCapabilities:
    """What a charge point takes. ``rate_units``: the allowed ``chargingRateUnit`` values, in
    order of preference ("A" first: the allocation is in A and needs no voltage guess)."""

    max_stack_level: int = 0
    rate_units: tuple[Unit, ...] = ("A", "W")
    supports_max_profile: bool = True
    nominal_voltage_v: float = 230.0
    profile_id_base: int = DEFAULT_PROFILE_ID_BASE

    def __post_init__(self) -> None:
        if self.max_stack_level < 0:
            raise ValueError(f"max_stack_level must be >= 0, got {self.max_stack_level!r}")
        if not self.rate_units or any(u not in ("A", "W") for u in self.rate_units):
            raise ValueError(
                f"rate_units must be a non-empty list of 'A'/'W', got {self.rate_units!r}"
            )
        if not self.nominal_voltage_v > 0:
            raise ValueError(f"nominal_voltage_v must be > 0, got {self.nominal_voltage_v!r}")
        if self.profile_id_base < 1:
            raise ValueError(f"profile_id_base must be >= 1, got {self.profile_id_base!r}")

    @property
    def unit(self) -> Unit:
        return "A" if "A" in self.rate_units else "W"

    @property
    def stack_level(self) -> int:
        return self.max_stack_level


# --- capabilities from the charge point's configuration --------------------------------------

_V16_UNITS: Mapping[str, Unit] = {"current": "A", "power": "W", "a": "A", "w": "W"}


def _units(text: str, where: str) -> tuple[Unit, ...]:
    units: list[Unit] = []
    for part in text.replace(";", ",").split(","):
        word = part.strip().lower()
        if not word:
            continue
        unit = _V16_UNITS.get(word)
        if unit is None:
            raise ValueError(f"{where}: unknown charging rate unit {part.strip()!r}")
        if unit not in units:
            units.append(unit)
    if not units:
        raise ValueError(f"{where}: no charging rate unit in {text!r}")
    units.sort(key=lambda u: u != "A")
    return tuple(units)


def _stack_level(text: str, where: str) -> int:
    try:
        level = int(text.strip())
    except ValueError:
        raise ValueError(f"{where}: expected an integer, got {text!r}") from None
    return max(0, level)


def _read_keys(
    level: str | None, units: str | None, names: tuple[str, str], overrides: Mapping[str, Any]
) -> tuple[ChargePointCapabilities, tuple[str, ...]]:
    """Each key read alone: one that cannot be read keeps its default and is named in the
    second part (a rate unit not understood reset the stack level read beside it to 0)."""
    fields: dict[str, Any] = {}
    unread: list[str] = []
    try:
        if level is not None:
            fields["max_stack_level"] = _stack_level(level, names[0])
    except ValueError as e:
        unread.append(f"{e}: the default for it taken (stack level 0)")
    try:
        if units is not None:
            fields["rate_units"] = _units(units, names[1])
    except ValueError as e:
        unread.append(f"{e}: the default for it taken (A or W)")
    fields.update(overrides)
    return ChargePointCapabilities(**fields), tuple(unread)


def capabilities_from_v16(
    configuration_key: Iterable[Mapping[str, Any]], **overrides: Any
) -> tuple[ChargePointCapabilities, tuple[str, ...]]:
    """From a 1.6 GetConfiguration.conf ``configurationKey`` list. Missing keys keep the safe
    defaults (stack level 0, both units allowed), and so does a key whose value cannot be read:
    the second part says which and why."""
    values = {
        str(item.get("key", "")): str(item.get("value", ""))
        for item in configuration_key
        if item.get("value") is not None
    }
    return _read_keys(
        values.get("ChargeProfileMaxStackLevel"),
        values.get("ChargingScheduleAllowedChargingRateUnit"),
        ("ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit"),
        overrides,
    )


def capabilities_from_v201(
    variables: Mapping[str, str], **overrides: Any
) -> tuple[ChargePointCapabilities, tuple[str, ...]]:
    """From 2.0.1 GetVariables answers keyed "Component.Variable": ``SmartChargingCtrlr.
    ProfileStackLevel`` and ``SmartChargingCtrlr.RateUnit`` (a list such as "A,W"). As
    :func:`capabilities_from_v16` for what cannot be read."""
    return _read_keys(
        variables.get("SmartChargingCtrlr.ProfileStackLevel"),
        variables.get("SmartChargingCtrlr.RateUnit"),
        ("SmartChargingCtrlr.ProfileStackLevel", "SmartChargingCtrlr.RateUnit"),
        overrides,
    )


# --- profile ids and values ------------------------------------------------------------------


def tx_default_profile_id(caps: ChargePointCapabilities) -> int:
    return caps.profile_id_base


def max_profile_id(caps: ChargePointCapabilities) -> int:
    return caps.profile_id_base + 1


def is_edge_profile_id(caps: ChargePointCapabilities, profile_id: int) -> bool:
    """One of the ids the edge's profiles take (:func:`tx_default_profile_id`,
    :func:`max_profile_id`, :func:`tx_profile_id` of any connector)."""
    offset = profile_id - caps.profile_id_base
    return offset in (0, 1) or 100 < offset < 1000


def tx_profile_id(caps: ChargePointCapabilities, connector_id: int) -> int:
    """Fixed per connector: every TxProfile for this connector replaces the previous one."""
    if connector_id < 1:
        raise ValueError(f"a TxProfile needs a connector id >= 1, got {connector_id!r}")
    return caps.profile_id_base + 100 + connector_id


def round_limit_a(limit_a: float) -> float:
    """Down to 0.1 A (never offer more than allocated), as a float 1.6's ``multipleOf`` takes.

    ``tenths / 10`` (an int divided, correctly rounded) is the float nearest to the decimal,
    as ``round(tenths * 0.1, 1)`` was, at a fifth of the cost (70 against 315 ns; it runs three
    times per SetChargingProfile and twice per connector in the allocator's batch)."""
    if not math.isfinite(limit_a) or limit_a <= 0:
        return 0.0
    tenths = math.floor(limit_a / _RESOLUTION_A + 1e-6)
    return tenths / _TENTHS_PER_A


def schedule_limit(
    limit_a: float, phases: int, caps: ChargePointCapabilities, car_phases: int = 0
) -> tuple[Unit, float]:
    """The unit and value to put in a period: amperes per phase, or whole watts over the period's
    phases (:func:`period_phases`). A charge point turns watts back into amperes per phase over
    the period's ``numberPhases`` (OCPP: power / (voltage x numberPhases)), the same way."""
    if phases not in (1, 2, 3):
        raise ValueError(f"phases must be 1, 2 or 3, got {phases!r}")
    amps = round_limit_a(limit_a)
    if caps.unit == "A":
        return "A", amps
    over = period_phases("W", phases, car_phases)
    return "W", float(math.floor(amps * over * caps.nominal_voltage_v))


def period_phases(unit: Unit, phases: int, car_phases: int) -> int:
    """``numberPhases`` of a period: the charge point's phases; in watts, those the car was seen
    drawing on where fewer (``car_phases``, 0: not known). Where only W is taken, charge points
    differ in how they spread watts: by the period's ``numberPhases`` as OCPP says, or over the
    phases the car uses (evcc-io/evcc#9883). With both the car's, a 1-phase car gets its amperes
    either way; with three, one of them would let it draw three phases' worth on its one."""
    return car_phases if unit == "W" and 0 < car_phases < phases else phases


def _period(
    limit_a: float, phases: int, caps: ChargePointCapabilities, car_phases: int = 0
) -> tuple[Unit, dict[str, Any]]:
    unit, value = schedule_limit(limit_a, phases, caps, car_phases)
    return unit, {
        "startPeriod": 0,
        "limit": value,
        "numberPhases": period_phases(unit, phases, car_phases),
    }


# --- 1.6 -------------------------------------------------------------------------------------


def _profile_v16(
    *,
    profile_id: int,
    purpose: str,
    kind: str,
    limit_a: float,
    phases: int,
    caps: ChargePointCapabilities,
    start_utc: datetime | None = None,
    transaction_id: int | None = None,
    car_phases: int = 0,
) -> dict[str, Any]:
    unit, period = _period(limit_a, phases, caps, car_phases)
    schedule: dict[str, Any] = {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
    if start_utc is not None:
        schedule["startSchedule"] = format_utc(start_utc)
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": caps.stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


def tx_profile_v16(
    *,
    connector_id: int,
    limit_a: float,
    phases: int,
    caps: ChargePointCapabilities,
    transaction_id: int | None = None,
    car_phases: int = 0,
) -> dict[str, Any]:
    """SetChargingProfile.req: the TxProfile of the transaction running on ``connector_id``
    (``car_phases``: :func:`schedule_limit`)."""
    return {
        "connectorId": connector_id,
        "csChargingProfiles": _profile_v16(
            profile_id=tx_profile_id(caps, connector_id),
            purpose="TxProfile",
            kind="Relative",
            limit_a=limit_a,
            phases=phases,
            caps=caps,
            transaction_id=transaction_id,
            car_phases=car_phases,
        ),
    }


# --- 2.0.1 -----------------------------------------------------------------------------------


def _profile_v201(
    *,
    profile_id: int,
    purpose: str,
    kind: str,
    limit_a: float,
    phases: int,
    caps: ChargePointCapabilities,
    start_utc: datetime | None = None,
    transaction_id: str | None = None,
    car_phases: int = 0,
) -> dict[str, Any]:
    unit, period = _period(limit_a, phases, caps, car_phases)
    schedule: dict[str, Any] = {
        "id": profile_id,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [period],
    }
    if start_utc is not None:
        schedule["startSchedule"] = format_utc(start_utc)
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": caps.stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


def tx_profile_v201(
    *,
    evse_id: int,
    limit_a: float,
    phases: int,
    caps: ChargePointCapabilities,
    transaction_id: str,
    car_phases: int = 0,
) -> dict[str, Any]:
    """SetChargingProfileRequest: the TxProfile of the transaction on ``evse_id`` (2.0.1 requires
    the transaction id on a TxProfile, K01.FR.03)."""
    if not transaction_id:
        raise ValueError(f"a 2.0.1 TxProfile needs the transaction id (evse {evse_id})")
    return {
        "evseId": evse_id,
        "chargingProfile": _profile_v201(
            profile_id=tx_profile_id(caps, evse_id),
            purpose="TxProfile",
            kind="Relative",
            limit_a=limit_a,
            phases=phases,
            caps=caps,
            transaction_id=transaction_id,
            car_phases=car_phases,
        ),
    }


# --- what the broker calls -------------------------------------------------------------------


def tx_profile_request(
    limit: ConnectorLimit,
    *,
    version: OcppVersion,
    caps: ChargePointCapabilities,
    transaction_id: str | None,
) -> dict[str, Any]:
    """The SetChargingProfile payload for one :class:`ConnectorLimit` (its ``connector_id`` is
    the 1.6 connector or the 2.0.1 EVSE). ``transaction_id`` as the charge point knows it: a 1.6
    integer as text (left out if it is not one), a 2.0.1 string (required)."""
    if version is OcppVersion.V16:
        tx: int | None = None
        if transaction_id is not None:
            try:
                tx = int(transaction_id)
            except ValueError:
                tx = None
        return tx_profile_v16(
            connector_id=limit.connector_id,
            limit_a=limit.limit_a,
            phases=limit.phases,
            caps=caps,
            transaction_id=tx,
            car_phases=limit.car_phases,
        )
    return tx_profile_v201(
        evse_id=limit.connector_id,
        limit_a=limit.limit_a,
        phases=limit.phases,
        caps=caps,
        transaction_id=transaction_id or "",
        car_phases=limit.car_phases,
    )


_LIMIT_HOLE = "\u0000 the limit \u0000"  # stands in for the limit while a template is made


@dataclass(frozen=True, slots=True)
class TxProfileTemplate:
    """One transaction's TxProfile payload as JSON text with a hole where the limit goes.

    The broker writes a TxProfile to every charge point of a batch; building the payload's nested
    dicts and serialising them was half of what turning a limit into a frame cost (2.3 of 4.5 us;
    about 1 ms of the broker's 20-22 ms of CPU for 500 frames, bench/fanout.py). Only the limit
    changes from one batch to the next, so each connector keeps its template (until the
    transaction, the capabilities, the version or the phases change).
    ``json(limit_a)`` is exactly ``orjson.dumps(tx_profile_request(...))`` for that limit."""

    head: str
    tail: str
    phases: int
    caps: ChargePointCapabilities
    car_phases: int = 0

    def json(self, limit_a: float) -> str:
        _, value = schedule_limit(limit_a, self.phases, self.caps, self.car_phases)
        return self.head + orjson.dumps(value).decode() + self.tail


def tx_profile_template(
    limit: ConnectorLimit,
    *,
    version: OcppVersion,
    caps: ChargePointCapabilities,
    transaction_id: str | None,
) -> TxProfileTemplate | None:
    """The template of :func:`tx_profile_request`'s payload for this connector and transaction
    (None in the unlikely case that the hole's text occurs elsewhere in it: build the payload
    each time then)."""
    payload = tx_profile_request(limit, version=version, caps=caps, transaction_id=transaction_id)
    if version is OcppVersion.V16:
        periods = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    else:
        periods = payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"]
    (period,) = periods
    period["limit"] = _LIMIT_HOLE
    head, hole, tail = orjson.dumps(payload).decode().partition(orjson.dumps(_LIMIT_HOLE).decode())
    if not hole or hole in head or hole in tail:
        return None
    return TxProfileTemplate(
        head=head, tail=tail, phases=limit.phases, caps=caps, car_phases=limit.car_phases
    )


def boot_profiles(
    *,
    version: OcppVersion,
    caps: ChargePointCapabilities,
    default_limit_a: float,
    max_limit_a: float,
    phases: int,
    now_utc: datetime,
) -> list[dict[str, Any]]:
    """SetChargingProfile payloads to install when a charge point boots (or reconnects), on
    connector/EVSE 0: the safe TxDefaultProfile (what a new transaction gets until its own
    TxProfile arrives: no full power at session start), then, where supported, the max profile
    (the charge point's own cap; Absolute from ``now_utc``, as a max profile may not be Relative,
    2.0.1 K01.FR.38)."""
    v16 = version is OcppVersion.V16
    build = _profile_v16 if v16 else _profile_v201
    key = ("connectorId", "csChargingProfiles") if v16 else ("evseId", "chargingProfile")
    profiles = [
        build(
            profile_id=tx_default_profile_id(caps),
            purpose="TxDefaultProfile",
            kind="Relative",
            limit_a=default_limit_a,
            phases=phases,
            caps=caps,
        )
    ]
    if caps.supports_max_profile:
        profiles.append(
            build(
                profile_id=max_profile_id(caps),
                purpose="ChargePointMaxProfile" if v16 else "ChargingStationMaxProfile",
                kind="Absolute",
                limit_a=max_limit_a,
                phases=phases,
                caps=caps,
                start_utc=now_utc,
            )
        )
    return [{key[0]: 0, key[1]: p} for p in profiles]


def worth_sending(
    new_a: float, last_sent_a: float | None, *, hysteresis_a: float = HYSTERESIS_A
) -> bool:
    """Whether a new limit should go to the charge point: always the first one and every
    decrease (safety, and pausing), an increase only once it is ``hysteresis_a`` or more (so a
    car is not fed a stream of 0.1 A steps), and any resume from 0."""
    new = round_limit_a(new_a)
    if last_sent_a is None:
        return True
    last = round_limit_a(last_sent_a)
    if new < last:
        return True
    if last == 0.0:
        return new > 0.0
    return new - last >= hysteresis_a - 1e-9
