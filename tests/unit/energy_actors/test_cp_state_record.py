"""ChargePointState's persisted document: the round trip, and a document from before a key
existed (the cloud's kept profiles) reads as none kept."""

from __future__ import annotations

import orjson

from actors.cloud_profiles import CloudProfile
from actors.cp_state import RECORD_VERSION, ChargePointState
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
