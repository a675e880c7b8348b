"""A transaction whose end never reached the edge, through the real broker and a raw 2.0.1
station: the next one on its EVSE supersedes it, and it gets the limits; one the edge heard of
only late does not take the EVSE, nor its limits.

Review of 00ac234: the superseded one was pruned at once (older than the sessions that had
ended meanwhile) and its late Ended came as a new transaction's, which superseded the running
one. Every event still reaches the cloud as it came."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actors.cp_state import STOPPED_KEPT
from actors.utc import format_utc
from tests.helpers import wait_for
from tests.integration.broker.station_201 import Station, station_on_broker


@pytest.fixture
async def station(tmp_path: Path) -> AsyncIterator[Station]:
    async with station_on_broker(tmp_path) as s:
        yield s


async def test_the_late_end_of_a_superseded_transaction_leaves_the_running_one(
    station: Station,
) -> None:
    s = station
    status = {
        "timestamp": format_utc(datetime.now(UTC)),
        "connectorStatus": "Occupied",
        "evseId": 2,
        "connectorId": 1,
    }
    await s.cp.call("StatusNotification", status)
    await s.event("A", "Started")  # then the station restarts, and sends no Ended
    for i in range(STOPPED_KEPT):  # EVSE 2 goes on charging cars
        await s.event(f"X{i}", "Started", evse=2)
        await s.event(f"X{i}", "Ended", evse=2)
    await s.event("B", "Started")  # a new car on EVSE 1
    assert s.states()["A"] == "superseded"
    assert s.running() == ["B"]

    await s.event("A", "Ended")  # the station's queue sends A's end late
    await s.event("B", "Updated")
    assert s.states()["A"] == "stopped"
    assert s.running() == ["B"]
    actor = s.edge.system.actor("broker/charge_points/CP1")
    reports = actor.state.connector_reports(connected=True, now=datetime.now(UTC))
    assert [(r.connector_id, r.transaction_id) for r in reports] == [(1, "B"), (2, None)]
    await s.limits_go_to("B", stale="A")


async def test_a_car_whose_start_the_edge_refused_does_not_take_the_evse_from_a_stale_one(
    station: Station,
) -> None:
    """B's Started is refused (an idToken type the schema does not know: a CALLERROR), and the
    station goes on with B's Updated events while A, whose end never came, holds the EVSE:
    nothing tells for sure which is late, and taking the EVSE from a car that charges would
    leave it unlowered (actors.cp_state._heard_late). B is kept superseded and gets no
    TxProfile (its start's took the connector's limit from A's: fourth review); its car draws
    under the edge's TxDefaultProfile. Every event reaches the cloud as it came."""
    s = station
    await s.event("A", "Started")  # then the station restarts, and sends no Ended
    refused = await s.event("B", "Started", token_type="Bogus")
    assert refused[0] == 4, refused
    await s.event("B", "Updated")
    assert s.states() == {"A": "running", "B": "superseded"}
    await s.limits_go_to("A", stale="B")
    assert s.tx_profiles_for("B") == 0

    def got() -> list[tuple[str, str]]:
        return [
            (m.payload["eventType"], m.payload["transactionInfo"]["transactionId"])
            for m in s.cloud.received("CP1", "TransactionEvent")
        ]

    await wait_for(lambda: got() == [("Started", "A"), ("Updated", "B")], what="the cloud's")
