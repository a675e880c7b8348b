"""actors.cloud_profiles: reading the cloud's TxProfiles, their limit at a moment, what clears
them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.cloud_profiles import (
    CloudProfile,
    cap_at,
    clears,
    default_cap_at,
    profile_set,
    value_at,
)
from drivers.ocpp.codes import OcppVersion
from sim.profile_payloads import profile_v16, profile_v201

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
V16, V201 = OcppVersion.V16, OcppVersion.V201
MAX = "ChargePointMaxProfile"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def profile(**changes: Any) -> CloudProfile:
    base = CloudProfile(
        profile_id=42,
        stack_level=0,
        kind="Absolute",
        recurrency=None,
        valid_from=None,
        valid_to=None,
        start=T0,
        duration_s=None,
        unit="A",
        periods=((0.0, 16.0, None), (600.0, 8.0, None)),
        set_utc=T0,
    )
    return replace(base, **changes)


def v16_request(**kwargs: Any) -> dict[str, Any]:
    return {"connectorId": 1, "csChargingProfiles": profile_v16(**kwargs)}


def v201_request(**kwargs: Any) -> dict[str, Any]:
    return {"evseId": 1, "chargingProfile": profile_v201(**kwargs)}


# -- reading the request ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "request_"),
    [
        pytest.param(V16, v16_request(limit=8.0, profile_id=7, transaction_id=3), id="1.6"),
        pytest.param(V201, v201_request(limit=8.0, profile_id=7, transaction_id="3"), id="2.0.1"),
    ],
)
def test_a_tx_profile_is_read_in_either_version(version: OcppVersion, request_: Any) -> None:
    found = profile_set(version, request_, T0)
    assert found is not None
    assert (found.connector_id, found.transaction_id) == (1, "3")
    p = found.profile
    assert (p.profile_id, p.stack_level, p.kind, p.unit) == (7, 0, "Relative", "A")
    assert p.periods == ((0.0, 8.0, 3),)
    assert p.set_utc == T0


@pytest.mark.parametrize(
    ("version", "request_"),
    [
        pytest.param(
            V201,
            v201_request(limit=8.0, purpose="ChargingStationExternalConstraints"),
            id="2.0.1-external",
        ),
        pytest.param(V16, {"connectorId": 1}, id="no-profile"),
    ],
)
def test_other_purposes_are_not_read(version: OcppVersion, request_: Any) -> None:
    assert profile_set(version, request_, T0) is None


@pytest.mark.parametrize(
    ("version", "request_"),
    [
        pytest.param(
            V16,
            {"connectorId": 0, "csChargingProfiles": profile_v16(limit=8.0, purpose=MAX)},
            id="1.6",
        ),
        pytest.param(
            V201,
            {"evseId": 0, "chargingProfile": profile_v201(limit=8.0, purpose=MAX)},
            id="2.0.1-charging-station-max",
        ),
    ],
)
def test_a_max_profile_is_read_on_the_station_alone(version: OcppVersion, request_: Any) -> None:
    found = profile_set(version, request_, T0)
    assert found is not None
    assert (found.purpose, found.connector_id, found.transaction_id) == (MAX, 0, None)
    with pytest.raises(ValueError, match="a ChargePointMaxProfile is for connector/EVSE 0"):
        profile_set(version, {**request_, "connectorId": 1, "evseId": 1}, T0)


@pytest.mark.parametrize(
    ("version", "request_"),
    [
        pytest.param(
            V16,
            {
                "connectorId": 0,
                "csChargingProfiles": profile_v16(
                    limit=8.0, purpose="TxDefaultProfile", transaction_id=3
                ),
            },
            id="1.6",
        ),
        pytest.param(
            V201,
            {"evseId": 0, "chargingProfile": profile_v201(limit=8.0, purpose="TxDefaultProfile")},
            id="2.0.1",
        ),
    ],
)
def test_a_tx_default_profile_is_read_on_the_station_too(
    version: OcppVersion, request_: Any
) -> None:
    found = profile_set(version, request_, T0)
    assert found is not None
    assert (found.purpose, found.connector_id, found.transaction_id) == (
        "TxDefaultProfile",
        0,
        None,
    ), "a default belongs to no transaction"
    with pytest.raises(ValueError, match="a TxProfile needs a connector/EVSE id >= 1"):
        profile_set(V16, v16_request(limit=8.0) | {"connectorId": 0}, T0)


def _bad(field: str, value: Any) -> dict[str, Any]:
    request = v16_request(limit=8.0)
    target = request["csChargingProfiles"]
    if field in ("chargingRateUnit", "duration"):
        target = target["chargingSchedule"]
    elif field in ("limit", "startPeriod", "numberPhases"):
        target = target["chargingSchedule"]["chargingSchedulePeriod"][0]
    elif field == "connectorId":
        target = request
    target[field] = value
    return request


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("chargingRateUnit", "kW", "chargingRateUnit", id="unit"),
        pytest.param("limit", -1, r"chargingSchedulePeriod\[0\].limit", id="negative-limit"),
        pytest.param("startPeriod", "0", r"\[0\].startPeriod", id="text-start"),
        pytest.param("numberPhases", 4, "numberPhases", id="phases"),
        pytest.param("chargingProfileKind", "Sometimes", "chargingProfileKind", id="kind"),
        pytest.param("duration", -5, "duration", id="duration"),
        pytest.param("connectorId", -1, "connector", id="connector-negative"),
    ],
)
def test_an_unreadable_profile_names_the_field(field: str, value: Any, message: str) -> None:
    request = _bad(field, value)
    with pytest.raises(ValueError, match=message):
        profile_set(V16, request, T0)


def test_a_recurring_profile_needs_its_recurrency() -> None:
    request = v16_request(limit=8.0, kind="Recurring")
    with pytest.raises(ValueError, match="recurrencyKind"):
        profile_set(V16, request, T0)
    request["csChargingProfiles"]["recurrencyKind"] = "Daily"
    found = profile_set(V16, request, T0)
    assert found is not None
    assert found.profile.recurrency == "Daily"


def test_the_record_round_trips() -> None:
    p = profile(
        kind="Recurring",
        recurrency="Weekly",
        valid_from=at(-10),
        valid_to=at(86_400),
        duration_s=3600.0,
        unit="W",
        periods=((0.0, 11_000.0, 3), (60.0, 4_200.0, 1)),
    )
    assert CloudProfile.from_doc(p.to_doc()) == p
    with pytest.raises(ValueError, match="version"):
        CloudProfile.from_doc({**p.to_doc(), "v": 99})


# -- its limit at a moment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "seconds", "value", "until_s"),
    [
        pytest.param(profile(), 0, 16.0, 600, id="first-period"),
        pytest.param(profile(), 599.9, 16.0, 600, id="just-before-the-second"),
        pytest.param(profile(), 600, 8.0, None, id="last-period-lasts"),
        pytest.param(profile(start=at(100)), 50, None, 100, id="not-begun"),
        pytest.param(profile(duration_s=900.0), 700, 8.0, 900, id="until-its-duration"),
        pytest.param(profile(duration_s=900.0), 900, None, None, id="after-its-duration"),
        pytest.param(profile(valid_from=at(30)), 10, None, 30, id="before-valid-from"),
        pytest.param(profile(valid_to=at(300)), 10, 16.0, 300, id="valid-to-ends-it"),
        pytest.param(profile(valid_to=at(300)), 300, None, None, id="after-valid-to"),
        pytest.param(profile(periods=((60.0, 10.0, None),)), 0, None, 60, id="first-period-later"),
        pytest.param(
            profile(kind="Recurring", recurrency="Daily", duration_s=3600.0),
            86_400 * 3 + 700,
            8.0,
            86_400 * 3 + 3600,
            id="daily-fourth-day",
        ),
        pytest.param(
            profile(kind="Recurring", recurrency="Daily", duration_s=3600.0),
            86_400 + 4000,
            None,
            86_400 * 2,
            id="daily-after-its-hour",
        ),
        pytest.param(
            profile(kind="Recurring", recurrency="Weekly"),
            7 * 86_400 + 10,
            16.0,
            7 * 86_400 + 600,
            id="weekly-second-week",
        ),
    ],
)
def test_value_at(
    p: CloudProfile, seconds: float, value: float | None, until_s: float | None
) -> None:
    found, until = value_at(p, at(seconds), tx_started=None)
    assert (None if found is None else found[0]) == value
    assert until == (None if until_s is None else at(until_s))


def test_a_relative_profile_counts_from_the_transactions_start() -> None:
    p = profile(kind="Relative", start=None, set_utc=at(500))
    assert value_at(p, at(650), tx_started=at(0))[0] == (8.0, None)
    assert value_at(p, at(650), tx_started=None)[0] == (16.0, None), "from when it was set"


def test_the_highest_stack_level_with_a_period_then_gives_the_cap() -> None:
    low = profile(profile_id=1, stack_level=0, periods=((0.0, 6.0, None),))
    high = profile(profile_id=2, stack_level=3, start=at(100), duration_s=100.0)
    cap = cap_at([low, high], at(50), tx_started=None, nominal_voltage_v=230.0)
    assert (cap.limit_a, cap.profile_id, cap.until) == (6.0, 1, at(100))
    cap = cap_at([low, high], at(150), tx_started=None, nominal_voltage_v=230.0)
    assert (cap.limit_a, cap.profile_id, cap.until) == (16.0, 2, at(200))
    cap = cap_at([low, high], at(200), tx_started=None, nominal_voltage_v=230.0)
    assert (cap.limit_a, cap.profile_id, cap.until) == (6.0, 1, None)


@pytest.mark.parametrize(
    ("phases", "cp_phases", "expected_a"),
    [
        pytest.param(None, 3, 11_040 / 3 / 230, id="three-by-default"),
        pytest.param(1, 3, 11_040 / 230, id="one"),
        pytest.param(None, 1, 11_040 / 230, id="a-one-phase-charge-point-by-default"),
        pytest.param(None, 2, 11_040 / 2 / 230, id="a-two-phase-charge-point-by-default"),
        pytest.param(3, 1, 11_040 / 3 / 230, id="three-said-is-three"),
    ],
)
def test_watts_become_amperes_per_phase(
    phases: int | None, cp_phases: int, expected_a: float
) -> None:
    p = profile(unit="W", periods=((0.0, 11_040.0, phases),))
    cap = cap_at([p], at(0), tx_started=None, nominal_voltage_v=230.0, phases=cp_phases)
    assert cap.limit_a == pytest.approx(expected_a)


def test_a_connectors_own_default_overrides_the_stations_while_it_has_a_period() -> None:
    station = profile(profile_id=1, periods=((0.0, 10.0, None),))
    own = profile(profile_id=2, start=at(100), duration_s=100.0, periods=((0.0, 7.0, None),))
    defaults = [(0, station), (1, own)]

    def cap(connector: int, seconds: float) -> tuple[float | None, int | None, datetime | None]:
        c = default_cap_at(
            defaults, connector, at(seconds), tx_started=None, nominal_voltage_v=230.0
        )
        return c.limit_a, c.profile_id, c.until

    assert cap(1, 50) == (10.0, 1, at(100)), "the station's until its own begins"
    assert cap(1, 150) == (7.0, 2, at(200))
    assert cap(1, 250) == (10.0, 1, None)
    assert cap(2, 150) == (10.0, 1, None), "another connector: the station's"
    assert cap(0, 150) == (10.0, 1, None), "the station itself"
    assert default_cap_at([], 1, at(0), tx_started=None, nominal_voltage_v=230.0).limit_a is None


def test_no_profiles_no_cap() -> None:
    cap = cap_at([], at(0), tx_started=None, nominal_voltage_v=230.0)
    assert (cap.limit_a, cap.profile_id, cap.until) == (None, None, None)


@given(
    starts=st.lists(st.integers(0, 3600), min_size=1, max_size=5, unique=True),
    duration=st.one_of(st.none(), st.integers(1, 7200)),
    recurring=st.booleans(),
    t=st.integers(-100, 3 * 86_400),
)
def test_the_value_holds_until_the_moment_it_names(
    starts: list[int], duration: int | None, recurring: bool, t: int
) -> None:
    """Between ``now`` and ``until`` the value does not change: the broker sends nothing in
    between and must not miss a change."""
    p = profile(
        periods=tuple((float(s), float(6 + i), None) for i, s in enumerate(sorted(starts))),
        duration_s=None if duration is None else float(duration),
        kind="Recurring" if recurring else "Absolute",
        recurrency="Daily" if recurring else None,
    )
    value, until = value_at(p, at(t), tx_started=None)
    end = until if until is not None else at(t + 4 * 86_400)
    assert end > at(t)
    step = (end - at(t)) / 7
    for k in range(1, 7):
        assert value_at(p, at(t) + step * k, tx_started=None)[0] == value


# -- what clears it -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "request_", "cleared"),
    [
        pytest.param(V16, {}, True, id="1.6-all"),
        pytest.param(V16, {"id": 42}, True, id="1.6-its-id"),
        pytest.param(V16, {"id": 7}, False, id="1.6-another-id"),
        pytest.param(V16, {"id": 7, "connectorId": 1}, False, id="1.6-an-id-alone-counts"),
        pytest.param(V16, {"connectorId": 1}, True, id="1.6-its-connector"),
        pytest.param(V16, {"connectorId": 2}, False, id="1.6-another-connector"),
        pytest.param(V16, {"connectorId": 0}, False, id="1.6-the-station-only"),
        pytest.param(V16, {"chargingProfilePurpose": "TxDefaultProfile"}, False, id="1.6-purpose"),
        pytest.param(
            V16, {"chargingProfilePurpose": "TxProfile", "stackLevel": 2}, True, id="1.6-level"
        ),
        pytest.param(V16, {"stackLevel": 0}, False, id="1.6-another-level"),
        pytest.param(V201, {"chargingProfileCriteria": {}}, True, id="2.0.1-all"),
        pytest.param(V201, {"chargingProfileId": 42}, True, id="2.0.1-its-id"),
        pytest.param(V201, {"chargingProfileId": 7}, False, id="2.0.1-another-id"),
        pytest.param(
            V201,
            {"chargingProfileId": 7, "chargingProfileCriteria": {"evseId": 1}},
            False,
            id="2.0.1-an-id-alone-counts",
        ),
        pytest.param(
            V201,
            {"chargingProfileId": 42, "chargingProfileCriteria": {"evseId": 2}},
            True,
            id="2.0.1-its-id-whatever-the-criteria",
        ),
        pytest.param(V201, {"chargingProfileCriteria": {"evseId": 2}}, False, id="2.0.1-evse"),
        pytest.param(
            V201,
            {"chargingProfileCriteria": {"chargingProfilePurpose": "TxProfile", "stackLevel": 2}},
            True,
            id="2.0.1-purpose-and-level",
        ),
    ],
)
def test_what_a_clear_removes(version: OcppVersion, request_: Any, cleared: bool) -> None:
    assert clears(version, request_, profile(stack_level=2), 1) is cleared


@pytest.mark.parametrize(
    ("version", "request_", "cleared"),
    [
        pytest.param(V16, {"chargingProfilePurpose": "TxDefaultProfile"}, True, id="1.6-purpose"),
        pytest.param(V16, {"chargingProfilePurpose": "TxProfile"}, False, id="1.6-other-purpose"),
        pytest.param(V16, {"connectorId": 0}, True, id="1.6-the-station"),
        pytest.param(V16, {"connectorId": 1}, False, id="1.6-a-connector"),
        pytest.param(
            V201,
            {
                "chargingProfileCriteria": {
                    "evseId": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                }
            },
            True,
            id="2.0.1-station-default",
        ),
    ],
)
def test_what_a_clear_removes_of_a_station_default(
    version: OcppVersion, request_: Any, cleared: bool
) -> None:
    assert clears(version, request_, profile(), 0, "TxDefaultProfile") is cleared


@pytest.mark.parametrize(
    ("version", "request_", "cleared"),
    [
        pytest.param(V16, {"chargingProfilePurpose": MAX}, True, id="1.6-purpose"),
        pytest.param(V16, {"chargingProfilePurpose": "TxDefaultProfile"}, False, id="1.6-other"),
        pytest.param(
            V201,
            {"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile"}},
            True,
            id="2.0.1-its-name",
        ),
    ],
)
def test_what_a_clear_removes_of_a_max_profile(
    version: OcppVersion, request_: Any, cleared: bool
) -> None:
    assert clears(version, request_, profile(), 0, MAX) is cleared


def test_a_period_that_is_not_an_object_is_named() -> None:
    request = v16_request(limit=8.0)
    request["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] = [8.0]
    with pytest.raises(ValueError, match=r"chargingSchedulePeriod\[0\]: expected an object"):
        profile_set(V16, request, T0)
