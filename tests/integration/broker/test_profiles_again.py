"""The edge's profiles go in again, without waiting for the energy node, wherever they may be
gone: a charge point back without a boot, after a reboot, after the cloud's ClearChargingProfile,
and where the charge point refused them at a stack level it overstated.

The energy node sends a connector's limit when it changes (and every connector's in its periodic
full batch, a minute apart); what a charge point held may be gone meanwhile (its controller
restarted: it would then give the car its full current). Here no batch follows the first one:
whatever the charge point holds afterwards, the broker installed by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from sim.cp_config import Behaviour
from sim.profile_payloads import profile_for
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.test_profile_batches import ENERGY, batch, charge
from tests.integration.sim.conftest import GOOD_TAG, fast_config

STATION = ["ChargePointMaxProfile", "TxDefaultProfile"]


@dataclass
class Charging:
    cloud: SimCloud
    edge: Edge
    cp: SimChargePoint

    def held(self) -> list[str]:
        return sorted(p.purpose.value for p in self.cp.profiles.profiles)

    def forget(self) -> None:
        """Its controller restarted: no profile, so the connector's maximum for the car."""
        self.cp.lose_profiles()
        assert self.cp.offered_a(1) == 32.0
        assert self.held() == []

    def energy(self) -> dict[str, object]:
        report: dict[str, object] = self.edge.cp("CP1")["energy"]
        return report

    def accepted(self) -> object:
        """The limits the charge point accepted, as the broker knows them."""
        return self.energy()["sent_a"]


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
async def charging(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Charging]:
    """CP1 charging at a limit of 10 A from one batch; silent between its messages for longer
    than any test here waits (meter values every 60 s, the cloud's heartbeat interval 300 s)."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    cp = SimChargePoint(fast_config(edge.url, request.param, meter_interval_s=60.0))
    c = Charging(cloud=cloud, edge=edge, cp=cp)
    try:
        await charge(edge, cp)
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: (
                c.held() == [*STATION, "TxProfile"]
                and c.accepted() == {"1": 10.0}
                and edge.cp("CP1")["down_queue"] == 0
            ),
            what="the station's profiles and the TxProfile at 10 A, accepted",
        )
        assert cp.offered_a(1) == 10.0
        yield c
    finally:
        await cp.stop()
        await edge.stop()
        await cloud.stop()


async def test_back_without_a_boot_it_gets_the_station_profiles_and_the_running_limit(
    charging: Charging,
) -> None:
    c = charging
    c.forget()
    await c.cp.drop_connection()
    await wait_for(
        lambda: c.held() == [*STATION, "TxProfile"] and c.accepted() == {"1": 10.0},
        timeout=3,
        what="every profile installed again, the transaction's at its last limit",
    )
    assert c.cp.offered_a(1) == 10.0
    assert c.energy()["caps"] == {"max_stack_level": 20, "rate_units": ["A", "W"]}


async def test_after_a_reboot_the_station_profiles_come_back_and_a_new_transaction_gets_its_limit(
    charging: Charging,
) -> None:
    c = charging
    c.forget()
    # The cloud answers the boot late: the charge point has spoken, so the broker waits for that
    # answer, and no TxProfile goes out for the transaction the reboot ended (the charge point
    # would refuse it, and the broker would learn the wrong lesson from that: stack level 0).
    c.cloud.inject_fault("BootNotification", delay_s=2.0, times=1)
    boots = c.cloud.count("CP1", "BootNotification")
    c.cp.reset("PowerLoss")
    await wait_for(
        lambda: c.cloud.count("CP1", "BootNotification") > boots, timeout=5, what="the new boot"
    )
    await wait_for(lambda: c.held() == STATION, timeout=5, what="the station's profiles again")
    await wait_for(lambda: not c.edge.cp("CP1")["transactions"], what="the old transaction ended")
    assert c.energy()["caps"] == {"max_stack_level": 20, "rate_units": ["A", "W"]}

    await c.cp.start_transaction(1, GOOD_TAG)
    await wait_for(lambda: bool(c.edge.cp("CP1")["transactions"]), what="the new transaction")
    c.edge.system.send("broker/profiles", batch(c.edge, 10.0, sent_ns=3_000))  # its first limit
    await wait_for(
        lambda: c.held() == [*STATION, "TxProfile"] and c.accepted() == {"1": 10.0},
        timeout=3,
        what="the new transaction's TxProfile at the energy node's limit for it",
    )
    assert c.cp.offered_a(1) == 10.0
    profiles = c.edge.system.actor("broker/profiles").report()
    assert profiles["profiles_rejected"] == 0, profiles["last_rejection"]
    assert c.energy()["caps"] == {"max_stack_level": 20, "rate_units": ["A", "W"]}


def clear_all(protocol: str) -> dict[str, object]:
    """A ClearChargingProfile without criteria: every profile on the charge point."""
    return {} if protocol == "ocpp1.6" else {"chargingProfileCriteria": {}}


async def test_a_clear_all_from_the_cloud_is_followed_by_the_edges_profiles_again(
    charging: Charging,
) -> None:
    c = charging
    answer = await c.cloud.call("CP1", "ClearChargingProfile", clear_all(c.cp.config.protocol))
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: c.held() == [*STATION, "TxProfile"] and c.accepted() == {"1": 10.0},
        timeout=3,
        what="the edge's profiles installed again after the cloud's clear",
    )
    assert c.cp.offered_a(1) == 10.0


async def test_the_cloud_clearing_its_own_profile_leaves_the_edges_alone(
    charging: Charging,
) -> None:
    c = charging
    protocol = c.cp.config.protocol
    own = profile_for(protocol, limit=20.0, profile_id=7, purpose="TxDefaultProfile")
    assert (await c.cloud.set_charging_profile("CP1", 0, own))["status"] == "Accepted"
    sent = c.cp.stats.received["SetChargingProfile"]
    by_id = {"id": 7} if protocol == "ocpp1.6" else {"chargingProfileId": 7}
    answer = await c.cloud.call("CP1", "ClearChargingProfile", by_id)
    assert answer["status"] == "Accepted"
    # The next limit is the next call the edge makes: had it installed anything again after the
    # clear, that would have gone first.
    c.edge.system.send("broker/profiles", batch(c.edge, 9.0, sent_ns=2_000))
    await wait_for(lambda: c.accepted() == {"1": 9.0}, what="the next limit")
    assert c.cp.stats.received["SetChargingProfile"] == sent + 1
    assert c.held() == [*STATION, "TxProfile"]


async def test_a_charge_point_that_overstates_its_stack_level_gets_every_profile_at_one_it_takes(
    tmp_path: Path,
) -> None:
    """It reports ChargeProfileMaxStackLevel 20 and refuses anything above 0: the station's
    profiles, sent first, are refused as the TxProfile is; once the TxProfile taught the broker
    the level, they go again at it."""
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    quirk = Behaviour(max_stack_level=0, reported_max_stack_level=20)
    c = Charging(cloud, edge, SimChargePoint(fast_config(edge.url, "ocpp1.6", behaviour=quirk)))
    try:
        await charge(edge, c.cp)
        assert c.held() == [], "the station's profiles refused at level 20"
        edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
        await wait_for(
            lambda: c.held() == [*STATION, "TxProfile"] and c.accepted() == {"1": 10.0},
            timeout=5,
            what="every profile taken at stack level 0",
        )
        assert c.energy()["caps"] == {"max_stack_level": 0, "rate_units": ["A", "W"]}
        assert {p.stack_level for p in c.cp.profiles.profiles} == {0}
        assert c.cp.offered_a(1) == 10.0
    finally:
        await c.cp.stop()
        await edge.stop()
        await cloud.stop()


async def restart_cp_actor(edge: Edge, cp_id: str = "CP1") -> None:
    """Kill the charge point's actor and wait for its supervisor to have a new one running."""
    path = f"broker/charge_points/{cp_id}"
    old = edge.system.actor(path)
    edge.system.cells[path].kill()
    await wait_for(
        lambda: edge.system.cells[path].running and edge.system.actor(path) is not old,
        what="the actor restarted",
    )


async def test_a_restarted_charge_point_actor_learns_the_charge_point_again(
    charging: Charging,
) -> None:
    """Its actor restarts under the live connection (killed; its supervisor starts it again):
    what it had learned (the version's payloads, the stack level) is learned again, the
    station's profiles go again, and the next limit goes as the charge point takes it (before,
    a 2.0.1 charge point got a 1.6 payload and refused it as malformed)."""
    c = charging
    sets = c.cp.stats.received["SetChargingProfile"]
    await restart_cp_actor(c.edge)
    await wait_for(
        lambda: c.cp.stats.received["SetChargingProfile"] >= sets + len(STATION),
        what="the station's profiles again",
    )
    c.edge.system.send("broker/profiles", batch(c.edge, 9.0, sent_ns=2_000))
    await wait_for(lambda: c.accepted() == {"1": 9.0}, timeout=3, what="the next limit taken")
    assert c.cp.offered_a(1) == 9.0
    assert c.held() == [*STATION, "TxProfile"]
    assert c.energy()["caps"] == {"max_stack_level": 20, "rate_units": ["A", "W"]}
