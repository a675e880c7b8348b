"""ChargePointState's persisted document: the round trip, a document from before a key existed
(the cloud's kept profiles) reads as none kept, and the transaction messages sent (a version-1
document's queued starts among them), bounded and pruned with their transactions."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from actors.cloud_profiles import CloudProfile
from actors.cp_state import RECORD_VERSION, SENT_KEPT, STOPPED_KEPT, ChargePointState
from actors.ocpp_rules import retry_key, start_dedup_key
from drivers.ocpp.codes import OcppVersion
from tests.unit.energy_actors.test_cloud_profiles import profile


def kept(profile_id: int, limit: float) -> dict[str, object]:
    return profile(profile_id=profile_id, periods=((0.0, limit, None),)).to_doc()


def test_the_document_round_trips_with_the_clouds_profiles() -> None:
    state = ChargePointState("CP1")
    state.transactions["7"] = {
        "state": "running",
        "connector": "1",
        "cloud_profiles": [kept(42, 8.0)],
    }
    state.cloud_defaults = [{**kept(43, 16.0), "connector": 0}]
    state.cloud_max = [kept(44, 20.0)]
    doc = orjson.loads(orjson.dumps(state.to_dict()))  # as LMDB keeps it
    again = ChargePointState("CP1", doc)
    assert again.to_dict() == state.to_dict()
    assert doc["v"] == RECORD_VERSION
    (profile,) = again.transactions["7"]["cloud_profiles"]
    assert CloudProfile.from_doc(profile).periods == ((0.0, 8.0, None),)


def test_a_document_without_the_clouds_defaults_keeps_none() -> None:
    doc = ChargePointState("CP1").to_dict()
    del doc["cloud_defaults"]
    del doc["cloud_max"]
    assert ChargePointState("CP1", doc).cloud_defaults == []
    assert ChargePointState("CP1", doc).cloud_max == []


START = {"connectorId": 1, "idTag": "TAG-1", "meterStart": 1000, "timestamp": "2026-11-28T10:00Z"}


def test_the_transaction_messages_sent_round_trip_with_the_clouds_answer() -> None:
    state = ChargePointState("CP1")
    state.queued("StopTransaction 01", "m7", "77")
    assert state.cloud_answered("StopTransaction 01", {"idTagInfo": {"status": "Accepted"}})
    assert not state.cloud_answered("StopTransaction 02", {}), "never queued: not kept"
    doc = orjson.loads(orjson.dumps(state.to_dict()))
    assert ChargePointState("CP1", doc).sent == {
        "StopTransaction 01": {
            "ref": "m7",
            "tx": "77",
            "answer": {"idTagInfo": {"status": "Accepted"}},
        }
    }


def test_a_version_1_documents_queued_starts_are_among_the_messages_sent() -> None:
    """Before RECORD_VERSION 2 the 1.6 starts queued were kept alone (start key -> reference):
    a retry of one read after the upgrade is still that start."""
    doc = ChargePointState("CP1").to_dict()
    del doc["sent"]
    start_key = start_dedup_key(START).text()
    doc.update(v=1, starts_queued={start_key: "m2@1f"})
    state = ChargePointState("CP1", doc)
    key = retry_key(OcppVersion.V16, "StartTransaction", START)
    assert key is not None
    assert state.sent == {key: {"ref": "m2@1f", "tx": None}}
    assert "starts_queued" not in state.to_dict()


def test_the_messages_sent_are_bounded_and_leave_with_their_transaction() -> None:
    state = ChargePointState("CP1")
    for n in range(SENT_KEPT + 5):
        state.queued(f"MeterValues {n}", f"m{n}", "7")
    assert len(state.sent) == SENT_KEPT
    assert next(iter(state.sent)) == "MeterValues 5", "the oldest go"
    state.sent.clear()
    now = datetime(2026, 11, 28, tzinfo=UTC)
    for tx in range(STOPPED_KEPT + 1):
        state.transactions[str(tx)] = {"state": "running", "connector": "1"}
        state.queued(f"StopTransaction {tx}", f"s{tx}", str(tx))
        state.on_call("StopTransaction", {"transactionId": tx, "meterStop": 1}, now)
    assert "0" not in state.transactions, "the oldest stopped one pruned"
    assert set(state.sent) == {f"StopTransaction {tx}" for tx in range(1, STOPPED_KEPT + 1)}
