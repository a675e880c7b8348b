"""The cloud rotates a charge point's key (security profile 1) through the edge.

The cloud sends ChangeConfiguration AuthorizationKey (1.6) or SetVariables
SecurityCtrlr.BasicAuthPassword (2.0.1) to the charge point through the edge; the charge point
accepts. From then on the charge point connects to the edge with the new key, and the cloud
expects the new key from the edge's session for that identity. Before this, the edge kept asking
the charge point for the site file's password (locked out after the first reconnect) and sent the
cloud the old one (refused with 401).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from drivers.store.audit_log import AUDIT_TABLE, decode_record
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker_faults.site import site_toml, start_edge

SITE_KEY = "cp1-secret-0123456789"
CLOUD_KEY = "cloud-secret-for-CP1"
NEW_KEY = "rotated-by-the-cloud-42"
OPERATOR_KEY = "operator-wrote-this-key"


def records(edge: Edge) -> list[Any]:
    return [decode_record(v) for _, v in edge.system.store.scan(AUDIT_TABLE)]


async def refused(edge: Edge, password: str, version: str = "ocpp1.6") -> int:
    with pytest.raises(InvalidStatus) as exc:
        await RawChargePoint("CP1", version=version).connect(edge.url, password=password)
    return int(exc.value.response.status_code)


async def connects(edge: Edge, password: str, version: str = "ocpp1.6") -> None:
    cp = await RawChargePoint("CP1", version=version).connect(edge.url, password=password)
    await wait_for(lambda: edge.cp("CP1")["connected"], what="CP1 connected")
    await cp.close()
    await wait_for(lambda: not edge.cp("CP1")["connected"], what="CP1 gone")


async def profile_1_site(tmp_path: Path) -> tuple[SimCloud, str, Edge]:
    """A cloud that checks CP1's cloud key, and an edge whose listener asks CP1 for its own."""
    cloud = SimCloud(passwords={"CP1": CLOUD_KEY})
    await cloud.start()
    text = site_toml(
        tmp_path,
        cloud_url=cloud.url,
        listener={"security_profile": 1},
        charge_points={"CP1": {"password": SITE_KEY, "cloud_password": CLOUD_KEY}},
    )
    return cloud, text, await start_edge(tmp_path, text)


