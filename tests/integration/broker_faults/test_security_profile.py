"""Security profile 1 end to end: HTTP Basic at the edge, and the cloud password sent upstream.

The listener refuses a missing or wrong password with 401 and takes the right one; the edge opens
the charge point's cloud session with its ``cloud_password`` (the simulated cloud checks it). With
a cloud password the cloud does not know, the cloud refuses the session and the edge keeps the
charge point going on its own (and says why in the status).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

CP_PASSWORD = "cp1-secret-0123456789"
CLOUD_PASSWORD = "cloud-secret-for-CP1"
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "Basic"}
CLOUD_INTERVAL_S = 30  # the edge answers with 300 s: tells who answered the boot


@pytest.mark.parametrize(
    "password",
    [
        pytest.param(None, id="no-password"),
        pytest.param("cp1-secret-0123456780", id="wrong-password"),
        pytest.param(CLOUD_PASSWORD, id="the-cloud-password"),
    ],
)
async def test_a_charge_point_without_its_password_is_refused_401(
    tmp_path: Path, password: str | None
) -> None:
    cloud = SimCloud(heartbeat_interval_s=CLOUD_INTERVAL_S, passwords={"CP1": CLOUD_PASSWORD})
    await cloud.start()
    text = site_toml(
        tmp_path,
        cloud_url=cloud.url,
        listener={"security_profile": 1},
        charge_points={"CP1": {"password": CP_PASSWORD, "cloud_password": CLOUD_PASSWORD}},
    )
    edge = await start_edge(tmp_path, text)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await RawChargePoint("CP1").connect(edge.url, password=password)
        assert refused.value.response.status_code == 401
        assert not edge.cp("CP1")["connected"]
    finally:
        await edge.stop()
        await cloud.stop()


@pytest.mark.parametrize(
    ("cloud_knows", "answered_by_cloud"),
    [
        pytest.param(CLOUD_PASSWORD, True, id="cloud-password-right"),
        pytest.param("another-cloud-secret", False, id="cloud-password-wrong"),
    ],
)
async def test_the_right_password_works_and_the_cloud_password_goes_upstream(
    tmp_path: Path, cloud_knows: str, answered_by_cloud: bool
) -> None:
    cloud = SimCloud(heartbeat_interval_s=CLOUD_INTERVAL_S, passwords={"CP1": cloud_knows})
    await cloud.start()
    text = site_toml(
        tmp_path,
        cloud_url=cloud.url,
        listener={"security_profile": 1},
        charge_points={"CP1": {"password": CP_PASSWORD, "cloud_password": CLOUD_PASSWORD}},
        cloud={"answer_deadline_s": 1},
    )
    edge = await start_edge(tmp_path, text)
    try:
        cp = await RawChargePoint("CP1").connect(edge.url, password=CP_PASSWORD)
        if answered_by_cloud:
            await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
        else:
            await wait_for(lambda: cloud.rejected_connections > 0, what="the cloud refusing")
        boot = await cp.call("BootNotification", BOOT)
        assert boot[2]["status"] == "Accepted"
        assert edge.cp("CP1")["connected"]
        if answered_by_cloud:
            assert boot[2]["interval"] == CLOUD_INTERVAL_S
            assert cloud.count("CP1", "BootNotification") == 1
            assert cloud.rejected_connections == 0
        else:
            assert boot[2]["interval"] == 300, "answered by the edge"
            assert cloud.count("CP1", "BootNotification") == 0
            assert not edge.cloud("CP1")["online"]
            assert "401" in str(edge.cloud("CP1")["last_error"])
        await cp.close()
    finally:
        await edge.stop()
        await cloud.stop()
