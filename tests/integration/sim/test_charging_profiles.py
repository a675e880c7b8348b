"""SetChargingProfile from the cloud reaches the car, and chargers' quirks behave as in the field."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.clock import ScaledClock
from sim.cloud import SimCloud
from sim.cp_config import Behaviour, quirk
from sim.profile_payloads import profile_for
from tests.helpers import timeout_s, wait_for
from tests.integration.sim.conftest import GOOD_TAG, PROTOCOLS, StartCp, fast_config

RAMP_DOWN_A_PER_S = 4.0


def last_offered(cloud: SimCloud, cp_id: str) -> float | None:
    """Current.Offered in the newest meter value the cloud received."""
    for m in reversed(cloud.received(cp_id)):
        for mv in m.payload.get("meterValue", []):
            for sv in mv["sampledValue"]:
                if sv.get("measurand") == "Current.Offered":
                    return float(sv["value"])
    return None


async def charging(cp: SimChargePoint, max_current_a: float = 32.0) -> None:
    spec = CarSpec(
        max_current_a=max_current_a,
        ramp_up_a_per_s=320.0,
        ramp_down_a_per_s=RAMP_DOWN_A_PER_S,
        energy_need_wh=1e9,
    )
    await cp.plug_in(1, spec)
    await cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: cp.drawn_a(1)[0] == max_current_a, what="car at full current")


def composite_limit(answer: dict[str, Any], protocol: str) -> float:
    schedule = answer["chargingSchedule"] if protocol == "ocpp1.6" else answer["schedule"]
    return float(schedule["chargingSchedulePeriod"][0]["limit"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_profile_from_the_cloud_lowers_the_draw_within_the_ramp(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    clock = ScaledClock(speed=5.0)
    cp = await start_cp(fast_config(cloud.url, protocol), clock=clock)
    await charging(cp)

    t0 = clock.monotonic()
    answer = await cloud.set_charging_profile("CP1", 1, profile_for(protocol, limit=10.0))
    assert answer["status"] == "Accepted"
    assert cp.offered_a(1) == 10.0
    await wait_for(lambda: cp.drawn_a(1)[0] <= 10.0, what="car down to 10 A")
    took_s = clock.monotonic() - t0
    ramp_s = (32.0 - 10.0) / RAMP_DOWN_A_PER_S
    # The upper slack is polling and scheduling delay, in real time scaled to the sim clock.
    slack_s = timeout_s(0.5) * clock.speed
    assert ramp_s * 0.95 <= took_s <= ramp_s + slack_s, f"took {took_s:.2f} s, ramp {ramp_s} s"
    await wait_for(lambda: last_offered(cloud, "CP1") == 10.0, what="Current.Offered reported")

    key = "connectorId" if protocol == "ocpp1.6" else "evseId"
    composite = await cloud.call("CP1", "GetCompositeSchedule", {key: 1, "duration": 300})
    assert composite["status"] == "Accepted"
    assert composite_limit(composite, protocol) == 10.0

    if protocol == "ocpp1.6":
        cleared = await cloud.call("CP1", "ClearChargingProfile", {"id": 1})
    else:
        cleared = await cloud.call("CP1", "ClearChargingProfile", {"chargingProfileId": 1})
    assert cleared["status"] == "Accepted"
    await wait_for(lambda: cp.drawn_a(1)[0] == 32.0, what="back to full current")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tx_profile_is_rejected_without_a_transaction(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    await start_cp(fast_config(cloud.url, protocol))
    answer = await cloud.set_charging_profile("CP1", 1, profile_for(protocol, limit=10.0))
    assert answer["status"] == "Rejected"
    default = profile_for(protocol, limit=10.0, purpose="TxDefaultProfile")
    assert (await cloud.set_charging_profile("CP1", 0, default))["status"] == "Accepted"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("quirk_name", "profile", "status", "offered_a"),
    [
        pytest.param("ignores_profiles", {"limit": 10.0}, "Accepted", 32.0, id="ignores"),
        pytest.param(
            "max_stack_level_0",
            {"limit": 10.0, "stack_level": 1},
            "Rejected",
            32.0,
            id="stack1-on-level0-charger",
        ),
        pytest.param(
            "max_stack_level_0",
            {"limit": 10.0, "stack_level": 0},
            "Accepted",
            10.0,
            id="stack0-on-level0-charger",
        ),
        pytest.param(
            "watts_only", {"limit": 10.0, "unit": "A"}, "Rejected", 32.0, id="amps-on-watts-charger"
        ),
        pytest.param(
            "watts_only",
            {"limit": 6900.0, "unit": "W"},
            "Accepted",
            10.0,
            id="watts-on-watts-charger",
        ),
        pytest.param(
            "none",
            {"limit": 2300.0, "unit": "W", "number_phases": 1},
            "Accepted",
            10.0,
            id="watts-one-phase",
        ),
    ],
)
async def test_field_quirks(
    cloud: SimCloud,
    start_cp: StartCp,
    protocol: str,
    quirk_name: str,
    profile: dict[str, Any],
    status: str,
    offered_a: float,
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol, behaviour=quirk(quirk_name)))
    await charging(cp)
    answer = await cloud.set_charging_profile("CP1", 1, profile_for(protocol, **profile))
    assert answer["status"] == status
    samples = len(cloud.received("CP1"))
    # Wait for a meter value sent after the answer, so "unchanged" is observed, not assumed.
    await wait_for(
        lambda: (
            len(cloud.received("CP1")) > samples + 1 and last_offered(cloud, "CP1") == offered_a
        ),
        what=f"Current.Offered {offered_a}",
    )
    assert cp.offered_a(1) == offered_a


async def test_slow_apply_changes_the_output_only_after_its_delay(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    cp = await start_cp(fast_config(cloud.url, "ocpp1.6", behaviour=Behaviour(slow_apply_s=0.5)))
    await charging(cp, max_current_a=16.0)
    started = time.monotonic()
    answer = await cloud.set_charging_profile("CP1", 1, profile_for("ocpp1.6", limit=8.0))
    assert answer["status"] == "Accepted"
    assert cp.offered_a(1) == 32.0
    await wait_for(lambda: cp.offered_a(1) == 8.0, what="late apply")
    assert time.monotonic() - started >= 0.5


async def test_quirky_charger_reports_its_limits_in_configuration(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    await start_cp(
        fast_config(cloud.url, "ocpp1.6", behaviour=Behaviour(max_stack_level=0, watts_only=True))
    )
    answer = await cloud.call(
        "CP1",
        "GetConfiguration",
        {"key": ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit"]},
    )
    values = {k["key"]: k["value"] for k in answer["configurationKey"]}
    assert values == {
        "ChargeProfileMaxStackLevel": "0",
        "ChargingScheduleAllowedChargingRateUnit": "Power",
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_station_limit_is_shared_by_running_transactions(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol, connectors=2))
    station = profile_for(protocol, limit=20.0, purpose="ChargePointMaxProfile")
    assert (await cloud.set_charging_profile("CP1", 0, station))["status"] == "Accepted"
    for connector_id in (1, 2):
        await cp.plug_in(connector_id, CarSpec(energy_need_wh=1e9))
    await cp.start_transaction(1, GOOD_TAG)
    assert cp.offered_a(1) == 20.0
    await cp.start_transaction(2, GOOD_TAG)
    assert (cp.offered_a(1), cp.offered_a(2)) == (10.0, 10.0)
