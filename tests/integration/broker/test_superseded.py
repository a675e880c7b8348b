"""A transaction whose end never reached the edge, through the real broker and a raw 2.0.1
station: the next one on its EVSE supersedes it, and its late Ended, after other sessions
ended meanwhile, neither revives it nor takes the EVSE from the car charging there (review of
00ac234: the superseded one was pruned at once, being older than those sessions, and its late
Ended then came as a new transaction's, which superseded the running one: no limits for it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.cp_state import STOPPED_KEPT
from actors.utc import format_utc
from sim.cloud import SimCloud
from tests.helpers import wait_for
from tests.integration.broker.edge import start_edge
from tests.integration.broker.raw_cp import RawChargePoint
from tests.integration.broker.test_cloud_profiles import boot_201, calls
from tests.integration.broker.test_profile_batches import ENERGY, batch
from tests.integration.sim.conftest import GOOD_TAG


async def test_the_late_end_of_a_superseded_transaction_leaves_the_running_one(
    tmp_path: Path,
) -> None:
    cloud = SimCloud(id_tags=[GOOD_TAG], heartbeat_interval_s=300)
    await cloud.start()
    edge = await start_edge(tmp_path, cloud_url=cloud.url, extra=ENERGY)
    cp = RawChargePoint("CP1", version="ocpp2.0.1")
    seq = iter(range(10_000))

    async def event(tx: str, kind: str, evse: int) -> None:
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": format_utc(datetime.now(UTC)),
            "seqNo": next(seq),
            "triggerReason": "Authorized" if kind == "Started" else "EVCommunicationLost",
            "transactionInfo": {"transactionId": tx},
            "evse": {"id": evse, "connectorId": 1},
        }
        if kind == "Started":
            payload["idToken"] = {"idToken": GOOD_TAG, "type": "ISO14443"}
        await cp.call("TransactionEvent", payload)

    def tx_profiles_for(tx: str) -> int:
        return sum(
            1
            for c in calls(cp, "SetChargingProfile")
            if c[3]["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
            and c[3]["chargingProfile"].get("transactionId") == tx
        )

    try:
        await boot_201(cp, edge, "Occupied")
        status = {
            "timestamp": format_utc(datetime.now(UTC)),
            "connectorStatus": "Occupied",
            "evseId": 2,
            "connectorId": 1,
        }
        await cp.call("StatusNotification", status)
        await event("A", "Started", 1)  # then the station restarts, and sends no Ended
        for i in range(STOPPED_KEPT):  # EVSE 2 goes on charging cars
            await event(f"X{i}", "Started", 2)
            await event(f"X{i}", "Ended", 2)
        await event("B", "Started", 1)  # a new car on EVSE 1
        actor = edge.system.actor("broker/charge_points/CP1")
        assert actor.state.transactions["A"]["state"] == "superseded"
        assert sorted(edge.cp("CP1")["transactions"]) == ["B"]

        await event("A", "Ended", 1)  # the station's queue sends A's end late
        await event("B", "Updated", 1)
        assert actor.state.transactions["A"]["state"] == "stopped"
        assert sorted(edge.cp("CP1")["transactions"]) == ["B"]
        reports = actor.state.connector_reports(connected=True, now=datetime.now(UTC))
        assert [(r.connector_id, r.transaction_id) for r in reports] == [(1, "B"), (2, None)]

        before, stale = tx_profiles_for("B"), tx_profiles_for("A")
        edge.system.send("broker/profiles", batch(edge, 8.0, sent_ns=1_000))
        await wait_for(lambda: tx_profiles_for("B") > before, what="B's TxProfile at 8 A")
        assert tx_profiles_for("A") == stale
    finally:
        await cp.close()
        await edge.stop()
        await cloud.stop()
