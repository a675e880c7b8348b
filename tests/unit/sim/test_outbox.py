"""The simulated charge point's offline queue: order, transaction ids, drops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.outbox import Outbox


def test_messages_wait_for_their_transaction_id() -> None:
    box = Outbox()
    start = box.append("StartTransaction", {"connector_id": 1}, local_tx=1, offline=True)
    meter = box.append("MeterValues", {"transaction_id": 0}, local_tx=1, offline=True)
    assert box.resolve(start) == {"connector_id": 1}
    assert box.resolve(meter) is None
    box.set_transaction_id(1, 42)
    assert box.resolve(meter) == {"transaction_id": 42}
    assert meter.payload == {"transaction_id": 0}, "the queued payload itself is not changed"


def test_only_the_head_leaves_the_queue() -> None:
    box = Outbox()
    box.append("StartTransaction", {})
    second = box.append("StopTransaction", {})
    with pytest.raises(RuntimeError, match=r"message 1 \(StopTransaction\) is not at the head"):
        box.pop_delivered(second)


def test_dropped_messages_are_recorded_with_the_reason() -> None:
    box = Outbox()
    item = box.append("MeterValues", {})
    box.pop_dropped(item, "InternalError: boom")
    assert len(box) == 0
    assert [(d.seq, d.action, d.reason) for d in box.dropped] == [
        (0, "MeterValues", "InternalError: boom")
    ]


@given(ops=st.lists(st.sampled_from(["append", "deliver", "drop"]), max_size=60))
def test_queue_never_loses_or_reorders(ops: list[str]) -> None:
    box = Outbox()
    appended: list[int] = []
    left: list[int] = []
    for op in ops:
        if op == "append":
            appended.append(box.append("MeterValues", {"n": len(appended)}).seq)
            continue
        head = box.head()
        if head is None:
            continue
        left.append(head.seq)
        if op == "deliver":
            box.pop_delivered(head)
        else:
            box.pop_dropped(head, "refused")
    remaining = [item.seq for item in box.items()]
    assert left + remaining == appended
    assert box.delivered + len(box.dropped) == len(left)
