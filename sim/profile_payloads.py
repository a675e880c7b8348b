"""Charging profiles as they go over the wire (camelCase), for the simulated cloud and for tests."""

from __future__ import annotations

from typing import Any


def profile_v16(
    *,
    limit: float,
    unit: str = "A",
    profile_id: int = 1,
    stack_level: int = 0,
    purpose: str = "TxProfile",
    kind: str = "Relative",
    number_phases: int | None = 3,
    transaction_id: int | None = None,
    periods: list[tuple[int, float]] | None = None,
) -> dict[str, Any]:
    """A 1.6 ``csChargingProfiles``; ``periods`` (start_s, limit) overrides the single ``limit``."""
    schedule_periods = []
    for start_s, value in periods or [(0, limit)]:
        period: dict[str, Any] = {"startPeriod": start_s, "limit": round(value, 1)}
        if number_phases is not None:
            period["numberPhases"] = number_phases
        schedule_periods.append(period)
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": schedule_periods},
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


def profile_v201(
    *,
    limit: float,
    unit: str = "A",
    profile_id: int = 1,
    stack_level: int = 0,
    purpose: str = "TxProfile",
    kind: str = "Relative",
    number_phases: int | None = 3,
    transaction_id: str | None = None,
    periods: list[tuple[int, float]] | None = None,
) -> dict[str, Any]:
    """A 2.0.1 ``chargingProfile`` with one schedule."""
    if purpose == "ChargePointMaxProfile":
        purpose = "ChargingStationMaxProfile"
    schedule_periods = []
    for start_s, value in periods or [(0, limit)]:
        period: dict[str, Any] = {"startPeriod": start_s, "limit": round(value, 1)}
        if number_phases is not None:
            period["numberPhases"] = number_phases
        schedule_periods.append(period)
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [
            {"id": profile_id, "chargingRateUnit": unit, "chargingSchedulePeriod": schedule_periods}
        ],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


def profile_for(protocol: str, **kwargs: Any) -> dict[str, Any]:
    """The profile in the shape ``protocol`` ("ocpp1.6" or "ocpp2.0.1") expects."""
    if protocol == "ocpp1.6":
        return profile_v16(**kwargs)
    return profile_v201(**kwargs)