ROTATIONS = {
    "ocpp1.6": (
        "ChangeConfiguration",
        {"key": "AuthorizationKey", "value": NEW_KEY},
        {"status": "Accepted"},
    ),
    "ocpp2.0.1": (
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": NEW_KEY,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    ),
}


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_key_the_cloud_rotates_is_taken_by_the_listener_and_sent_upstream(
    tmp_path: Path, version: str
) -> None:
    cloud, text, edge = await profile_1_site(tmp_path)
    try:
        cp = await RawChargePoint("CP1", version=version).connect(edge.url, password=SITE_KEY)
        await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
        action, payload, answer = ROTATIONS[version]
        cp.answers[action] = answer
        assert await cloud.call("CP1", action, payload) == answer
        await wait_for(lambda: edge.cp("CP1")["key_rotation"] is not None, what="key kept")
        status = edge.cp("CP1")["key_rotation"]
        assert status["by"] == action
        assert status["previous_accepted"] is True
        assert NEW_KEY not in str(edge.cp("CP1"))
        assert NEW_KEY not in str(records(edge))
        rotated = [r for r in records(edge) if r.kind.value == "key_rotated"]
        assert len(rotated) == 1
        assert rotated[0].charge_point_id == "CP1"
        await cp.close()
        await wait_for(lambda: not edge.cp("CP1")["connected"], what="CP1 gone")

        # The old key still works until the charge point has used the new one; then only the new.
        await connects(edge, SITE_KEY, version)
        await connects(edge, NEW_KEY, version)
        await wait_for(
            lambda: edge.cp("CP1")["key_rotation"]["previous_accepted"] is False,
            what="previous key retired",
        )
        assert await refused(edge, SITE_KEY, version) == 401

        # The cloud now expects the new key from this identity: the edge's next session sends it.
        cloud.passwords = {"CP1": NEW_KEY}
        await cloud.stop()
        await cloud.start()
        rejected_before = cloud.rejected_connections
        cp = await RawChargePoint("CP1", version=version).connect(edge.url, password=NEW_KEY)
        await wait_for(lambda: cloud.connected("CP1"), what="cloud session with the new key")
        assert cloud.rejected_connections == rejected_before
        await cp.close()
    finally:
        await edge.stop()
        await cloud.stop()

    # Kept across a restart of the edge.
    edge = await start_edge(tmp_path, text)
    try:
        await connects(edge, NEW_KEY, version)
        assert await refused(edge, SITE_KEY, version) == 401
    finally:
        await edge.stop()

    # An operator who writes another password in the site file overrides the rotation.
    edge = await start_edge(
        tmp_path,
        text.replace(SITE_KEY, OPERATOR_KEY),
    )
    try:
        await connects(edge, OPERATOR_KEY, version)
        assert await refused(edge, NEW_KEY, version) == 401
        assert edge.cp("CP1")["key_rotation"]["in_force"] is False
    finally:
        await edge.stop()


async def test_a_key_the_charge_point_refuses_changes_nothing(tmp_path: Path) -> None:
    cloud, _, edge = await profile_1_site(tmp_path)
    try:
        cp = await RawChargePoint("CP1").connect(edge.url, password=SITE_KEY)
        await wait_for(lambda: edge.cloud("CP1")["online"], what="cloud session")
        cp.answers["ChangeConfiguration"] = {"status": "Rejected"}
        payload = {"key": "AuthorizationKey", "value": NEW_KEY}
        assert await cloud.call("CP1", "ChangeConfiguration", payload) == {"status": "Rejected"}
        # Another key accepted afterwards is not a rotation either.
        cp.answers["ChangeConfiguration"] = {"status": "Accepted"}
        payload = {"key": "HeartbeatInterval", "value": "60"}
        assert await cloud.call("CP1", "ChangeConfiguration", payload) == {"status": "Accepted"}
        await cp.close()
        await wait_for(lambda: not edge.cp("CP1")["connected"], what="CP1 gone")
        assert edge.cp("CP1")["key_rotation"] is None
        assert await refused(edge, NEW_KEY) == 401
        await connects(edge, SITE_KEY)
    finally:
        await edge.stop()
        await cloud.stop()


# --- the edge's own key at the cloud ---------------------------------------------------------

EDGE = "SITE-EDGE"
EDGE_KEY = "edge-key-from-the-site-file"
EDGE_NEW_KEY = "edge-key-the-cloud-set-7"


async def edge_session_site(tmp_path: Path) -> tuple[SimCloud, str, Edge]:
    """A cloud that checks the edge's own key, and an edge that opens its session."""
    cloud = SimCloud(passwords={EDGE: EDGE_KEY})
    await cloud.start()
    text = site_toml(
        tmp_path, cloud_url=cloud.url, cloud={"edge_identity": EDGE, "edge_password": EDGE_KEY}
    )
    edge = await start_edge(tmp_path, text)
    await wait_for(lambda: edge.cloud(EDGE)["online"], what="the edge's session")
    return cloud, text, edge


def endpoint(edge: Edge) -> dict[str, Any]:
    report: dict[str, Any] = edge.cp(EDGE)
    return report


async def rotate_edge_key(cloud: SimCloud, value: object) -> Any:
    return await cloud.call(
        EDGE, "ChangeConfiguration", {"key": "AuthorizationKey", "value": value}
    )


async def test_the_cloud_rotates_the_edges_own_key_and_the_edge_reconnects_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cloud, text, edge = await edge_session_site(tmp_path)
    caplog.set_level(logging.DEBUG)
    try:
        connects = edge.cloud(EDGE)["connects"]
        cloud.passwords = {EDGE: EDGE_NEW_KEY}  # the cloud keeps the key it sends
        assert await rotate_edge_key(cloud, EDGE_NEW_KEY) == {"status": "Accepted"}
        # It closes its session and opens the next with the new key (TC_073), refused never.
        await wait_for(
            lambda: edge.cloud(EDGE)["connects"] > connects and edge.cloud(EDGE)["online"],
            what="the edge's next session",
        )
        assert cloud.rejected_connections == 0
        status = endpoint(edge)["key_rotation"]
        assert status["by"] == "ChangeConfiguration"
        assert status["in_force"] is True
        # the session with the new key retires the old one
        await wait_for(
            lambda: endpoint(edge)["key_rotation"]["previous_kept"] is False,
            what="previous key retired",
        )
        assert EDGE_NEW_KEY not in str(endpoint(edge)) + str(edge.cloud(EDGE))
        assert EDGE_NEW_KEY not in str(records(edge))
        rotated = [r for r in records(edge) if r.kind.value == "key_rotated"]
        assert [(r.charge_point_id, r.decision) for r in rotated] == [(EDGE, "key rotated")]
        # The edge logs the rotation, never the key (the simulated cloud, on the ocpp package,
        # logs its own frames: not the edge's).
        edge_logs = "\n".join(
            r.getMessage() for r in caplog.records if not r.name.startswith(("ocpp", "sim."))
        )
        assert "rotated the edge's key" in edge_logs
        assert EDGE_NEW_KEY not in edge_logs
        # and the session it closed and the next, by name (websockets' own lines name neither)
        assert f"{EDGE}: cloud link down: " in edge_logs
        assert re.search(rf"{EDGE}: cloud link up \(session \d+, \d+ queued\)", edge_logs)
        # Any other configuration key: NotSupported, as a ChangeConfiguration answer.
        payload = {"key": "HeartbeatInterval", "value": "60"}
        assert await cloud.call(EDGE, "ChangeConfiguration", payload) == {"status": "NotSupported"}
        # The key is write-only: GetConfiguration never shows it, nor calls it unknown.
        everything = await cloud.call(EDGE, "GetConfiguration", {})
        assert everything == {"configurationKey": []}
        asked = await cloud.call(EDGE, "GetConfiguration", {"key": ["AuthorizationKey", "X"]})
        assert asked == {"configurationKey": [], "unknownKey": ["X"]}
    finally:
        await edge.stop()

    # Kept across a restart: the first session already uses the new key.
    edge = await start_edge(tmp_path, text)
    try:
        await wait_for(lambda: edge.cloud(EDGE)["online"], what="the edge's session")
        assert cloud.rejected_connections == 0
    finally:
        await edge.stop()

    # An operator who writes another edge_password in the site file overrides the rotation.
    cloud.passwords = {EDGE: "operator-wrote-this-edge-key"}
    edge = await start_edge(tmp_path, text.replace(EDGE_KEY, "operator-wrote-this-edge-key"))
    try:
        await wait_for(lambda: edge.cloud(EDGE)["online"], what="the edge's session")
        assert endpoint(edge)["key_rotation"]["in_force"] is False
        assert cloud.rejected_connections == 0
    finally:
        await edge.stop()
        await cloud.stop()


async def test_a_rotated_key_the_cloud_then_refuses_falls_back_to_the_previous(
    tmp_path: Path,
) -> None:
    cloud, _, edge = await edge_session_site(tmp_path)
    try:
        connects = edge.cloud(EDGE)["connects"]
        # The cloud answers nothing wrong but did not keep the key: 401 for the new one.
        assert await rotate_edge_key(cloud, EDGE_NEW_KEY) == {"status": "Accepted"}
        await wait_for(lambda: cloud.rejected_connections >= 1, what="the new key refused")
        await wait_for(
            lambda: edge.cloud(EDGE)["connects"] > connects and edge.cloud(EDGE)["online"],
            what="a session with the previous key",
        )
        assert endpoint(edge)["key_rotation"]["previous_kept"] is True
        # Once the cloud takes the new key, the next session opens with it and retires the old.
        cloud.passwords = {EDGE: EDGE_NEW_KEY}
        assert await rotate_edge_key(cloud, EDGE_NEW_KEY) == {"status": "Accepted"}
        await wait_for(
            lambda: endpoint(edge)["key_rotation"]["previous_kept"] is False,
            what="the new key in use",
        )
    finally:
        await edge.stop()
        await cloud.stop()


@pytest.mark.parametrize(
    "value", ["short", "x" * 41, "a-tab\tin-the-middle-of-it", "schlüssel-mit-umlaut"]
)
async def test_a_key_the_edge_cannot_use_is_rejected_and_changes_nothing(
    tmp_path: Path, value: str
) -> None:
    cloud, _, edge = await edge_session_site(tmp_path)
    try:
        connects = edge.cloud(EDGE)["connects"]
        assert await rotate_edge_key(cloud, value) == {"status": "Rejected"}
        assert endpoint(edge)["key_rotation"] is None
        assert edge.cloud(EDGE)["connects"] == connects
        assert edge.cloud(EDGE)["online"]
        await wait_for(
            lambda: (
                [r.decision for r in records(edge) if r.kind.value == "key_rotated"]
                == ["key refused"]
            ),
            what="the refusal recorded",
        )
        assert str(value) not in str(records(edge))
    finally:
        await edge.stop()
        await cloud.stop()
