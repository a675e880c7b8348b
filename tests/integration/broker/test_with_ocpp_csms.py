"""The broker between a bare 1.6 charge point and a real third-party CSMS (PyPI ocpp-csms).

Online it is transparent both ways; with the cloud down the edge answers, queues the transaction
in order, and replays it when the cloud returns, under the cloud's own transaction id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp_csms import (
    CentralSystem,
    MeterValuesEvent,
    TransactionStartedEvent,
    TransactionStoppedEvent,
)
from ocpp_csms.exceptions import CsmsCallError

from tests.helpers import wait_for
from tests.integration.broker.edge import Edge, start_edge
from tests.integration.broker.raw_cp import RawChargePoint

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Fast-22"}


class Cloud:
    """ocpp-csms on a fixed loopback port, stoppable and restartable (an outage)."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.port = 0
        self.cs: CentralSystem | None = None

    async def start(self) -> None:
        self.cs = CentralSystem(host="127.0.0.1", port=self.port, heartbeat_interval=30)
        self.cs.add_listener(self.events.append)
        await self.cs.async_start()
        self.port = self.cs.port

    async def stop(self) -> None:
        if self.cs is not None:
            await self.cs.async_stop()
            self.cs = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    c = Cloud()
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def edge(tmp_path: Path, cloud: Cloud) -> AsyncIterator[Edge]:
    e = await start_edge(
        tmp_path,
        cloud_url=cloud.url,
        charge_points=("CP1", "CP2"),
        cloud_extra="answer_deadline_s = 2\nlinger_s = 30\nretry_backoff_min_s = 0.2",
    )
    yield e
    await e.stop()


async def booted(edge: Edge, cp_id: str = "CP1") -> RawChargePoint:
    cp = await RawChargePoint(cp_id).connect(edge.url)
    answer = await cp.call("BootNotification", BOOT)
    assert answer[2]["status"] == "Accepted"
    return cp


async def test_online_relay_is_transparent_both_ways(edge: Edge, cloud: Cloud) -> None:
    cp = await booted(edge)
    await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
    boot = await cp.call("BootNotification", BOOT)
    assert boot[2]["interval"] == 30, (
        "the cloud's own answer (its heartbeat interval), not the edge's"
    )
    await cp.call(
        "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    )
    assert cloud.cs is not None
    await wait_for(lambda: "CP1" in cloud.cs.charge_points, what="cloud sees CP1")
    cloud_cp = cloud.cs.charge_points["CP1"]
    await wait_for(
        lambda: cloud_cp.boot is not None and 1 in cloud_cp.connectors,
        what="boot and status relayed",
    )
    assert cloud_cp.boot.vendor == "Acme"

    cp.answers["RemoteStartTransaction"] = {"status": "Accepted"}
    cp.answers["ChangeConfiguration"] = {"status": "Rejected"}
    assert await cloud_cp.async_remote_start_transaction("TAG-1", connector_id=1) == "Accepted"
    assert await cloud_cp.async_change_configuration("HeartbeatInterval", "60") == "Rejected"
    actions = [c[2] for c in cp.received_calls]
    assert actions == ["RemoteStartTransaction", "ChangeConfiguration"]
    assert cp.received_calls[0][3] == {"idTag": "TAG-1", "connectorId": 1}
    await cp.close()


async def test_a_call_for_a_disconnected_charge_point_gets_a_callerror(
    edge: Edge, cloud: Cloud
) -> None:
    cp = await booted(edge)
    await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
    assert cloud.cs is not None
    await wait_for(lambda: "CP1" in cloud.cs.charge_points, what="cloud sees CP1")
    await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="edge sees CP1 gone")
    # The session lingers (linger_s): the cloud's call is answered with a CALLERROR, not silence.
    with pytest.raises(CsmsCallError):
        await asyncio.wait_for(cloud.cs.charge_points["CP1"].async_reset(), 5)


