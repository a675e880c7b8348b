"""Strict mode (``[cloud] mode = "strict"``, the 2.0.1 Local Controller rule).

When the cloud goes, the charge point's socket is closed (1013, try again later); while it is away
a new connection is closed at once; when it is back the charge point connects and works, answered
by the cloud itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from sim.cloud import SimCloud
from tests.helpers import timeout_s, wait_for
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Strict"}
TRY_AGAIN_LATER = 1013


async def closed_with(cp: RawChargePoint) -> tuple[int | None, str]:
    assert cp.closed is not None
    return await asyncio.wait_for(cp.closed, timeout_s(5))


async def test_strict_mode_closes_charge_points_while_the_cloud_is_away(
    tmp_path: Path, cloud: SimCloud
) -> None:
    text = site_toml(
        tmp_path,
        cloud_url=cloud.url,
        cloud={"mode": "strict"},
        charge_points={"CP1": {"ocpp_version": "1.6"}},
    )
    edge = await start_edge(tmp_path, text)
    try:
        await wait_for(lambda: edge.cloud("CP1")["online"], what="strict: the session is kept")
        cp = await RawChargePoint("CP1").connect(edge.url)
        boot = await cp.call("BootNotification", BOOT)
        assert boot[2]["interval"] == 300, "answered by the cloud, not the edge"
        assert cloud.count("CP1", "BootNotification") == 1

        await cloud.stop()
        code, reason = await closed_with(cp)
        assert code == TRY_AGAIN_LATER, reason

        refused = await RawChargePoint("CP1").connect(edge.url)
        code, reason = await closed_with(refused)
        assert code == TRY_AGAIN_LATER, "a new connection is closed while the cloud is away"
        assert edge.cloud("CP1")["queue_depth"] == 0, "nothing was taken on"

        await cloud.start()
        await wait_for(
            lambda: edge.cloud("CP1")["online"] and edge.cp("CP1")["cloud_online"],
            timeout=10,
            what="cloud back",
        )
        again = await RawChargePoint("CP1").connect(edge.url)
        heartbeats = cloud.charge_points["CP1"].heartbeats
        assert (await again.call("Heartbeat", {}))[0] == 3
        assert cloud.charge_points["CP1"].heartbeats == heartbeats + 1, "relayed to the cloud"
        start = await again.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 7, "timestamp": "2026-11-28T11:00:00Z"},
        )
        assert start[2]["transactionId"] < 2_000_000_000, "the cloud's id, not an edge-minted one"
        assert edge.cp("CP1")["connected"]
        await again.close()
    finally:
        await edge.stop()


async def test_strict_mode_accepts_a_first_connection_while_the_cloud_is_up(
    tmp_path: Path, cloud: SimCloud
) -> None:
    text = site_toml(tmp_path, cloud_url=cloud.url, cloud={"mode": "strict"})
    edge = await start_edge(tmp_path, text)
    try:
        cp = await RawChargePoint("CP1").connect(edge.url)
        try:
            boot = await cp.call("BootNotification", BOOT, timeout_s=timeout_s(5))
        except (TimeoutError, ConnectionClosed):
            code, reason = await closed_with(cp)
            pytest.fail(f"first connection closed with {code} ({reason}) while the cloud is up")
        assert boot[2]["status"] == "Accepted"
        await cp.close()
    finally:
        await edge.stop()
