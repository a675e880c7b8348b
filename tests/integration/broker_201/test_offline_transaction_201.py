"""A whole 2.0.1 transaction while the cloud is down, replayed exactly as the station sent it.

The edge answers the TransactionEvents (Started, Updated..., Ended) and queues them; in the middle
the edge itself goes away for a while (restarted on the same storage and port), so the station
queues events of its own with ``offline: true`` and delivers them when the edge is back. When the
cloud returns it receives every event once, in order, with the station's own transactionId,
``seqNo`` and ``offline`` flags: the payloads equal the frames the station put on the wire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.ports import free_tcp_port
from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import Edge
from tests.integration.broker_201.station import recording_station, sent_calls
from tests.integration.broker_faults.site import site_toml, start_edge

CP = "EV201"
CAR = CarSpec(name="test-car", max_current_a=16.0, energy_need_wh=80_000.0)


def first_by_seq_no(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first copy of each event (a station resends an event it got no answer for)."""
    seen: dict[int, dict[str, Any]] = {}
    for payload in frames:
        seen.setdefault(int(payload["seqNo"]), payload)
    return [seen[k] for k in sorted(seen)]


async def test_offline_transaction_is_replayed_with_the_stations_ids_seq_nos_and_flags(
    tmp_path: Path, cloud: SimCloud, stations: list[SimChargePoint]
) -> None:
    text = site_toml(
        tmp_path,
        port=free_tcp_port(),
        cloud_url=cloud.url,
        charge_points=(CP,),
        authorization={"unknown_id_offline": "accept"},
    )
    first = await start_edge(tmp_path, text)
    edge: Edge | None = first
    try:
        cp = recording_station(first.url, CP)
        stations.append(cp)
        await cp.start()
        await wait_for(lambda: cp.connected and first.cloud(CP)["online"], what="online")
        await cloud.stop()
        await wait_for(lambda: not first.cloud(CP)["online"], what="the edge sees the outage")

        await cp.plug_in(1, CAR)
        tx = await cp.start_transaction(1, "TAG-OFFLINE", authorize=False)
        await wait_for(
            lambda: first.cloud(CP)["queue_depth"] >= 4, what="events queued at the edge"
        )

        edge = None
        await first.stop()  # the station loses the edge too: its own events go offline
        await wait_for(lambda: not cp.connected, what="the station offline")
        await wait_for(lambda: len(cp.outbox) >= 3, what="the station queueing by itself")
        second = edge = await start_edge(tmp_path, text)
        await wait_for(lambda: cp.connected, timeout=10, what="the station back at the edge")
        await wait_for(lambda: len(cp.outbox) == 0, what="its queue delivered to the edge")
        await cp.stop_transaction(1)
        await wait_for(lambda: len(cp.outbox) == 0, what="Ended delivered to the edge")
        sent = first_by_seq_no([f[3] for f in sent_calls(cp, "TransactionEvent")])
        assert second.cloud(CP)["queue_depth"] == len(sent), "every event queued, none dropped"
        assert cloud.count(CP, "TransactionEvent") == 0

        await cloud.start()
        await wait_for(lambda: second.cloud(CP)["queue_depth"] == 0, timeout=10, what="replayed")
        at_cloud = [m.payload for m in cloud.received(CP, "TransactionEvent")]
        assert len(at_cloud) == len(sent), "each event once"
        assert at_cloud == sent, "exactly the station's payloads, in order"
        assert [p["seqNo"] for p in at_cloud] == list(range(len(sent)))
        assert {p["transactionInfo"]["transactionId"] for p in at_cloud} == {tx.transaction_id}
        assert [p["eventType"] for p in (at_cloud[0], at_cloud[-1])] == ["Started", "Ended"]
        flags = [p["offline"] for p in at_cloud]
        assert True in flags, f"events the station queued itself: {flags}"
        assert False in flags, f"events the edge queued: {flags}"
        cloud_tx = cloud.charge_points[CP].transactions[str(tx.transaction_id)]
        assert cloud_tx.ended
        assert cloud_tx.offline_events == flags.count(True)
        print(f"2.0.1 offline transaction: {len(sent)} events, {flags.count(True)} offline")
    finally:
        if edge is not None:
            await edge.stop()
