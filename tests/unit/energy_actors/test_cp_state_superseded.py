"""A transaction still "running" on a connector where a new one begins has ended without its
end reaching the edge (a charge point runs one per connector; a 2.0.1 station that restarted
without sending Ended, a 1.6 one that lost its StopTransaction): ChargePointState keeps it as
superseded, so no report, limit or status follows it, and its end, should it come late, still
stops it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors.cp_state import STOPPED_KEPT, ChargePointState
from actors.ocpp_rules import start_dedup_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event_201(tx: str, kind: str, evse: int | None = 1, seq: int = 0) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": "2026-01-01T00:00:00Z",
        "seqNo": seq,
        "triggerReason": "Authorized",
        "transactionInfo": {"transactionId": tx},
    }
    if evse is not None:
        payload["evse"] = {"id": evse, "connectorId": 1}
    return payload


def station_201() -> ChargePointState:
    state = ChargePointState("CP1")
    for evse in (1, 2):
        status = {"evseId": evse, "connectorId": 1, "connectorStatus": "Occupied"}
        state.on_call("StatusNotification", status, NOW)
    return state


def start_16(state: ChargePointState, tx_id: int, connector: int = 1, minted: bool = True) -> None:
    start = {
        "connectorId": connector,
        "idTag": "T",
        "meterStart": tx_id,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    state.on_call("StartTransaction", start, NOW)
    state.start_transaction(
        transaction_id=tx_id,
        payload=start,
        message_id=f"m{tx_id}",
        edge_minted=minted,
        id_tag_info={"status": "Accepted"},
        start_key=start_dedup_key(start).text(),
        now=NOW,
    )


def states(state: ChargePointState) -> dict[str, str]:
    return {k: str(t["state"]) for k, t in state.transactions.items()}


def test_a_201_transaction_whose_end_never_came_is_superseded_by_the_next_on_its_evse() -> None:
    state = station_201()
    state.on_call("TransactionEvent", event_201("old", "Started"), NOW)
    state.on_call("TransactionEvent", event_201("other", "Started", evse=2), NOW)
    state.on_call("TransactionEvent", event_201("new", "Started"), NOW)
    assert states(state) == {"old": "superseded", "other": "running", "new": "running"}
    assert state.transactions["old"]["superseded_by"] == "new"
    assert sorted(state.summary()["transactions"]) == ["new", "other"]
    assert state.counters["transactions_superseded"] == 1
    assert state.history[-1]["event"] == "transaction superseded"
    assert "old on connector 1:1" in state.history[-1]["detail"]
    reports = state.connector_reports(connected=True, now=NOW)
    assert [(r.connector_id, r.transaction_id) for r in reports] == [(1, "new"), (2, "other")]

    # The station's queue sends the old transaction's events late: they do not revive it; its
    # Ended stops it.
    state.on_call("TransactionEvent", event_201("old", "Updated", seq=1), NOW)
    assert states(state)["old"] == "superseded"
    assert states(state)["new"] == "running"
    state.on_call("TransactionEvent", event_201("old", "Ended", seq=2), NOW)
    assert states(state) == {"old": "stopped", "other": "running", "new": "running"}


def test_a_201_transaction_supersedes_when_it_first_names_its_evse() -> None:
    """Started at authorization names no EVSE; the Updated event at the plug-in does."""
    state = station_201()
    state.on_call("TransactionEvent", event_201("old", "Started"), NOW)
    state.on_call("TransactionEvent", event_201("new", "Started", evse=None), NOW)
    assert states(state) == {"old": "running", "new": "running"}
    state.on_call("TransactionEvent", event_201("new", "Updated", seq=1), NOW)
    assert states(state) == {"old": "superseded", "new": "running"}
    # Its later events name the same EVSE: nothing more happens.
    state.on_call("TransactionEvent", event_201("new", "Updated", seq=2), NOW)
    assert state.counters["transactions_superseded"] == 1


def test_a_16_start_supersedes_the_running_one_on_its_connector_only() -> None:
    state = ChargePointState("CP1")
    start_16(state, 1)
    start_16(state, 2, connector=2)
    start_16(state, 3)
    assert states(state) == {"1": "superseded", "2": "running", "3": "running"}
    # Its id is not minted again while kept: a late StopTransaction may name it.
    assert state.running_edge_ids() == {1, 2, 3}
    stop = {"transactionId": 1, "meterStop": 9, "timestamp": "2026-01-01T01:00:00Z"}
    state.on_call("StopTransaction", stop, NOW)
    assert states(state)["1"] == "stopped"
    assert state.transactions["1"]["meter_stop_wh"] == 9
    assert state.running_edge_ids() == {2, 3}


def test_the_same_transaction_started_again_is_not_superseded() -> None:
    """The cloud's answer to a retried start names the transaction it has."""
    state = ChargePointState("CP1")
    start_16(state, 7, minted=False)
    start_16(state, 7, minted=False)
    assert states(state) == {"7": "running"}
    assert "transactions_superseded" not in state.counters


