"""A charge point that reboots mid-transaction and carries on with it (its controller restarted,
the car still plugged, the transaction kept with its id: no StopTransaction, no new start). The
reboot took its profiles; the broker installs its station profiles at the BootNotification, and
the transaction's TxProfile, at its last limit, once the charge point shows it running again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.utc import format_utc
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_profile_batches import ENERGY, batch
from tests.integration.sim.conftest import GOOD_TAG

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def tx_profiles(cp: RawChargePoint) -> list[tuple[int, float]]:
    """Each TxProfile the charge point got: (transaction id, limit)."""
    found = []
    for c in cp.received_calls:
        if c[2] != "SetChargingProfile":
            continue
        profile = c[3]["csChargingProfiles"]
        if profile["chargingProfilePurpose"] == "TxProfile":
            limit = profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            found.append((int(profile["transactionId"]), float(limit)))
    return found


CHARGING = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}


def station() -> RawChargePoint:
    """A 1.6 station that reports no configuration and accepts every profile."""
    cp = RawChargePoint("CP1")
    cp.answers["GetConfiguration"] = {"configurationKey": []}
    cp.answers["SetChargingProfile"] = {"status": "Accepted"}
    return cp


async def charging(cp: RawChargePoint, edge: Edge) -> int:
    """``cp`` connected, booted, its connector 1 charging a transaction: its id."""
    await cp.connect(edge.url)
    assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
    await cp.call("StatusNotification", CHARGING)
    now = format_utc(datetime.now(UTC))
    start = {"connectorId": 1, "idTag": GOOD_TAG, "meterStart": 0, "timestamp": now}
    tx_id: int = (await cp.call("StartTransaction", start))[2]["transactionId"]
    return tx_id


def idle(edge: Edge) -> bool:
    report = edge.cp("CP1")
    return report["pending_calls"] == 0 and report["down_queue"] == 0


@pytest.mark.parametrize(
    "shows",
    ["StatusNotification", "MeterValues"],
    ids=["its status charging", "its meter values"],
)
async def test_a_transaction_carried_on_through_a_reboot_gets_its_tx_profile_again(
    tmp_path: Path, shows: str
) -> None:
    """Paused by the site (0 A), the car was held by its TxProfile; after the reboot the
    charge point had the safe TxDefaultProfile alone (6 A), and the car drew it until the
    energy node's next full batch (60 s): flagged as ignoring its profile meanwhile."""
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (_, edge):
        cp = station()
        try:
            tx_id = await charging(cp, edge)
            await wait_for(lambda: bool(edge.cp("CP1")["transactions"]), what="its transaction")
            edge.system.send("broker/profiles", batch(edge, 0.0, sent_ns=1_000))
            await wait_for(
                lambda: idle(edge) and tx_profiles(cp)[-1:] == [(tx_id, 0.0)],
                what="the transaction paused by its TxProfile",
            )
            before = len(tx_profiles(cp))

            assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
            if shows == "StatusNotification":
                await cp.call("StatusNotification", {**CHARGING, "status": "Available"})
                await cp.call("StatusNotification", CHARGING)
            else:
                sample = {
                    "timestamp": format_utc(datetime.now(UTC)),
                    "sampledValue": [{"value": "100", "unit": "Wh"}],
                }
                await cp.call(
                    "MeterValues",
                    {"connectorId": 1, "transactionId": tx_id, "meterValue": [sample]},
                )
            await wait_for(
                lambda: tx_profiles(cp)[before:] == [(tx_id, 0.0)] and idle(edge),
                what="its TxProfile again, at 0 A",
            )
        finally:
            await cp.close()


async def test_a_transaction_the_reboot_ended_gets_no_tx_profile(tmp_path: Path) -> None:
    """The usual reboot: the charge point's first word about the connector after its boot is
    the end of the transaction (its queued StopTransaction): no TxProfile for it."""
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (_, edge):
        cp = station()
        try:
            tx_id = await charging(cp, edge)
            edge.system.send("broker/profiles", batch(edge, 10.0, sent_ns=1_000))
            await wait_for(lambda: idle(edge) and len(tx_profiles(cp)) >= 2, what="limit")
            before = len(tx_profiles(cp))
            assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
            stop: dict[str, Any] = {
                "transactionId": tx_id,
                "meterStop": 10,
                "timestamp": format_utc(datetime.now(UTC)),
            }
            await cp.call("StopTransaction", {**stop, "reason": "PowerLoss"})
            await cp.call("StatusNotification", {**CHARGING, "status": "Available"})
            await wait_for(lambda: not edge.cp("CP1")["transactions"], what="it ended")
            await wait_for(lambda: idle(edge), what="the station profiles answered")
            assert tx_profiles(cp)[before:] == []
        finally:
            await cp.close()
