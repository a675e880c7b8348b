"""How the broker reads the cloud's charging profile requests where OCPP leaves room: a 2.0.1
ClearChargingProfile with both an id and criteria, and a schedule in watts without
``numberPhases``. The charge point must end up at what the edge counts: the lower of the cloud's
limit and the site's. Real broker and cloud over websockets, the simulated charge point (profiles
applied as OCPP says)."""

from __future__ import annotations

import pytest

from tests.helpers import wait_for
from tests.integration.broker.test_cloud_profiles import cloud_sets, tx_profile
from tests.integration.broker.test_profiles_again import Charging, charging

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
