"""A transaction message the charge point sends again on the same connection while its first copy
still waits for the cloud (the charge point timed out before answer_deadline_s): a 1.6
StopTransaction or transaction MeterValues, a 2.0.1 TransactionEvent (its seqNo the same). The
copy already queued is that message: the cloud gets it ONCE (two stops for one transaction), the
retry is answered when the first copy is. A different message (other values, another seqNo) that
comes while one waits is its own and reaches the cloud as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers import timeout_s, wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_retried_start import CLOUD_TX_ID, SLOW_EXTRA, START, HeldCloud

STOP = {"transactionId": CLOUD_TX_ID, "meterStop": 1500, "timestamp": "2026-11-28T10:30:00Z"}


def meter_values(at: str, energy_wh: int) -> dict[str, Any]:
    sample = {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register"}
    return {
        "connectorId": 1,
        "transactionId": CLOUD_TX_ID,
        "meterValue": [{"timestamp": at, "sampledValue": [sample]}],
    }


def event(seq_no: int, event_type: str = "Updated", energy_wh: int = 1200) -> dict[str, Any]:
    sample = {"value": energy_wh, "measurand": "Energy.Active.Import.Register"}
    return {
        "eventType": event_type,
        "timestamp": f"2026-11-28T10:{10 + seq_no:02d}:00Z",
        "triggerReason": "MeterValuePeriodic" if event_type == "Updated" else "StopAuthorized",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "tx-201"},
        "meterValue": [
            {"timestamp": f"2026-11-28T10:{10 + seq_no:02d}:00Z", "sampledValue": [sample]}
        ],
    }


STARTED = {
    "eventType": "Started",
    "timestamp": "2026-11-28T10:00:00Z",
    "triggerReason": "CablePluggedIn",
    "seqNo": 0,
    "transactionInfo": {"transactionId": "tx-201"},
    "evse": {"id": 1, "connectorId": 1},
}
# The new car's draw on EVSE 1, after its Started event
POWER_SAMPLE = {
    "evseId": 1,
    "meterValue": [
        {
            "timestamp": "2026-11-28T10:00:05Z",
            "sampledValue": [{"value": 7400, "measurand": "Power.Active.Import"}],
        }
    ],
}


def evse_power_w(edge: Edge) -> object:
    return edge.cp("CP1")["meter"].get("1:1", {}).get("power_w")


@pytest.fixture
async def cloud_16() -> AsyncIterator[HeldCloud]:
    cloud = HeldCloud(held=("StopTransaction", "MeterValues"))
    await cloud.start()
    yield cloud
    await cloud.stop()


@pytest.fixture
async def cloud_201() -> AsyncIterator[HeldCloud]:
    cloud = HeldCloud(held=("TransactionEvent",), subprotocol="ocpp2.0.1")
    await cloud.start()
    yield cloud
    await cloud.stop()


async def started_16(edge: Edge) -> RawChargePoint:
    """A 1.6 charge point booted, its transaction started (answered by the cloud at once)."""
    cp = await RawChargePoint("CP1").connect(edge.url)
    await cp.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
    start = await cp.call("StartTransaction", START)
    assert start[2]["transactionId"] == CLOUD_TX_ID, start
    return cp


async def booted_201(edge: Edge) -> RawChargePoint:
    cp = await RawChargePoint("CP1", version="ocpp2.0.1").connect(edge.url)
    boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
    await cp.call("BootNotification", boot)
    await wait_for(lambda: edge.cloud("CP1")["online"], what="the cloud session")
    return cp


async def first_copy_waiting(
    cloud: HeldCloud, cp: RawChargePoint, message_id: str, action: str, payload: dict[str, Any]
) -> None:
    """The charge point sends a call and stops waiting for it; the cloud holds its answer."""
    assert cp.ws is not None
    before = len(cloud.calls(action))
    await cp.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
    await wait_for(lambda: len(cloud.calls(action)) == before + 1, what=f"the {action} sent up")


async def delivered(edge: Edge, cloud: HeldCloud) -> None:
    cloud.release.set()
    await wait_for(
        lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="everything delivered"
    )
    assert edge.cloud("CP1")["dead_letters"] == 0


RETRY_IDS = [
    pytest.param("m9", id="a-new-message-id"),
    pytest.param("first", id="the-same-frame-again"),
]


@pytest.mark.parametrize("retry_id", RETRY_IDS)
@pytest.mark.parametrize(
    ("action", "payload"),
    [
        pytest.param("StopTransaction", STOP, id="StopTransaction"),
        pytest.param("MeterValues", meter_values("2026-11-28T10:20:00Z", 1300), id="MeterValues"),
    ],
)
async def test_a_16_transaction_message_retried_while_its_first_copy_waits_reaches_the_cloud_once(
    tmp_path: Path, cloud_16: HeldCloud, retry_id: str, action: str, payload: dict[str, Any]
) -> None:
    edge = await start_edge(tmp_path, cloud_url=cloud_16.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await started_16(edge)
        await first_copy_waiting(cloud_16, cp, "first", action, payload)
        again = await cp.send_frame(
            [2, retry_id, action, payload], retry_id, timeout_s=timeout_s(10)
        )
        assert again == [3, retry_id, {}], "answered by the edge at the first copy's deadline"
        assert edge.cloud("CP1")["queue_depth"] == 1, "the retry is not queued a second time"
        await delivered(edge, cloud_16)
        sent = cloud_16.calls(action)
        assert [(f[1], f[3]) for f in sent] == [("first", payload)], "one message, not two"
        if action == "StopTransaction":
            assert edge.cp("CP1")["transactions"] == {}, "stopped at the edge"
        await cp.close()
    finally:
        await edge.stop()


async def test_the_next_16_meter_values_while_the_last_waits_is_its_own_message(
    tmp_path: Path, cloud_16: HeldCloud
) -> None:
    """The same transaction's next sample (another timestamp and value) while the last one
    still waits: not a retry, both reach the cloud, in order; then the stop."""
    edge = await start_edge(tmp_path, cloud_url=cloud_16.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await started_16(edge)
        first = meter_values("2026-11-28T10:20:00Z", 1300)
        second = meter_values("2026-11-28T10:21:00Z", 1400)
        same_time = meter_values("2026-11-28T10:21:00Z", 1450)  # its value only differs
        await first_copy_waiting(cloud_16, cp, "first", "MeterValues", first)
        for payload in (second, same_time):
            answer = await cp.call("MeterValues", payload, timeout_s=timeout_s(10))
            assert answer[0] == 3, answer
        stop = await cp.call("StopTransaction", STOP, timeout_s=timeout_s(10))
        assert stop[0] == 3, stop
        assert edge.cloud("CP1")["queue_depth"] == 4
        await delivered(edge, cloud_16)
        assert [f[3] for f in cloud_16.calls("MeterValues")] == [first, second, same_time]
        assert [f[3] for f in cloud_16.calls("StopTransaction")] == [STOP]
        await cp.close()
    finally:
        await edge.stop()


@pytest.mark.parametrize("retry_id", RETRY_IDS)
@pytest.mark.parametrize("event_type", ["Updated", "Ended"])
async def test_a_transaction_event_retried_while_its_first_copy_waits_reaches_the_cloud_once(
    tmp_path: Path, cloud_201: HeldCloud, retry_id: str, event_type: str
) -> None:
    """2.0.1: the same event again (its seqNo the same: a station resends the event as it was)."""
    edge = await start_edge(tmp_path, cloud_url=cloud_201.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await booted_201(edge)
        payload = event(1, event_type)
        await first_copy_waiting(cloud_201, cp, "first", "TransactionEvent", payload)
        again = await cp.send_frame(
            [2, retry_id, "TransactionEvent", payload], retry_id, timeout_s=timeout_s(10)
        )
        assert again == [3, retry_id, {}], "answered by the edge at the first copy's deadline"
        assert edge.cloud("CP1")["queue_depth"] == 1, "the retry is not queued a second time"
        await delivered(edge, cloud_201)
        sent = cloud_201.calls("TransactionEvent")
        assert [(f[1], f[3]) for f in sent] == [("first", payload)], "one event, not two"
        await cp.close()
    finally:
        await edge.stop()


async def test_the_next_transaction_event_while_the_last_waits_is_its_own_event(
    tmp_path: Path, cloud_201: HeldCloud
) -> None:
    """The next event (seqNo + 1), and one with the same seqNo but other content (a station's
    fault: not the same message, so not swallowed), while the first waits: each reaches the
    cloud."""
    edge = await start_edge(tmp_path, cloud_url=cloud_201.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await booted_201(edge)
        first, second, other = event(1), event(2), event(2, energy_wh=1250)
        await first_copy_waiting(cloud_201, cp, "first", "TransactionEvent", first)
        for payload in (second, other):
            answer = await cp.call("TransactionEvent", payload, timeout_s=timeout_s(10))
            assert answer[0] == 3, answer
        assert edge.cloud("CP1")["queue_depth"] == 3
        await delivered(edge, cloud_201)
        assert [f[3] for f in cloud_201.calls("TransactionEvent")] == [first, second, other]
        await cp.close()
    finally:
        await edge.stop()


async def test_a_started_event_retried_while_its_first_copy_waits_keeps_the_sample_since(
    tmp_path: Path, cloud_201: HeldCloud
) -> None:
    """The EVSE's sample is forgotten when a transaction starts (its last car's draw is not the
    new car's), at the first copy of the Started event: the car's sample that came in between
    is kept when the station sends the event again."""
    edge = await start_edge(tmp_path, cloud_url=cloud_201.url, cloud_extra=SLOW_EXTRA)
    try:
        cp = await booted_201(edge)
        await first_copy_waiting(cloud_201, cp, "first", "TransactionEvent", STARTED)
        assert cp.ws is not None
        await cp.ws.send(orjson.dumps([2, "mv", "MeterValues", POWER_SAMPLE]).decode())
        await wait_for(lambda: evse_power_w(edge) == 7400.0, what="the sample taken")
        again = await cp.send_frame(
            [2, "m9", "TransactionEvent", STARTED], "m9", timeout_s=timeout_s(10)
        )
        assert again[0] == 3, again
        assert evse_power_w(edge) == 7400.0, "the retried Started forgot the new car's sample"
        await delivered(edge, cloud_201)
        assert len(cloud_201.calls("TransactionEvent")) == 1
        await cp.close()
    finally:
        await edge.stop()
