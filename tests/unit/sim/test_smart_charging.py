"""Charging profiles as the simulated charge point applies them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sim.smart_charging import (
    ChargingProfile,
    CompositePeriod,
    Electrical,
    ProfileError,
    ProfileStore,
    Purpose,
    SchedulePeriod,
    profile_from_v16,
    profile_from_v201,
)

T0 = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)
E3 = Electrical(phases=3, voltage_v=230.0)


def prof(
    pid: int,
    purpose: Purpose,
    limit: float,
    *,
    connector: int = 1,
    stack: int = 0,
    unit: str = "A",
    phases: int | None = None,
    duration_s: int | None = None,
    tx: str | None = None,
    periods: tuple[SchedulePeriod, ...] | None = None,
    kind: str = "Absolute",
    start: datetime = T0,
    recurrency: str | None = None,
) -> ChargingProfile:
    return ChargingProfile(
        profile_id=pid,
        connector_id=connector,
        stack_level=stack,
        purpose=purpose,
        kind=kind,
        recurrency=recurrency,
        rate_unit=unit,
        periods=periods or (SchedulePeriod(start_s=0, limit=limit, number_phases=phases),),
        installed_utc=T0,
        start_schedule_utc=start,
        duration_s=duration_s,
        transaction_id=tx,
    )


def limit_at(
    profiles: list[ChargingProfile],
    at: datetime = T0 + timedelta(seconds=1),
    *,
    connector: int = 1,
    tx_start: datetime | None = T0,
    tx_id: str | None = "7",
) -> float | None:
    store = ProfileStore()
    for p in profiles:
        store.install(p)
    return store.limit_a(connector, at, tx_start_utc=tx_start, tx_id=tx_id, electrical=E3)


TX, DEF, MAX = Purpose.TX, Purpose.TX_DEFAULT, Purpose.CHARGE_POINT_MAX


@pytest.mark.parametrize(
    ("profiles", "expected_a"),
    [
        pytest.param([], None, id="nothing-installed"),
        pytest.param([prof(1, DEF, 16), prof(2, MAX, 10, connector=0)], 10.0, id="station-caps"),
        pytest.param([prof(1, DEF, 10), prof(2, MAX, 16, connector=0)], 10.0, id="default-lower"),
        pytest.param([prof(1, DEF, 10), prof(2, TX, 20)], 20.0, id="tx-overrules-default"),
        pytest.param(
            [prof(1, DEF, 10), prof(2, TX, 20), prof(3, MAX, 14, connector=0)],
            14.0,
            id="tx-capped-by-station",
        ),
        pytest.param(
            [prof(1, DEF, 16, stack=0), prof(2, DEF, 8, stack=1)], 8.0, id="highest-stack-wins"
        ),
        pytest.param(
            [prof(1, DEF, 16, stack=0), prof(2, DEF, 8, stack=1, duration_s=1)],
            16.0,
            id="expired-higher-stack-falls-back",
        ),
        pytest.param(
            [prof(1, DEF, 16, connector=0), prof(2, DEF, 12, connector=1)],
            12.0,
            id="connector-specific-beats-connector-0",
        ),
        pytest.param([prof(1, DEF, 9, connector=0)], 9.0, id="connector-0-default-applies"),
        pytest.param([prof(1, DEF, 11040, unit="W")], 16.0, id="watts-3-phases"),
        pytest.param([prof(1, DEF, 3680, unit="W", phases=1)], 16.0, id="watts-1-phase"),
        pytest.param(
            [prof(1, DEF, 16), prof(2, TX, 6, tx="8")], 16.0, id="tx-of-other-transaction"
        ),
        pytest.param([prof(1, TX, 6, tx="7")], 6.0, id="tx-of-this-transaction"),
        pytest.param([prof(1, DEF, 16, connector=2)], None, id="other-connector"),
    ],
)
def test_composite_limit(profiles: list[ChargingProfile], expected_a: float | None) -> None:
    result = limit_at(profiles)
    if expected_a is None:
        assert result is None
    else:
        assert result == pytest.approx(expected_a)


def test_tx_profile_needs_a_transaction() -> None:
    assert limit_at([prof(1, TX, 6)], tx_start=None, tx_id=None) is None


def test_same_id_or_same_slot_replaces() -> None:
    store = ProfileStore()
    store.install(prof(1, DEF, 16))
    store.install(prof(1, DEF, 10, stack=3))
    assert [p.stack_level for p in store.profiles] == [3]
    store.install(prof(2, DEF, 8, stack=3))
    assert [p.profile_id for p in store.profiles] == [2]
    store.install(prof(3, DEF, 8, stack=4))
    assert sorted(p.profile_id for p in store.profiles) == [2, 3]


def test_a_taken_level_is_told_as_libocpp_refuses_it() -> None:
    """What a 2.0.1 station as EVerest's refuses where 1.6 replaces (K01.FR.39, K01.FR.06)."""
    store = ProfileStore()
    for p in (
        prof(1, TX, 10, stack=3, tx="A"),
        prof(2, DEF, 6, connector=0, stack=3),
        prof(3, MAX, 16, connector=0, stack=3),
    ):
        store.install(p)
    assert store.taken_level(prof(9, TX, 32, stack=3, tx="A")) == "InvalidStackLevel"
    assert store.taken_level(prof(1, TX, 32, stack=3, tx="A")) is None, "its own id replaces"
    assert store.taken_level(prof(9, TX, 32, stack=3, tx="B")) is None, "another transaction"
    assert store.taken_level(prof(9, TX, 32, stack=4, tx="A")) is None
    assert store.taken_level(prof(9, DEF, 32, connector=0, stack=3)) == "DuplicateProfile"
    assert store.taken_level(prof(9, DEF, 32, connector=1, stack=3)) == "DuplicateProfile"
    assert store.taken_level(prof(9, MAX, 32, connector=0, stack=3)) == "DuplicateProfile"
    assert store.taken_level(prof(9, MAX, 32, connector=0, stack=2)) is None
    later = replace(prof(9, MAX, 32, connector=0, stack=3), valid_from_utc=T0 + timedelta(days=1))
    ends = replace(prof(3, MAX, 16, connector=0, stack=3), valid_to_utc=T0)
    store.install(ends)
    assert store.taken_level(later) is None, "validity periods apart"