def test_several_running_on_a_connector_are_superseded_at_once() -> None:
    """A state persisted before transactions were superseded may hold several."""
    state = station_201()
    for tx in ("a", "b"):
        state.transactions[tx] = {"state": "running", "connector": "1:1", "edge_minted": False}
    state.on_call("TransactionEvent", event_201("c", "Started"), NOW)
    assert states(state) == {"a": "superseded", "b": "superseded", "c": "running"}
    assert state.counters["transactions_superseded"] == 2
    superseded = [e for e in state.history if e["event"] == "transaction superseded"]
    assert [e["detail"] for e in superseded] == [
        "a, b on connector 1:1: c began there, their ends never came"
    ]


def test_superseded_transactions_are_kept_as_many_as_stopped_ones() -> None:
    state = ChargePointState("CP1")
    for tx_id in range(1, STOPPED_KEPT + 5):
        start_16(state, tx_id)
    kept = states(state)
    assert list(kept.values()).count("superseded") == STOPPED_KEPT
    assert kept[str(STOPPED_KEPT + 4)] == "running"
    assert "1" not in kept


def sessions_201(state: ChargePointState, n: int, evse: int) -> None:
    """``n`` whole sessions on ``evse`` (Started and Ended)."""
    for i in range(n):
        state.on_call("TransactionEvent", event_201(f"s{i}", "Started", evse=evse), NOW)
        state.on_call("TransactionEvent", event_201(f"s{i}", "Ended", evse=evse, seq=1), NOW)


def test_a_superseded_transaction_outlives_the_sessions_that_ended_before_it() -> None:
    """Ended transactions are pruned oldest end first: one superseded after 20 sessions ended
    on another EVSE is kept (it was pruned at once, being older than them, and its late Ended
    then came as a new transaction's that superseded the car charging there)."""
    state = station_201()
    state.on_call("TransactionEvent", event_201("A", "Started"), NOW)
    sessions_201(state, STOPPED_KEPT, evse=2)
    state.on_call("TransactionEvent", event_201("B", "Started"), NOW)
    assert states(state)["A"] == "superseded"
    state.on_call("TransactionEvent", event_201("A", "Ended", seq=5), NOW)
    assert (states(state)["A"], states(state)["B"]) == ("stopped", "running")
    (report, _) = state.connector_reports(connected=True, now=NOW)
    assert (report.transaction_id, report.charging) == ("B", True)


def test_late_events_of_a_forgotten_transaction_do_not_take_the_connector() -> None:
    """Its record pruned, a transaction's late Updated and Ended events are not a new session's:
    the car charging there keeps its transaction."""
    state = station_201()
    state.on_call("TransactionEvent", event_201("B", "Started"), NOW)
    state.on_call("TransactionEvent", event_201("A", "Updated", seq=3), NOW)
    assert states(state) == {"B": "running", "A": "superseded"}
    assert state.transactions["A"]["superseded_by"] == "B"
    assert "heard of late, B runs there" in state.history[-1]["detail"]
    del state.transactions["A"]  # pruned
    state.on_call("TransactionEvent", event_201("A", "Ended", seq=4), NOW)
    assert states(state) == {"B": "running", "A": "stopped"}
    (report, _) = state.connector_reports(connected=True, now=NOW)
    assert report.transaction_id == "B"


