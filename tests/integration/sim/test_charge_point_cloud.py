"""A simulated charge point (1.6 and 2.0.1) against the simulated cloud: boot to transaction."""

from __future__ import annotations

from typing import Any

import pytest

from sim.car import CarSpec
from sim.cloud import SimCloud
from sim.errors import AuthorizationRejectedError
from tests.helpers import wait_for
from tests.integration.sim.conftest import GOOD_TAG, PROTOCOLS, StartCp, fast_config

TX_ACTIONS = {
    "ocpp1.6": ("StartTransaction", "MeterValues", "StopTransaction"),
    "ocpp2.0.1": ("TransactionEvent", "TransactionEvent", "TransactionEvent"),
}


def energy_values(cloud: SimCloud, cp_id: str, protocol: str) -> list[float]:
    """Energy.Active.Import.Register from every transaction message the cloud received."""
    values: list[float] = []
    for m in cloud.received(cp_id):
        payload: dict[str, Any] = m.payload
        readings = payload.get("meterValue") or payload.get("transactionData") or []
        for mv in readings:
            for sv in mv["sampledValue"]:
                if sv.get("measurand") == "Energy.Active.Import.Register":
                    values.append(float(sv["value"]))
    return values


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_boot_status_authorize_and_a_full_transaction(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    received = cloud.received("CP1")
    assert received[0].action == "BootNotification"
    assert cloud.charge_points["CP1"].subprotocol == protocol
    await wait_for(
        lambda: cloud.charge_points["CP1"].statuses.get(1) == "Available",
        what="connector 1 Available at the cloud",
    )

    assert await cp.authorize(GOOD_TAG) == "Accepted"
    assert await cp.authorize("TAG-UNKNOWN") == "Invalid"
    with pytest.raises(AuthorizationRejectedError, match="TAG-UNKNOWN"):
        await cp.start_transaction(1, "TAG-UNKNOWN")

    await cp.plug_in(1, CarSpec(max_current_a=16.0, ramp_up_a_per_s=100.0))
    await cp.start_transaction(1, GOOD_TAG)
    start, meter, stop = TX_ACTIONS[protocol]
    await wait_for(lambda: cloud.count("CP1", meter) >= 4, what="meter values at the cloud")
    await cp.stop_transaction(1)
    await wait_for(lambda: len(cp.outbox) == 0, what="outbox drained")

    tx = next(iter(cloud.charge_points["CP1"].transactions.values()))
    assert tx.ended
    assert tx.id_tag == GOOD_TAG
    assert tx.meter_stop_wh is not None
    assert tx.meter_stop_wh > 0
    energies = energy_values(cloud, "CP1", protocol)
    assert len(energies) >= 4
    assert energies == sorted(energies), "the energy register only grows"
    if protocol == "ocpp1.6":
        assert cp.transaction_ids == [tx.transaction_id] == ["1"]
        assert cloud.count("CP1", start) == 1
        assert cloud.count("CP1", stop) == 1
    else:
        assert tx.seq_nos == list(range(len(tx.seq_nos))), "seqNo without gaps"
        assert tx.offline_events == 0

    # Every CALL the charge point sent reached the cloud, once, in the same order.
    sent = [message_id for _, message_id in cp.stats.sent_ids]
    assert [m.message_id for m in cloud.received("CP1")] == sent
    assert cp.stats.answered == cp.stats.sent


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_remote_start_and_stop_from_the_cloud(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    await cp.plug_in(1, CarSpec())
    answer = await cloud.remote_start("CP1", GOOD_TAG, connector_id=1)
    assert answer["status"] == "Accepted"
    await wait_for(lambda: cp.transaction(1) is not None, what="remote start")
    tx = cp.transaction(1)
    assert tx is not None
    await wait_for(lambda: tx.transaction_id is not None, what="transaction id")
    assert tx.transaction_id is not None
    answer = await cloud.remote_stop("CP1", tx.transaction_id)
    assert answer["status"] == "Accepted"
    await wait_for(lambda: cp.transaction(1) is None and len(cp.outbox) == 0, what="remote stop")
    cloud_tx = cloud.charge_points["CP1"].transactions[tx.transaction_id]
    assert cloud_tx.ended
    assert cloud_tx.stop_reason == "Remote"
    answer = await cloud.remote_stop("CP1", tx.transaction_id)
    assert answer["status"] == "Rejected", "no such transaction any more"


async def test_basic_auth_lets_the_right_password_in_only(start_cp: StartCp) -> None:
    async with SimCloud(passwords={"CP1": "s3cret-key-16by!", "CP2": "other"}) as cloud:
        good = await start_cp(fast_config(cloud.url, "ocpp1.6", password="s3cret-key-16by!"))
        bad = await start_cp(
            fast_config(cloud.url, "ocpp1.6", "CP2", password="wrong"), wait_online=False
        )
        await wait_for(lambda: cloud.rejected_connections >= 2, what="two refused attempts")
        assert good.connected
        assert not bad.connected
        assert "401" in (bad.session.last_connect_error or "")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_dropped_link_reconnects_without_a_new_boot(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    boot_statuses = 2 if protocol == "ocpp1.6" else 1  # 1.6 also reports connector 0
    await wait_for(
        lambda: cp.stats.answered["StatusNotification"] == boot_statuses,
        what="boot statuses answered",
    )
    statuses = cloud.count("CP1", "StatusNotification")
    await cp.drop_connection()
    await wait_for(lambda: cp.session.connect_count == 2 and cp.connected, what="reconnected")
    assert cloud.charge_points["CP1"].connect_count == 2
    assert cloud.count("CP1", "BootNotification") == 1, "a reconnect is not a reboot"
    await cp.plug_in(1, CarSpec())
    assert cloud.count("CP1", "StatusNotification") == statuses + 1, "only the change is sent"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_remote_start_before_the_car_arrives_starts_on_plug_in(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    answer = await cloud.remote_start("CP1", GOOD_TAG, connector_id=1, remote_start_id=77)
    assert answer["status"] == "Accepted"
    assert cp.transaction(1) is None, "waits for the car"
    await cp.plug_in(1, CarSpec())
    tx = cp.transaction(1)
    assert tx is not None
    assert tx.id_tag == GOOD_TAG
    await wait_for(lambda: len(cp.outbox) == 0 and len(cp.transaction_ids) == 1, what="delivered")
    if protocol == "ocpp2.0.1":
        started = cloud.received("CP1", "TransactionEvent")[0].payload
        assert started["triggerReason"] == "RemoteStart"
        assert started["transactionInfo"]["remoteStartId"] == 77
