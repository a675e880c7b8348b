"""The stack level and the ids of the edge's profiles beside the cloud's (actors.cp_cloud_caps,
actors.cp_energy): within a purpose a charge point follows the highest stack level alone, and a
profile with the id of another replaces it, so the edge's must stay at least at the level of the
cloud's profiles the charge point accepted, and go again when the cloud's take one of their ids.
Real broker and cloud over websockets, a raw 2.0.1 station (its answers scripted) or the
simulated charge point (profiles applied as OCPP says)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.profiles import ChargePointCapabilities, tx_default_profile_id
from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from sim.cp_config import Behaviour
from sim.profile_payloads import profile_for
from sim.smart_charging import Electrical
from tests.helpers import wait_for
from tests.integration.broker.edge import start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.station_201 import station_on_broker
from tests.integration.broker.test_cloud_profiles import EDGE_LEVEL, calls
from tests.integration.broker.test_profile_batches import ENERGY, batch, charge
from tests.integration.broker.test_profiles_again import Charging, charging
from tests.integration.sim.conftest import GOOD_TAG, fast_config

__all__ = ["charging"]

CLOUD_ID = 42


def edge_tx_levels(cp: RawChargePoint) -> list[int]:
    """The stack level of each TxProfile of the edge's the station got, in order."""
    return [
        int(c[3]["chargingProfile"]["stackLevel"])
        for c in calls(cp, "SetChargingProfile")
        if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
        and c[3]["chargingProfile"]["id"] != CLOUD_ID
    ]


