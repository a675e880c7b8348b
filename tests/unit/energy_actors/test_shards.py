"""Which broker node serves a charge point (actors/shards.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

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
