"""The 1.6 transaction-id map (actors.outbox.TxMap) and the durable messages that feed it: a
start is named by its queued copy's reference, so two starts with one message id (a charge
point's ids are unique per connection only) keep their own ids; what was written before the
references existed (keyed by the message id) still meets."""

from __future__ import annotations

import orjson

from actors.messages import EdgeTransactionMinted, EnqueueCall
from actors.outbox import TxMap
from drivers.store.codec import decode, encode


def test_two_starts_with_one_message_id_keep_their_own_ids() -> None:
    txmap = TxMap(None)
    assert txmap.edge_minted("m2@1", 1001) is None
    assert txmap.edge_minted("m2@2", 1002) is None
    assert txmap.cloud_answered("m2@1", 77, "Accepted") == 1001
    assert txmap.cloud_answered("m2@2", 78, "Invalid") == 1002
    assert txmap.e2c == {1001: 77, 1002: 78}
    assert txmap.c2e == {77: 1001, 78: 1002}
    assert (txmap.cloud_status("m2@1"), txmap.cloud_status("m2@2")) == ("Accepted", "Invalid")


def test_the_map_round_trips_and_an_entry_keyed_by_message_id_still_meets() -> None:
    txmap = TxMap(None)
    txmap.edge_minted("m2", 1001)  # written before references existed
    txmap.cloud_answered("m3@5", 79, "Accepted")
    again = TxMap(orjson.loads(orjson.dumps(txmap.to_dict())))  # as LMDB keeps it
    assert again.to_dict() == txmap.to_dict()
    assert again.cloud_answered("m2", 77, "Accepted") == 1001
    assert again.edge_minted("m3@5", 1003) == 79
    assert again.e2c == {1001: 77, 1003: 79}


def test_the_durable_messages_carry_the_reference_and_read_without_it() -> None:
    enqueue = EnqueueCall(
        message_id="m2", action="StartTransaction", text="[]", received_utc="", start_ref="m2@1"
    )
    minted = EdgeTransactionMinted(message_id="m2", edge_id=1001, start_ref="m2@1")
    assert decode(encode(enqueue)) == enqueue
    assert decode(encode(minted)) == minted
    for value in (enqueue, minted):
        doc = orjson.loads(encode(value))
        del doc["d"]["start_ref"]  # committed to a mailbox before the field existed
        assert decode(orjson.dumps(doc)).start_ref == ""
