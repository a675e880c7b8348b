"""Group commit, failure isolation, stale readers and the persisted-value codec."""

from __future__ import annotations

import asyncio
import enum
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.store import codec
from drivers.store.env import Store, StoreError, open_store
from drivers.store.writer import GroupCommitWriter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "lmdb")
    yield s
    s.close()


async def test_everything_pending_commits_in_one_transaction(store: Store) -> None:
    writer = GroupCommitWriter(store, asyncio.get_running_loop())
    futures = [writer.submit([("put", "state", f"k{i}".encode(), b"v")]) for i in range(100)]
    group = writer._take()  # the thread is not started: take what accumulated, deterministically
    assert group is not None
    assert len(group) == 100
    failures = writer._commit_group(group)
    writer._resolve(group, failures)
    await asyncio.gather(*futures)
    assert writer.stats.commits == 1
    assert writer.stats.batches == 100
    assert store.count("state") == 100


async def test_a_group_is_capped_by_max_ops(store: Store) -> None:
    writer = GroupCommitWriter(store, asyncio.get_running_loop(), max_ops_per_commit=10)
    for i in range(25):
        writer.submit([("put", "state", f"k{i}".encode(), b"v")])
    sizes = []
    while writer.pending_batches():
        group = writer._take()
        assert group is not None
        sizes.append(len(group))
        writer._resolve(group, writer._commit_group(group))
    assert sizes == [10, 10, 5]


async def test_one_bad_batch_fails_only_its_caller(store: Store) -> None:
    writer = GroupCommitWriter(store, asyncio.get_running_loop())
    writer.start()
    try:
        good1 = writer.submit([("put", "state", b"a", b"1")])
        bad = writer.submit([("put", "state", b"k" * 600, b"too long a key")])  # > LMDB max
        good2 = writer.submit([("put", "state", b"b", b"2")])
        results = await asyncio.gather(good1, bad, good2, return_exceptions=True)
    finally:
        await asyncio.to_thread(writer.stop)
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], StoreError)
    assert store.get("state", b"a") == b"1"
    assert store.get("state", b"b") == b"2"
    assert writer.stats.failures == 1


async def test_stop_commits_what_was_submitted(store: Store) -> None:
    writer = GroupCommitWriter(store, asyncio.get_running_loop())
    writer.start()
    futures = [writer.submit([("put", "state", f"k{i}".encode(), b"v")]) for i in range(2000)]
    await asyncio.to_thread(writer.stop)
    await asyncio.gather(*futures)
    assert store.count("state") == 2000
    with pytest.raises(StoreError, match="stopping"):
        writer.submit([("put", "state", b"late", b"v")])


def test_reader_left_by_a_killed_process_is_cleared_at_open(tmp_path: Path) -> None:
    # LMDB resets its reader table when the first process opens an environment, so a stale reader
    # slot only matters while another process keeps the environment open (here: this test, as the
    # status CLI or a sibling would). A node restarting then must clear the dead node's slot.
    path = tmp_path / "readers"
    holder = open_store(path)
    reader = textwrap.dedent(
        f"""
        import lmdb, time
        env = lmdb.open({str(path)!r}, max_dbs=32)
        txn = env.begin()
        txn.get(b"x")
        print("reading", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "reading"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        restarted = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path; from drivers.store.env import open_store; "
                f"print(open_store(Path({str(path)!r})).stale_readers_cleared)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            cwd=Path(__file__).parents[3],
        )
        assert restarted.stdout.strip() == "1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        holder.close()


def test_a_second_open_in_one_process_returns_the_same_store(tmp_path: Path) -> None:
    a = open_store(tmp_path / "x")
    try:
        assert open_store(tmp_path / "x") is a
    finally:
        a.close()


def test_readonly_open_sees_data_without_bumping_the_epoch(tmp_path: Path) -> None:
    s = open_store(tmp_path / "ro")
    s.write_now([("put", "state", b"k", codec.encode({"a": 1}))])
    epoch = s.epoch
    s.close()
    ro = Store(tmp_path / "ro", readonly=True)
    try:
        assert ro.epoch == epoch
        assert ro.get_value("state", b"k") == {"a": 1}
    finally:
        ro.close()
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "missing", readonly=True)


# -- codec ------------------------------------------------------------------------------------------
class Phase(enum.Enum):
    L1 = "L1"
    L2 = "L2"


@codec.persisted(name="test.Inner")
@dataclass(frozen=True, slots=True, kw_only=True)
class Inner:
    limit_a: float
    phase: Phase


@codec.persisted(
    name="test.Outer", version=2, migrate=lambda v, d: {**d, "note": d.get("note", "")}
)
@dataclass(frozen=True, slots=True, kw_only=True)
class Outer:
    cp: str
    inners: tuple[Inner, ...]
    tags: frozenset[str]
    meta: dict[str, Any]
    maybe: Inner | None = None
    note: str = ""


inner_st = st.builds(
    Inner,
    limit_a=st.floats(allow_nan=False, allow_infinity=False, width=32),
    phase=st.sampled_from(Phase),
)
json_st = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.builds(
        Outer,
        cp=st.text(max_size=20),
        inners=st.lists(inner_st, max_size=4).map(tuple),
        tags=st.frozensets(st.text(max_size=5), max_size=4),
        meta=st.dictionaries(st.text(max_size=5), json_st, max_size=3),
        maybe=st.none() | inner_st,
        note=st.text(max_size=10),
    )
)
def test_persisted_values_round_trip(value: Outer) -> None:
    assert codec.decode(codec.encode(value)) == value


def test_old_versions_migrate() -> None:
    old = b'{"t":"test.Outer","v":1,"d":{"cp":"CP1","inners":[],"tags":[],"meta":{}}}'
    assert codec.decode(old) == Outer(cp="CP1", inners=(), tags=frozenset(), meta={}, note="")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b'{"t":"nope","d":{}}', "unknown persisted type 'nope'", id="unknown-type"),
        pytest.param(b'{"t":"test.Outer","v":3,"d":{}}', "version 3 is newer", id="newer"),
        pytest.param(b"not json", "not a persisted value", id="garbage"),
        pytest.param(b'{"t":"test.Inner","d":{"limit_a":1}}', "test.Inner", id="missing-field"),
    ],
)
def test_bad_values_raise_codec_errors(raw: bytes, message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(raw)


def test_unregistered_dataclasses_are_refused() -> None:
    @dataclass
    class Loose:
        x: int

    with pytest.raises(codec.CodecError, match="not registered"):
        codec.encode(Loose(x=1))


def test_a_new_store_is_readable_by_its_user_only(tmp_path: Path) -> None:
    s = open_store(tmp_path / "node" / "lmdb")
    s.close()
    assert (tmp_path / "node" / "lmdb").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "node" / "lmdb" / "data.mdb").stat().st_mode & 0o077 == 0
