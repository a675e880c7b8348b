"""The station's profiles through the real broker and a raw 1.6 charge point: the
ChargePointMaxProfile goes "where supported" (one that refuses it does not get it again), a
refused safe TxDefaultProfile is counted and named in the status, and a BootNotification on a
live connection (a controller that restarted under its modem's link) installs them again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_cloud_profiles import calls
from tests.integration.broker.test_profile_batches import ENERGY

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def purposes(cp: RawChargePoint) -> list[str]:
    """The purpose of each SetChargingProfile the charge point got, in order."""
    return [
        str(c[3]["csChargingProfiles"]["chargingProfilePurpose"])
        for c in calls(cp, "SetChargingProfile")
    ]


def station(edge: Edge) -> dict[str, str]:
    answers: dict[str, str] = edge.cp("CP1")["energy"]["station_profiles"]
    return answers


def idle(edge: Edge) -> bool:
    """No call of the broker's to the charge point unanswered or waiting."""
    report = edge.cp("CP1")
    return report["pending_calls"] == 0 and report["down_queue"] == 0


def profiles(edge: Edge) -> dict[str, Any]:
    report: dict[str, Any] = edge.system.actor("broker/profiles").report()
    return report


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (_, edge):
        yield edge


async def connect(edge: Edge, refuse: str, *, boot: bool = True) -> RawChargePoint:
    """A 1.6 charge point that refuses profiles of purpose ``refuse``, connected to ``edge``
    (and booted)."""
    cp = RawChargePoint("CP1")
    cp.answers["GetConfiguration"] = {"configurationKey": []}

    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        purpose = payload["csChargingProfiles"]["chargingProfilePurpose"]
        return {"status": "Rejected" if purpose == refuse else "Accepted"}

    cp.answers["SetChargingProfile"] = answer
    await cp.connect(edge.url)
    if boot:
        assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
    return cp


async def test_a_charge_point_without_a_max_profile_does_not_get_it_again(edge: Edge) -> None:
    """Refused once: not on its next connections (capabilities learned again, the same), and no
    fault; a BootNotification (on a live link: a controller restarted, perhaps on new
    firmware) tries it once more."""
    cp = await connect(edge, refuse="ChargePointMaxProfile")
    try:
        await wait_for(
            lambda: station(edge) == {"TxDefaultProfile": "Accepted", "max profile": "Rejected"},
            what="both station profiles answered",
        )
        assert purposes(cp) == ["TxDefaultProfile", "ChargePointMaxProfile"]
    finally:
        await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="the link gone")
    cp = await connect(edge, refuse="ChargePointMaxProfile", boot=False)  # back, no boot
    try:
        await wait_for(lambda: len(purposes(cp)) >= 1 and idle(edge), what="its station profiles")
        assert purposes(cp) == ["TxDefaultProfile"], "not the refused max profile"
        assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
        await wait_for(lambda: len(purposes(cp)) >= 3 and idle(edge), what="after the boot")
        assert purposes(cp)[1:] == ["TxDefaultProfile", "ChargePointMaxProfile"]
        assert profiles(edge)["profiles_rejected"] == 0, "an unsupported max profile is no fault"
    finally:
        await cp.close()


async def test_a_refused_safe_default_is_counted_and_named(edge: Edge) -> None:
    cp = await connect(edge, refuse="TxDefaultProfile")
    try:
        await wait_for(
            lambda: profiles(edge)["last_rejection"] == "CP1/0: TxDefaultProfile Rejected",
            what="the refusal in the broker's status",
        )
        assert profiles(edge)["profiles_rejected"] == 1
        assert station(edge)["TxDefaultProfile"] == "Rejected"
    finally:
        await cp.close()