async def test_a_transaction_while_the_cloud_is_down_is_replayed_under_the_clouds_id(
    edge: Edge, cloud: Cloud
) -> None:
    cp = await booted(edge)
    await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
    await cloud.stop()
    await wait_for(lambda: not edge.cloud("CP1")["online"], what="edge sees the outage")

    start = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "TAG-1",
            "meterStart": 1000,
            "timestamp": "2026-11-28T10:00:00Z",
        },
    )
    edge_id = start[2]["transactionId"]
    assert edge_id >= 2_000_000_000, "minted by the edge from its own range"
    for i in range(1, 4):
        mv = await cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": edge_id,
                "meterValue": [
                    {
                        "timestamp": f"2026-11-28T10:0{i}:00Z",
                        "sampledValue": [{"value": str(1000 + i * 100)}],
                    }
                ],
            },
        )
        assert mv[2] == {}
    stop = await cp.call(
        "StopTransaction",
        {"transactionId": edge_id, "meterStop": 1400, "timestamp": "2026-11-28T10:05:00Z"},
    )
    assert stop[2] == {}
    assert edge.cloud("CP1")["queue_depth"] == 5

    await cloud.start()
    await wait_for(
        lambda: edge.cloud("CP1")["queue_depth"] == 0, timeout=15, what="backlog replayed"
    )
    started = cloud.of(TransactionStartedEvent)
    assert len(started) == 1
    cloud_id = started[0].transaction.transaction_id
    assert cloud_id != edge_id
    assert started[0].transaction.meter_start == 1000
    meter = [e for e in cloud.of(MeterValuesEvent) if e.charge_point_id == "CP1"]
    assert [e.transaction_id for e in meter] == [cloud_id] * 3, (
        "every later message under the cloud's id"
    )
    assert [e.readings[0].value for e in meter] == ["1100", "1200", "1300"], "in order"
    stopped = cloud.of(TransactionStoppedEvent)
    assert [s.transaction.transaction_id for s in stopped] == [cloud_id]
    assert stopped[0].transaction.meter_stop == 1400
    order = [
        type(e).__name__
        for e in cloud.events
        if isinstance(e, TransactionStartedEvent | MeterValuesEvent | TransactionStoppedEvent)
    ]
    assert order == [
        "TransactionStartedEvent",
        "MeterValuesEvent",
        "MeterValuesEvent",
        "MeterValuesEvent",
        "TransactionStoppedEvent",
    ]
    assert edge.cp("CP1")["transactions"] == {}, "stopped"
    assert edge.cloud("CP1")["replayed"] == 5
    await cp.close()


async def test_remote_stop_from_the_cloud_reaches_the_charge_point_under_the_edge_id(
    edge: Edge, cloud: Cloud
) -> None:
    cp = await booted(edge)
    await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
    await cloud.stop()
    await wait_for(lambda: not edge.cloud("CP1")["online"], what="edge sees the outage")
    start = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": "2026-11-28T10:00:00Z"},
    )
    edge_id = start[2]["transactionId"]
    await cloud.start()
    await wait_for(
        lambda: len(cloud.of(TransactionStartedEvent)) == 1, timeout=15, what="start replayed"
    )
    cloud_id = cloud.of(TransactionStartedEvent)[0].transaction.transaction_id
    await wait_for(
        lambda: edge.cp("CP1")["transactions"].get(str(edge_id), {}).get("cloud_id") == cloud_id,
        what="mapping known to the charge point actor",
    )
    cp.answers["RemoteStopTransaction"] = {"status": "Accepted"}
    assert cloud.cs is not None
    result = await cloud.cs.charge_points["CP1"].async_remote_stop_transaction(cloud_id)
    assert result == "Accepted"
    assert cp.received_calls[-1][2:] == ["RemoteStopTransaction", {"transactionId": edge_id}]
    await cp.close()


async def test_a_retried_start_is_answered_with_the_same_transaction(
    edge: Edge, cloud: Cloud
) -> None:
    cp = await booted(edge)
    payload = {
        "connectorId": 2,
        "idTag": "TAG-9",
        "meterStart": 5,
        "timestamp": "2026-11-28T09:00:00Z",
    }
    first = await cp.call("StartTransaction", payload)
    again = await cp.call("StartTransaction", payload)
    assert again[2]["transactionId"] == first[2]["transactionId"]
    await wait_for(lambda: edge.cloud("CP1")["queue_depth"] == 0, what="delivered")
    assert len(cloud.of(TransactionStartedEvent)) == 1, "never a second transaction at the cloud"
    await cp.close()


async def test_the_other_charge_point_is_unaffected_by_an_outage_of_its_neighbours_cloud_link(
    edge: Edge, cloud: Cloud
) -> None:
    a = await booted(edge, "CP1")
    b = await booted(edge, "CP2")
    await wait_for(
        lambda: edge.cloud("CP1")["online"] and edge.cloud("CP2")["online"], what="sessions"
    )
    link = edge.system.cells["broker/cloud/CP1"]
    link.kill()  # the CloudLink of CP1 dies; its supervisor restarts it with backoff
    hb = await b.call("Heartbeat", {})
    assert hb[0] == 3
    await wait_for(
        lambda: edge.system.cells["broker/cloud/CP1"].running, what="CP1's link restarted"
    )
    assert (await a.call("Heartbeat", {}))[0] == 3

    def restarts() -> list[tuple[str, str]]:
        from drivers.store.audit_log import records_after

        return [
            (r.actor, r.decision)
            for r in records_after(edge.system.store)
            if r.kind.value == "restart"
        ]

    await wait_for(lambda: bool(restarts()), what="the restart recorded in the audit trail")
    actor, decision = restarts()[0]
    assert actor == "broker/cloud/CP1"
    assert decision.startswith("restart CP1 in "), "with its backoff delay"
    await a.close()
    await b.close()
