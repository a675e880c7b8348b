"""Which broker node serves a charge point (actors/shards.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from actors.broker_context import ProfileWrites, merge_batch_reports
from actors.shards import broker_node, shard_of, shard_of_node

IDS = [f"CP{i:04d}" for i in range(500)]


def test_one_node_serves_every_charge_point() -> None:
    assert {shard_of(i, 1) for i in IDS} == {0}


@pytest.mark.parametrize("shards", [2, 3])
def test_the_charge_points_spread_over_the_nodes(shards: int) -> None:
    counts = Counter(shard_of(i, shards) for i in IDS)
    assert set(counts) == set(range(shards))
    assert max(counts.values()) - min(counts.values()) < len(IDS) // (2 * shards)


def test_every_process_agrees(tmp_path: Path) -> None:
    """The energy node and each broker node compute it on their own: the same in every process,
    whatever its str hash seed."""
    code = (
        "from actors.shards import shard_of; print([shard_of(f'CP{i:04d}', 2) for i in range(500)])"
    )
    root = Path(__file__).resolve().parents[3]
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {str([shard_of(i, 2) for i in IDS]) + "\n"}


def test_node_names() -> None:
    assert [broker_node(k) for k in range(3)] == ["broker", "broker-1", "broker-2"]
    assert [shard_of_node(broker_node(k)) for k in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="not a broker node name: 'energy'"):
        shard_of_node("energy")


def test_ids_are_matched_without_case() -> None:
    """A charge point that connects as "cp0001" is configured "CP0001": the same node."""
    assert [shard_of(i.lower(), 3) for i in IDS] == [shard_of(i, 3) for i in IDS]


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1, got 0"):
        shard_of("CP1", 0)


def test_the_nodes_parts_of_a_batch_merge_into_one() -> None:
    """run.py status and bench/energy.py: each node's report of its part of the same batch (the
    same trigger) as one batch; an empty part neither counts nor holds the CPU figure back."""
    nodes = [ProfileWrites() for _ in range(3)]
    trigger = 10**12  # the meter sample, long before now (monotonic ns)
    for node, limits in zip(nodes, (2, 3, 0), strict=True):
        node.batch(trigger, limits, sent_ns=trigger + 5_000_000)
    nodes[0].written(trigger)
    nodes[1].written(trigger)

    def merged() -> dict[str, object]:
        (batch,) = merge_batch_reports([n.report() for n in nodes])
        return batch

    first = merged()
    assert (first["limits"], first["written"]) == (5, 2)
    assert first["cpu_ms"] is None  # neither part with limits is done
    assert first["sent_ms"] == 5.0
    nodes[0].written(trigger)
    nodes[1].written(trigger)
    assert merged()["cpu_ms"] is None  # the second part has one frame to go
    nodes[1].written(trigger)
    done = merged()
    parts = [n.report()[0] for n in nodes[:2]]
    assert done["written"] == 5
    assert done["first_written_ms"] == min(p["first_written_ms"] for p in parts)
    assert done["last_written_ms"] == parts[1]["last_written_ms"]  # written last
    assert done["cpu_ms"] == max(p["cpu_ms"] for p in parts)


def test_a_later_batch_from_the_same_sample_keeps_the_first_ones_stamps() -> None:
    """A step without a new meter read (a settle, a new car) takes the last read's time as its
    trigger: its batch joins the first's entry, whose stamps stay (its limits added)."""
    writes = ProfileWrites()
    trigger = 10**12
    writes.batch(trigger, 3, sent_ns=trigger + 5_000_000, step_ns=trigger + 1_000_000)
    for _ in range(3):
        writes.written(trigger)
    (first,) = writes.report()
    assert first["cpu_ms"] is not None
    writes.batch(trigger, 2, sent_ns=trigger + 900_000_000, step_ns=trigger + 800_000_000)
    (joined,) = writes.report()
    assert (joined["limits"], joined["written"]) == (5, 3)
    for key in ("step_ms", "sent_ms", "received_ms", "first_written_ms", "last_written_ms"):
        assert joined[key] == first[key], key
    assert joined["cpu_ms"] is None  # two limits to go
    writes.written(trigger)
    writes.written(trigger)
    (done,) = writes.report()
    assert done["written"] == 5
    assert done["last_written_ms"] >= first["last_written_ms"]
    assert done["cpu_ms"] is not None


def test_batches_of_different_triggers_stay_apart_in_order() -> None:
    a, b = ProfileWrites(), ProfileWrites()
    a.batch(2000, 1)
    b.batch(1000, 1)
    b.batch(2000, 1)
    got = merge_batch_reports([a.report(), b.report()])
    assert [(x["trigger_monotonic_ns"], x["limits"]) for x in got] == [(1000, 1), (2000, 2)]


def test_a_nodes_pace_is_its_latest_whole_batch_of_enough_limits() -> None:
    """What a broker node tells the site allocator (ProfileOutcomes.write_s_per_limit): wall
    seconds per limit, receipt to last frame, of its latest batch written whole."""
    writes = ProfileWrites()
    assert writes.write_s_per_limit(20) is None
    writes.batch(1, 40)
    for _ in range(40):
        writes.written(1)
    done = writes.batches[1]
    pace = writes.write_s_per_limit(20)
    assert pace == (done["last_ns"] - done["received_ns"]) / 1e9 / 40
    writes.batch(2, 40)  # newer, not written whole: the older one still counts
    writes.written(2)
    writes.batch(3, 5)  # written whole, but too small to say much
    for _ in range(5):
        writes.written(3)
    assert writes.write_s_per_limit(20) == pace
    assert writes.write_s_per_limit(50) is None
