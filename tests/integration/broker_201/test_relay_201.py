"""OCPP 2.0.1 through the edge while the cloud is there: relayed both ways, untouched.

The cloud's RequestStartTransaction and SetChargingProfile reach the station and its answers come
back; the station's BootNotification and TransactionEvents reach the cloud byte for byte as the
station sent them (compared as parsed JSON of the raw frames).
"""

from __future__ import annotations

from pathlib import Path

from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from sim.profile_payloads import profile_v201
from tests.helpers import wait_for
from tests.integration.broker_201.station import recording_station, sent_calls
from tests.integration.broker_faults.site import site_toml, start_edge

CP = "EV201"
CAR = CarSpec(name="test-car", max_current_a=16.0, energy_need_wh=50_000.0)


async def test_calls_from_the_cloud_reach_the_station_and_answers_return(
    tmp_path: Path, cloud: SimCloud, stations: list[SimChargePoint]
) -> None:
    edge = await start_edge(tmp_path, site_toml(tmp_path, cloud_url=cloud.url, charge_points=(CP,)))
    try:
        cp = recording_station(edge.url, CP)
        stations.append(cp)
        await cp.start()
        await wait_for(lambda: cp.connected and edge.cloud(CP)["online"], what="online")
        assert cloud.charge_points[CP].subprotocol == "ocpp2.0.1"
        boot = sent_calls(cp, "BootNotification")
        assert len(boot) == 1
        # The edge may open a new session by replaying the cached boot and then relay the same
        # boot again (see the report: a race between the first connect and the relay).
        at_cloud = [m.payload for m in cloud.received(CP, "BootNotification")]
        assert at_cloud in ([boot[0][3]], [boot[0][3]] * 2), at_cloud
        print(f"2.0.1 relay: the station booted once, the cloud got {len(at_cloud)} boot(s)")

        answer = await cloud.call(
            CP,
            "RequestStartTransaction",
            {"idToken": {"idToken": "TAG-1", "type": "ISO14443"}, "remoteStartId": 42, "evseId": 1},
        )
        assert answer == {"status": "Accepted"}
        assert cp.stats.received["RequestStartTransaction"] == 1

        profiles = cp.stats.received["SetChargingProfile"]
        answer = await cloud.call(
            CP,
            "SetChargingProfile",
            {"evseId": 1, "chargingProfile": profile_v201(limit=10.0, purpose="TxDefaultProfile")},
        )
        assert answer == {"status": "Accepted"}
        assert cp.stats.received["SetChargingProfile"] == profiles + 1

        await cp.plug_in(1, CAR)  # the pending remote start begins the transaction
        await wait_for(
            lambda: len(cloud.received(CP, "TransactionEvent")) >= 2, what="transaction events"
        )
        await cp.stop_transaction(1)
        await wait_for(lambda: len(cp.outbox) == 0, what="station outbox delivered")
        sent = [f[3] for f in sent_calls(cp, "TransactionEvent")]
        at_cloud = [m.payload for m in cloud.received(CP, "TransactionEvent")]
        assert at_cloud == sent, "relayed untouched, in order"
        assert sent[0]["eventType"] == "Started"
        assert sent[0]["transactionInfo"]["remoteStartId"] == 42
        assert sent[-1]["eventType"] == "Ended"
        assert not any(p["offline"] for p in sent)
        assert edge.cloud(CP)["queue_depth"] == 0
    finally:
        await edge.stop()
