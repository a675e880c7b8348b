"""How the broker reads the cloud's charging profile requests where OCPP leaves room: a 2.0.1
ClearChargingProfile with both an id and criteria, and a schedule in watts without
``numberPhases``. The charge point must end up at what the edge counts: the lower of the cloud's
limit and the site's. Real broker and cloud over websockets, the simulated charge point (profiles
applied as OCPP says)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from sim.profile_payloads import profile_for
from tests.helpers import wait_for
from tests.integration.broker.edge import start_edge
from tests.integration.broker.test_cloud_profiles import cloud_sets, tx_profile
from tests.integration.broker.test_profile_batches import ENERGY, batch, charge
from tests.integration.broker.test_profiles_again import STATION, Charging, charging
from tests.integration.sim.conftest import GOOD_TAG, fast_config

__all__ = ["charging"]


async def clear(c: Charging, request: dict[str, object]) -> str:
    answer = await c.cloud.call("CP1", "ClearChargingProfile", request)
    return str(answer["status"])


@pytest.mark.parametrize("charging", ["ocpp2.0.1"], indirect=True)
async def test_a_201_clear_with_an_id_clears_that_profile_alone(charging: Charging) -> None:
    """OCPP 2.0.1 K10: a chargingProfileId given, the station clears that profile, whatever the
    criteria say (EVerest's libocpp: K10.FR.03). The edge read it as the id or else the
    criteria, and dropped the cloud's 8 A TxProfile for a clear that named another id: the
    station still held it (shadowed by the edge's), the car went back to the site's 10 A."""
    c = charging
    await cloud_sets(c, tx_profile(c, 8.0, stack_level=1))
    await wait_for(lambda: c.accepted() == {"1": 8.0}, timeout=3, what="capped at 8 A")

    criteria = {"evseId": 1, "chargingProfilePurpose": "TxProfile", "stackLevel": 1}
    other = {"chargingProfileId": 77, "chargingProfileCriteria": criteria}
    assert await clear(c, other) == "Unknown", "no profile 77: nothing cleared"
    # Answered after the one before (one call at a time to the charge point): whatever the edge
    # sent on the first clear has been answered by then.
    assert await clear(c, {"chargingProfileId": 99}) == "Unknown"
    await wait_for(lambda: c.edge.cp("CP1")["down_queue"] == 0, what="the edge's calls answered")
    assert c.energy()["cloud_caps_a"] == {"1": 8.0}, "the cloud's profile is still there"
    assert c.accepted() == {"1": 8.0}
    assert c.cp.offered_a(1) == 8.0

    # Its id with criteria that do not match it: cleared all the same.
    mismatch = {"chargingProfileId": 42, "chargingProfileCriteria": {"stackLevel": 5}}
    assert await clear(c, mismatch) == "Accepted"
    await wait_for(lambda: c.accepted() == {"1": 10.0}, timeout=3, what="the site's 10 A again")
    assert c.energy()["cloud_caps_a"] == {}
    assert c.cp.offered_a(1) == 10.0


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_watts_without_number_phases_on_a_one_phase_charge_point(
    tmp_path: Path, protocol: str
) -> None:
    """The cloud's TxProfile says 1840 W without ``numberPhases`` to a charge point wired on one
    phase (``phases = 1``): 8 A on its one phase, which the charge point itself gives (it
    cannot spread the watts over phases it has not got). OCPP's three when the field is absent
    made the edge's cap 2.6 A (1840 W / 3 / 230 V): the car held at a third of what the cloud
    allows, the site's 10 A far above it."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY, cp_extra="phases = 1")
    config = fast_config(edge.url, protocol, phases=1, meter_interval_s=60.0)
    c = Charging(cloud, edge, SimChargePoint(config))
    try:
        await charge(edge, c.cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(lambda: c.accepted() == {"1": 10.0}, what="the edge's 10 A")
        watts = profile_for(
            protocol, limit=1840.0, unit="W", number_phases=None, profile_id=42, stack_level=1
        )
        await cloud_sets(c, watts)
        await wait_for(
            lambda: c.energy()["cloud_caps_a"] != {} and c.edge.cp("CP1")["down_queue"] == 0,
            timeout=3,
            what="the cloud's profile taken in",
        )
        assert c.energy()["cloud_caps_a"] == {"1": 8.0}
        assert c.accepted() == {"1": 8.0}
        assert c.cp.offered_a(1) == 8.0
    finally:
        await c.cp.stop()
        await edge.stop()
        await cloud.stop()


@pytest.mark.parametrize("charging", ["ocpp2.0.1"], indirect=True)
async def test_a_clear_naming_the_edges_profile_with_other_criteria_puts_it_back(
    charging: Charging,
) -> None:
    """The same K10 reading for the edge's own profiles: a clear naming the edge's TxProfile by
    its id clears it, whatever its criteria say (a stack level not the edge's here). The edge
    read the criteria too, judged it the cloud clearing its own, and left the transaction
    without its TxProfile: the car got the safe default, not the site's 10 A, until the energy
    node's next change or full batch."""
    c = charging
    edge_tx = [p.profile_id for p in c.cp.profiles.profiles if p.purpose.value == "TxProfile"]
    assert len(edge_tx) == 1
    levels = {p.stack_level for p in c.cp.profiles.profiles}
    assert 3 not in levels, levels
    request = {"chargingProfileId": edge_tx[0], "chargingProfileCriteria": {"stackLevel": 3}}
    assert await clear(c, request) == "Accepted", "the station cleared it by its id"
    await wait_for(
        lambda: c.held() == [*STATION, "TxProfile"] and c.cp.offered_a(1) == 10.0,
        timeout=3,
        what="the edge's TxProfile installed again",
    )
