"""The SetChargingProfile frames the broker writes, byte for byte: the station's profiles
(TxDefaultProfile, ChargePointMaxProfile / ChargingStationMaxProfile) and a transaction's
TxProfiles, OCPP 1.6 and 2.0.1, in amperes and in watts, through the real broker to a raw
charge point on a real websocket. The expected texts were taken from the broker before its
per-frame work was cut (templates, prepared JSON): any change to what goes on the wire (key order,
number formatting, spacing) fails here, not only a change in meaning. Only the edge's message
ids, the 1.6 transaction id the cloud minted and a max profile's start time (now) vary by run."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.energy_messages import ConnectorLimit, ProfileBatch
from actors.utc import format_utc
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, cloud_and_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_profile_batches import ENERGY, running_tx
from tests.integration.sim.conftest import GOOD_TAG

TX_201 = "tx-pin-1"

# What the broker sends, in order (profile_frames.json, "<subprotocol> <unit>"): the station's two
# profiles, the transaction's TxProfile at the safe default (6 A) at its start, then the
# batches' 10.37 A (3 phases) and 7.25 A (a car seen on one phase: in watts over that one).
EXPECTED: dict[str, list[str]] = json.loads(
    (Path(__file__).parent / "profile_frames.json").read_text()
)


def normalized(text: str, tx: str) -> str:
    text = re.sub(r'^\[2,"edge-[0-9a-f]+",', '[2,"ID",', text)
    text = re.sub(r'"startSchedule":"[^"]*"', '"startSchedule":"NOW"', text)
    return text.replace(f'"transactionId":{tx}}}', '"transactionId":TX}')


def limit_batch(edge: Edge, limit_a: float, car_phases: int, sent_ns: int) -> ProfileBatch:
    return ProfileBatch(
        limits=(
            ConnectorLimit(
                charge_point_id="CP1",
                connector_id=1,
                limit_a=limit_a,
                phases=3,
                binding_source="grid_limit:fuse/L1",
                reason="test",
                car_phases=car_phases,
                transaction_id=running_tx(edge, "CP1"),
            ),
        ),
        default_limit_a=6.0,
        computed_utc="2026-01-01T00:00:00.000Z",
        trigger_monotonic_ns=sent_ns,
        full=False,
        sent_monotonic_ns=sent_ns,
    )


def profile_texts(cp: RawChargePoint) -> list[str]:
    return [
        t
        for t, c in zip(cp.received_texts, cp.received_calls, strict=True)
        if c[2] == ("SetChargingProfile")
    ]


async def start_16(cp: RawChargePoint, edge: Edge, unit: str) -> str:
    keys = [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
        {
            "key": "ChargingScheduleAllowedChargingRateUnit",
            "readonly": True,
            "value": "Current" if unit == "A" else "Power",
        },
    ]
    cp.answers["GetConfiguration"] = {"configurationKey": keys}
    cp.answers["SetChargingProfile"] = {"status": "Accepted"}
    await cp.connect(edge.url)
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    assert (await cp.call("BootNotification", boot))[2]["status"] == "Accepted"
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
    await cp.call("StatusNotification", status)
    now = format_utc(datetime.now(UTC))
    start = {"connectorId": 1, "idTag": GOOD_TAG, "meterStart": 0, "timestamp": now}
    return str((await cp.call("StartTransaction", start))[2]["transactionId"])


async def start_201(cp: RawChargePoint, edge: Edge, unit: str) -> str:
    cp.answers["GetVariables"] = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "8",
                "component": {"name": "SmartChargingCtrlr"},
                "variable": {"name": "ProfileStackLevel"},
            },
            {
                "attributeStatus": "Accepted",
                "attributeValue": unit,
                "component": {"name": "SmartChargingCtrlr"},
                "variable": {"name": "RateUnit"},
            },
        ]
    }
    cp.answers["SetChargingProfile"] = {"status": "Accepted"}
    await cp.connect(edge.url)
    boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
    assert (await cp.call("BootNotification", boot))[2]["status"] == "Accepted"
    now = format_utc(datetime.now(UTC))
    status = {"timestamp": now, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
    await cp.call("StatusNotification", status)
    event: dict[str, Any] = {
        "eventType": "Started",
        "timestamp": now,
        "seqNo": 1,
        "triggerReason": "Authorized",
        "transactionInfo": {"transactionId": TX_201},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": GOOD_TAG, "type": "ISO14443"},
    }
    await cp.call("TransactionEvent", event)
    return TX_201


@pytest.mark.parametrize(
    ("version", "unit"),
    [
        pytest.param("ocpp1.6", "A", id="1.6-A"),
        pytest.param("ocpp1.6", "W", id="1.6-W"),
        pytest.param("ocpp2.0.1", "A", id="2.0.1-A"),
        pytest.param("ocpp2.0.1", "W", id="2.0.1-W"),
    ],
)
async def test_the_profile_frames_are_the_ones_pinned(
    tmp_path: Path, version: str, unit: str
) -> None:
    async with cloud_and_edge(tmp_path, extra=ENERGY) as (_, edge):
        cp = RawChargePoint("CP1", version=version)
        try:
            start = start_16 if version == "ocpp1.6" else start_201
            tx = await start(cp, edge, unit)
            await wait_for(
                lambda: len(profile_texts(cp)) == 3, what="the station's profiles and the first"
            )
            for i, (limit_a, car_phases) in enumerate(((10.37, 0), (7.25, 1))):
                edge.system.send("broker/profiles", limit_batch(edge, limit_a, car_phases, i + 1))
                await wait_for(lambda n=4 + i: len(profile_texts(cp)) == n, what=f"batch {i}")
            got = [normalized(t, tx) for t in profile_texts(cp)]
            assert got == EXPECTED[f"{version} {unit}"]
        finally:
            await cp.close()