async def test_a_refusal_does_not_take_the_edges_profiles_below_the_clouds_level(
    tmp_path: Path,
) -> None:
    """The station reports no stack level (the edge's is 0) and takes the cloud's TxProfile at
    level 3: the edge's go one above, at 4. Then it refuses the edge's TxProfile twice without
    a reason (its retry too): a lesson, which took the edge's level back to 0, below the
    cloud's 32 A at 3, which the station then follows alone (8880e34). The edge's go at 3, the
    cloud's, no further (this station takes them there, as 1.6 has the later replace the
    other), and the cloud's next profile there does not take them up to the refused 4 again."""
    async with station_on_broker(tmp_path) as s:
        await s.event("A", "Started")
        await wait_for(lambda: edge_tx_levels(s.cp) == [0], what="A's TxProfile at start")
        cloud = profile_for(
            "ocpp2.0.1", limit=32.0, profile_id=CLOUD_ID, stack_level=3, transaction_id="A"
        )
        answer = await s.cloud.set_charging_profile("CP1", 1, cloud)
        assert answer["status"] == "Accepted"
        await wait_for(
            lambda: edge_tx_levels(s.cp)[-1:] == [4] and s.edge.cp("CP1")["down_queue"] == 0,
            what="the edge's TxProfile again above the cloud's level",
        )
        seen = len(edge_tx_levels(s.cp))

        refused: list[int] = []

        def refuse_twice(payload: dict[str, Any]) -> dict[str, Any]:
            p = payload["chargingProfile"]
            edge_tx = p["chargingProfilePurpose"] == "TxProfile" and p["id"] != CLOUD_ID
            if edge_tx and len(refused) < 2:
                refused.append(int(p["stackLevel"]))
                return {"status": "Rejected"}
            return {"status": "Accepted"}

        s.cp.answers["SetChargingProfile"] = refuse_twice
        s.edge.system.send("broker/profiles", batch(s.edge, 8.0, sent_ns=2_000))
        await wait_for(
            lambda: s.edge.cp("CP1")["energy"]["sent_a"] == {"1": 8.0},
            timeout=5,
            what="the edge's 8 A taken after the lesson",
        )
        assert refused == [4, 4]
        after = edge_tx_levels(s.cp)[seen:]
        assert min(after) >= 3, f"the edge's TxProfiles went at {after}, below the cloud's 3"
        assert after[-1] == 3
        assert s.edge.cp("CP1")["energy"]["caps"]["max_stack_level"] == 3
        assert s.edge.cp("CP1")["energy"]["shared_level"] == 3

        cloud["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] = 7.0
        answer = await s.cloud.set_charging_profile("CP1", 1, cloud)
        assert answer["status"] == "Accepted"
        await wait_for(
            lambda: s.edge.cp("CP1")["energy"]["sent_a"] == {"1": 7.0},
            what="the edge's TxProfile at the cloud's 7 A",
        )
        assert edge_tx_levels(s.cp)[-1] == 3, "not up to the refused 4 again"


def held(c: Charging, purpose: str) -> list[tuple[int, int, float]]:
    """The profiles of ``purpose`` the charge point holds: (id, stack level, first limit)."""
    return sorted(
        (p.profile_id, p.stack_level, p.periods[0].limit)
        for p in c.cp.profiles.profiles
        if p.purpose.value == purpose
    )


async def test_a_cloud_max_profile_with_an_edge_profiles_id_does_not_leave_new_cars_without_the_safe_default(
    charging: Charging,
) -> None:
    """The cloud's ChargePointMaxProfile with the id of the edge's TxDefaultProfile (900000)
    replaces that one in the charge point (same id replaces, whatever the purpose): a new car
    would get what the charge point gives, not the safe 6 A. Only the cloud's TxProfiles and
    TxDefaultProfiles were looked at for the edge's ids (3a2084b); the edge's now go again."""
    c = charging
    edge_default = tx_default_profile_id(ChargePointCapabilities())
    cloud_max = profile_for(
        c.cp.config.protocol,
        limit=32.0,
        profile_id=edge_default,
        purpose="ChargePointMaxProfile",
        kind="Absolute",
        stack_level=1,
    )
    answer = await c.cloud.set_charging_profile("CP1", 0, cloud_max)
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: (
            c.edge.cp("CP1")["down_queue"] == 0
            and held(c, "TxDefaultProfile") == [(edge_default, EDGE_LEVEL, 6.0)]
        ),
        timeout=3,
        what="the edge's safe 6 A TxDefaultProfile back in the charge point",
    )
    assert c.accepted() == {"1": 10.0}
    assert c.cp.offered_a(1) == 10.0


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_cloud_max_profile_cannot_lift_the_charge_points_cap(
    tmp_path: Path, protocol: str
) -> None:
    """The edge's ChargePointMaxProfile holds the charge point at its 16 A (``max_current_a``)
    at the edge's level, 0 here (the charge point reports nothing and takes up to 20). Within
    that purpose too the highest level wins: the cloud's at level 3 with 32 A took the charge
    point's cap to 32 A (b04628c raised only the TxProfile and TxDefaultProfile, and the
    cloud's max profiles were not looked at). The edge's goes at 3 now; and the cloud's lower
    one below it, shadowed by the edge's, caps it (12 A), as its TxDefaultProfiles do."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(
        tmp_path, cloud_url=cloud.url, extra=ENERGY, cp_extra="max_current_a = 16"
    )
    quirk = Behaviour(reported_max_stack_level=0)
    config = fast_config(edge.url, protocol, behaviour=quirk, meter_interval_s=60.0)
    c = Charging(cloud, edge, SimChargePoint(config))
    electrical = Electrical(phases=3)

    def station_a() -> float | None:
        return c.cp.profiles.station_limit_a(datetime.now(UTC), electrical)

    def cloud_max(limit: float, level: int) -> dict[str, Any]:
        return profile_for(
            protocol,
            limit=limit,
            profile_id=43,
            purpose="ChargePointMaxProfile",
            kind="Absolute",
            stack_level=level,
        )

    try:
        await charge(edge, c.cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: c.accepted() == {"1": 10.0} and station_a() == 16.0,
            what="the edge's TxProfile at 10 A, its max profile at 16 A",
        )
        answer = await cloud.set_charging_profile("CP1", 0, cloud_max(32.0, 3))
        assert answer["status"] == "Accepted"
        await wait_for(
            lambda: station_a() == 16.0 and edge.cp("CP1")["down_queue"] == 0,
            timeout=3,
            what="the charge point's cap at the edge's 16 A, not the cloud's 32 A",
        )
        assert c.energy()["caps"]["max_stack_level"] >= 3

        answer = await cloud.set_charging_profile("CP1", 0, cloud_max(12.0, 1))
        assert answer["status"] == "Accepted"
        await wait_for(
            lambda: station_a() == 12.0 and edge.cp("CP1")["down_queue"] == 0,
            timeout=3,
            what="the charge point's cap at the cloud's lower 12 A",
        )
        assert c.energy()["cloud_max_a"] == 12.0
    finally:
        await c.cp.stop()
        await edge.stop()
        await cloud.stop()


async def test_a_201_station_that_refuses_a_taken_level_gets_the_edges_profiles_above_the_clouds(
    tmp_path: Path,
) -> None:
    """A 2.0.1 station as EVerest's refuses a profile at a stack level another id holds (a
    TxProfile of the same transaction, K01.FR.39: InvalidStackLevel; another purpose on the
    same EVSE, K01.FR.06: DuplicateProfile) where 1.6 replaces it. It reports level 0 and takes
    the cloud's 32 A TxProfile at 3: the edge's went again AT 3 (b04628c), were refused, and
    the car followed the cloud's 32 A, the site's 10 A ignored. They go one above (4), capped
    at the cloud's limit, its TxDefaultProfile and max profile too."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    quirk = Behaviour(reported_max_stack_level=0, refuses_taken_level=True)
    config = fast_config(edge.url, "ocpp2.0.1", behaviour=quirk, meter_interval_s=60.0)
    c = Charging(cloud, edge, SimChargePoint(config))
    try:
        await charge(edge, c.cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: c.accepted() == {"1": 10.0} and c.cp.offered_a(1) == 10.0,
            what="the edge's TxProfile at 10 A, at stack level 0",
        )
        cloud_tx = profile_for(
            "ocpp2.0.1",
            limit=32.0,
            profile_id=CLOUD_ID,
            stack_level=3,
            transaction_id=c.cp.connectors[1].tx.transaction_id,  # type: ignore[union-attr]
        )
        answer = await cloud.set_charging_profile("CP1", 1, cloud_tx)
        assert answer["status"] == "Accepted"
        await wait_for(
            lambda: c.energy()["cloud_caps_a"] == {"1": 32.0} and edge.cp("CP1")["down_queue"] == 0,
            timeout=3,
            what="the cloud's profile taken in",
        )
        await wait_for(
            lambda: c.cp.offered_a(1) == 10.0,
            timeout=3,
            what="the car at the site's 10 A, not the cloud's 32 A",
        )
        edge_levels = {p.purpose.value: p.stack_level for p in c.cp.profiles.profiles}
        assert held(c, "TxProfile")[0] == (CLOUD_ID, 3, 32.0), "the cloud's, shadowed"
        assert edge_levels == {"TxDefaultProfile": 4, "ChargePointMaxProfile": 4, "TxProfile": 4}
        assert c.energy()["caps"]["max_stack_level"] == 4
    finally:
        await c.cp.stop()
        await edge.stop()
        await cloud.stop()
