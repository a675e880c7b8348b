"""Configuration, triggers, data transfer, local list and reset, sent by the simulated cloud."""

from __future__ import annotations

import json

import pytest

from sim.car import CarSpec
from sim.cloud import CloudCallError, SimCloud
from tests.helpers import wait_for
from tests.integration.sim.conftest import PROTOCOLS, StartCp, fast_config


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        pytest.param("MeterValueSampleInterval", "1", "Accepted", id="writable"),
        pytest.param("HeartbeatInterval", "ten", "Rejected", id="not-an-integer"),
        pytest.param("NumberOfConnectors", "4", "Rejected", id="read-only"),
        pytest.param("NoSuchKey", "1", "NotSupported", id="unknown"),
    ],
)
async def test_change_configuration(
    cloud: SimCloud, start_cp: StartCp, key: str, value: str, status: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, "ocpp1.6"))
    answer = await cloud.call("CP1", "ChangeConfiguration", {"key": key, "value": value})
    assert answer["status"] == status
    if status == "Accepted":
        assert cp.configuration[key].value == value
        assert cp.meter_interval_s() == float(value)


async def test_get_configuration_hides_the_authorization_key(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    await start_cp(fast_config(cloud.url, "ocpp1.6"))
    everything = await cloud.call("CP1", "GetConfiguration", {})
    keys = {k["key"] for k in everything["configurationKey"]}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", "ChargeProfileMaxStackLevel"} <= keys
    assert "AuthorizationKey" not in keys
    some = await cloud.call("CP1", "GetConfiguration", {"key": ["AuthorizationKey", "Nope"]})
    assert some["unknownKey"] == ["AuthorizationKey", "Nope"]
    assert "configurationKey" not in some or some["configurationKey"] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_trigger_message_sends_a_fresh_status(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    config = fast_config(cloud.url, protocol)
    await start_cp(config)
    # After boot: one status per connector, and in 1.6 one for the charge point (connector 0).
    boot = config.connectors + (1 if protocol == "ocpp1.6" else 0)
    await wait_for(lambda: cloud.count("CP1", "StatusNotification") >= boot, what="boot statuses")
    before = cloud.count("CP1", "StatusNotification")
    answer = await cloud.trigger_message("CP1", "StatusNotification")
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: cloud.count("CP1", "StatusNotification") == before + 1, what="triggered status"
    )
    heartbeats = cloud.count("CP1", "Heartbeat")
    assert (await cloud.trigger_message("CP1", "Heartbeat"))["status"] == "Accepted"
    await wait_for(lambda: cloud.count("CP1", "Heartbeat") == heartbeats + 1, what="heartbeat")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_data_transfer_carries_a_rules_bundle(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    bundle = json.dumps({"version": 3, "rules": [{"when": "offline", "allow": "known"}]})
    answer = await cloud.data_transfer("CP1", "edge.rules", message_id="bundle", data=bundle)
    assert answer["status"] == "Accepted"
    assert cp.data_transfers == [("edge.rules", "bundle", bundle)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_local_list_decides_while_the_cloud_is_away(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol, allow_offline_tx_for_unknown_id=False))
    answer = await cloud.send_local_list("CP1", 4, {"TAG-LOCAL": "Accepted", "TAG-OK": "Blocked"})
    assert answer["status"] == "Accepted"
    assert cp.local_list_version == 4
    await cloud.stop()
    await wait_for(lambda: not cp.connected, what="offline")
    assert await cp.authorize("TAG-LOCAL") == "Accepted"
    assert await cp.authorize("TAG-OK") == "Blocked"
    assert await cp.authorize("TAG-STRANGER") == "Invalid"
    await cloud.start()
    await wait_for(lambda: cp.connected, what="back online")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_reset_stops_the_transaction_and_boots_again(
    cloud: SimCloud, start_cp: StartCp, protocol: str
) -> None:
    cp = await start_cp(fast_config(cloud.url, protocol))
    await cp.plug_in(1, CarSpec())
    await cp.start_transaction(1, "TAG-OK")
    answer = await cloud.call(
        "CP1", "Reset", {"type": "Hard" if protocol == "ocpp1.6" else "Immediate"}
    )
    assert answer["status"] == "Accepted"
    await wait_for(
        lambda: (
            cloud.count("CP1", "BootNotification") == 2 and cp.connected and len(cp.outbox) == 0
        ),
        what="second boot",
    )
    assert cp.transaction(1) is None
    tx = next(iter(cloud.charge_points["CP1"].transactions.values()))
    assert tx.ended
    assert tx.stop_reason in ("HardReset", "ImmediateReset")
    boot = cloud.received("CP1", "BootNotification")[-1].payload
    if protocol == "ocpp2.0.1":
        assert boot["reason"] == "RemoteReset"


async def test_unknown_action_is_answered_not_implemented(
    cloud: SimCloud, start_cp: StartCp
) -> None:
    await start_cp(fast_config(cloud.url, "ocpp1.6"))
    with pytest.raises(CloudCallError, match="NotImplemented"):
        await cloud.call("CP1", "GetDiagnostics", {"location": "ftp://example.invalid/"})
