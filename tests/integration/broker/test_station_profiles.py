"""The station's profiles through the real broker and a raw 1.6 charge point: the
ChargePointMaxProfile goes "where supported" (one that refuses it does not get it again), a
refused safe TxDefaultProfile is counted and named in the status, and a BootNotification on a
live connection (a controller that restarted under its modem's link) installs them again. A
configuration key the broker cannot read costs that key alone its value."""

from __future__ import annotations

import logging
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


async def test_a_rate_unit_not_understood_keeps_the_stack_level_it_reports(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    """A charge point that reports ChargeProfileMaxStackLevel 20 and a rate unit the broker
    cannot read ("Current Power"): its stack level was reset to 0 with it, silently, so the
    edge's profiles went at level 0 (under any the cloud set above it, which then overrode the
    edge's limits). The level read stands; the unit falls back to A or W, with a log line
    naming the value."""
    caplog.set_level(logging.WARNING, logger="actors")
    cp = RawChargePoint("CP1")
    keys = [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "20"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Current Power"},
    ]
    cp.answers["GetConfiguration"] = {"configurationKey": keys}
    cp.answers["SetChargingProfile"] = {"status": "Accepted"}
    await cp.connect(edge.url)
    try:
        assert (await cp.call("BootNotification", BOOT))[2]["status"] == "Accepted"
        await wait_for(lambda: len(purposes(cp)) >= 2 and idle(edge), what="station profiles")
        levels = {c[3]["csChargingProfiles"]["stackLevel"] for c in calls(cp, "SetChargingProfile")}
        assert levels == {20}
        assert edge.cp("CP1")["energy"]["caps"] == {"max_stack_level": 20, "rate_units": ["A", "W"]}
        logged = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING
            and "ChargingScheduleAllowedChargingRateUnit" in r.getMessage()
        ]
        assert len(logged) == 1
        assert logged[0].startswith("CP1: ")
        assert "'Current Power'" in logged[0]
    finally:
        await cp.close()