def test_a_transaction_first_heard_in_the_middle_runs_where_none_does() -> None:
    """The edge did not hear its start (its store was new): it runs, arrived when first heard
    of (without an arrival it arrived anew at every step, and ranked last)."""
    state = station_201()
    state.on_call("TransactionEvent", event_201("A", "Updated", seq=3), NOW)
    assert states(state) == {"A": "running"}
    (report, _) = state.connector_reports(connected=True, now=NOW)
    assert (report.transaction_id, report.arrived_utc) == ("A", "2026-01-01T00:00:00.000Z")


def test_a_201_transaction_supersedes_the_others_of_its_evse() -> None:
    """2.0.1 runs one transaction per EVSE, whichever of its connectors."""
    state = station_201()
    stale = event_201("A", "Started")
    stale["evse"] = {"id": 1, "connectorId": 2}
    state.on_call("TransactionEvent", stale, NOW)
    state.on_call("TransactionEvent", event_201("B", "Started"), NOW)
    assert states(state) == {"A": "superseded", "B": "running"}


def test_a_16_superseded_edge_id_is_kept_and_not_minted_again() -> None:
    state = ChargePointState("CP1")
    start_16(state, 2_000_000_000)
    for tx_id in range(100, 100 + STOPPED_KEPT):
        start_16(state, tx_id, connector=2, minted=False)
        state.on_call("StopTransaction", {"transactionId": tx_id, "meterStop": 1}, NOW)
    start_16(state, 600, minted=False)
    assert states(state)["2000000000"] == "superseded"
    assert 2_000_000_000 in state.running_edge_ids()


def at(event: dict[str, Any], timestamp: str) -> dict[str, Any]:
    return {**event, "timestamp": timestamp}


def test_a_transaction_first_heard_late_is_kept_superseded() -> None:
    """The edge missed its Started (refused it), and another runs there, maybe a stale one:
    nothing tells for sure which is late (the station's times do not: its clock may have moved
    at its restart), and taking the EVSE from a car that charges would leave it unlowered. The
    running one keeps it, whatever the times say; the late one stays superseded, also once the
    EVSE is free (a forgotten transaction's late events would make a ghost of it)."""
    state = station_201()
    state.on_call("TransactionEvent", at(event_201("A", "Started"), "2026-01-01T08:00:00Z"), NOW)
    late = at(event_201("B", "Updated", seq=1), "2026-01-01T09:00:00Z")
    state.on_call("TransactionEvent", late, NOW)
    assert states(state) == {"A": "running", "B": "superseded"}
    assert state.transactions["B"]["late"] is True
    state.on_call(
        "TransactionEvent", at(event_201("A", "Ended", seq=1), "2026-01-01T09:02:00Z"), NOW
    )
    state.on_call(
        "TransactionEvent", at(event_201("B", "Updated", seq=3), "2026-01-01T09:03:00Z"), NOW
    )
    assert states(state) == {"A": "stopped", "B": "superseded"}
    (report, _) = state.connector_reports(connected=True, now=NOW)
    assert (report.transaction_id, report.charging) == (None, False)


def test_a_superseded_transaction_does_not_run_again() -> None:
    """One a new transaction superseded ended unseen: its late events do not make it run
    again, even once the EVSE is free."""
    state = station_201()
    state.on_call("TransactionEvent", event_201("A", "Started"), NOW)
    state.on_call("TransactionEvent", event_201("B", "Started"), NOW)
    state.on_call("TransactionEvent", event_201("B", "Ended", seq=1), NOW)
    state.on_call("TransactionEvent", event_201("A", "Updated", seq=1), NOW)
    assert states(state) == {"A": "superseded", "B": "stopped"}


def test_with_a_store_new_the_transaction_heard_first_keeps_the_evse() -> None:
    """Two transactions first heard in Updated events (the edge's store is new): the first runs
    there, the second is kept superseded, whatever their times say."""
    state = station_201()
    old = at(event_201("A", "Updated", seq=7), "2026-01-01T08:00:00Z")
    state.on_call("TransactionEvent", old, NOW)
    state.on_call("TransactionEvent", at(event_201("B", "Updated"), "2026-01-01T09:00:00Z"), NOW)
    state.on_call(
        "TransactionEvent", at(event_201("A", "Ended", seq=8), "2026-01-01T08:01:00Z"), NOW
    )
    assert states(state) == {"A": "stopped", "B": "superseded"}