def test_clear_matches_all_given_criteria() -> None:
    store = ProfileStore()
    for p in (prof(1, DEF, 16), prof(2, TX, 10), prof(3, MAX, 20, connector=0)):
        store.install(p)
    assert store.clear(purpose=DEF, connector_id=0) == 0
    assert store.clear(purpose=TX) == 1
    store.end_transaction(1)
    assert sorted(p.profile_id for p in store.profiles) == [1, 3]


def test_periods_follow_the_schedule() -> None:
    periods = (SchedulePeriod(start_s=0, limit=16), SchedulePeriod(start_s=60, limit=8))
    p = prof(1, DEF, 0, periods=periods)
    assert limit_at([p], T0 + timedelta(seconds=30)) == 16
    assert limit_at([p], T0 + timedelta(seconds=90)) == 8
    assert limit_at([p], T0 - timedelta(seconds=1)) is None


def test_relative_schedule_starts_with_the_transaction() -> None:
    periods = (SchedulePeriod(start_s=0, limit=16), SchedulePeriod(start_s=600, limit=8))
    p = prof(1, DEF, 0, periods=periods, kind="Relative")
    tx_start = T0 + timedelta(hours=1)
    assert limit_at([p], tx_start + timedelta(seconds=599), tx_start=tx_start) == 16
    assert limit_at([p], tx_start + timedelta(seconds=600), tx_start=tx_start) == 8


def test_daily_recurring_schedule_repeats() -> None:
    periods = (SchedulePeriod(start_s=0, limit=6), SchedulePeriod(start_s=3600, limit=32))
    p = prof(1, DEF, 0, periods=periods, kind="Recurring", recurrency="Daily")
    assert limit_at([p], T0 + timedelta(days=3, minutes=10)) == 6
    assert limit_at([p], T0 + timedelta(days=3, hours=2)) == 32


def test_composite_schedule_merges_equal_periods_and_caps_at_hardware() -> None:
    store = ProfileStore()
    periods = (
        SchedulePeriod(start_s=0, limit=40),
        SchedulePeriod(start_s=60, limit=10),
        SchedulePeriod(start_s=120, limit=10),
        SchedulePeriod(start_s=180, limit=20),
    )
    store.install(prof(1, DEF, 0, periods=periods))
    store.install(prof(2, MAX, 16, connector=0))
    result = store.composite(
        1, T0, 300, tx_start_utc=None, tx_id=None, electrical=E3, default_a=32.0
    )
    assert result == [
        CompositePeriod(start_s=0, limit_a=16.0),
        CompositePeriod(start_s=60, limit_a=10.0),
        CompositePeriod(start_s=180, limit_a=16.0),
    ]


def v16_payload(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "charging_profile_id": 5,
        "stack_level": 1,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": "W",
            "charging_schedule_period": [{"start_period": 0, "limit": 6900, "number_phases": 3}],
        },
    }
    base.update(over)
    return base


def test_parse_v16_and_v201_agree() -> None:
    p16 = profile_from_v16(1, v16_payload(), installed_utc=T0)
    p201 = profile_from_v201(
        1,
        {
            "id": 5,
            "stack_level": 1,
            "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": [v16_payload()["charging_schedule"] | {"id": 1}],
        },
        installed_utc=T0,
    )
    assert p16 == p201
    assert limit_at([p16], tx_start=T0) == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param(
            {"charging_schedule": {"charging_rate_unit": "kW", "charging_schedule_period": []}},
            r"chargingRateUnit: expected 'A' or 'W', got 'kW'",
            id="unit",
        ),
        pytest.param(
            {
                "charging_schedule": {
                    "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 5, "limit": 6}],
                }
            },
            "first period must start at 0",
            id="first-period",
        ),
        pytest.param({"charging_profile_purpose": "Whatever"}, "unknown 'Whatever'", id="purpose"),
        pytest.param({"valid_from": "yesterday"}, "validFrom", id="time"),
    ],
)
def test_bad_profiles_name_the_field(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profile_from_v16(1, v16_payload(**override), installed_utc=T0)
