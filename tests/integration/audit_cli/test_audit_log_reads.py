"""The index walks behind explain and audit, against brute force over every record."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.audit import AUDIT_BY_CP
from actors.audit_records import AuditKind, AuditRecord, encode_record, new_record, with_id
from actors.explain import explain
from cli import audit_query
from drivers.store import audit_log
from drivers.store.env import open_store
from tests.integration.audit_cli.trail import (
    CP,
    auth,
    limit,
    rules,
    run_main,
    t,
    write,
    write_site,
)

CPS = ("CP001", "CP002", "CP1")  # "CP1" sorts between the others' keys only by its NUL
KINDS = (
    AuditKind.LIMIT,
    AuditKind.AUTHORIZATION,
    AuditKind.MESSAGE_BUFFERED,
    AuditKind.RULES_APPLIED,
    AuditKind.RESTART,
)


def record(at: float, cp: str | None, kind: AuditKind) -> AuditRecord:
    inputs = {"limit_a": 6.0, "binding_source": "min"} if kind is AuditKind.LIMIT else {}
    return new_record(
        time_utc=t(at),
        actor="energy/x" if kind is AuditKind.LIMIT else "broker/x",
        charge_point_id=cp,
        kind=kind,
        decision=f"{kind.value}@{at:g}",
        reason="r",
        inputs=inputs,
    )


def drop_site_wide_index(store_dir: Path) -> int:
    """Turn a store into the first layout (site-wide records in the time index only), to check
    that stores written before the empty-id index are still read right."""
    store = open_store(store_dir)
    try:
        ops = [("del", AUDIT_BY_CP, key) for key, _ in store.scan(AUDIT_BY_CP, b"\x00")]
        store.write_now(ops)
        return len(ops)
    finally:
        store.close()


def test_the_byte_marks_match_what_encode_record_writes() -> None:
    site_wide = encode_record(with_id(record(0, None, AuditKind.RESTART), 1))
    own = encode_record(with_id(record(0, CP, AuditKind.LIMIT), 2))
    assert audit_log.SITE_WIDE_MARK in site_wide
    assert audit_log.SITE_WIDE_MARK not in own
    assert audit_log.kind_mark(AuditKind.LIMIT) in own
    assert audit_log.kind_mark(AuditKind.RESTART) not in own


def test_walks_cross_chunk_boundaries_both_ways(tmp_path: Path) -> None:
    n = 2 * audit_log.CHUNK + 300
    write(tmp_path, "n", [record(i, CP, AuditKind.LIMIT) for i in range(n)])
    write(tmp_path, "n", [record(i + 0.5, "CP002", AuditKind.LIMIT) for i in range(50)])
    with audit_log.reading(tmp_path / "n") as store:
        forward = list(audit_log.records_by_time(store, None, None, charge_point_id=CP))
        backward = list(
            audit_log.records_by_time(store, None, None, charge_point_id=CP, newest_first=True)
        )
        middle = list(audit_log.records_by_time(store, t(1000), t(2100), newest_first=True))
        every = list(audit_log.records_by_time(store, None, None))
    assert [r.time_utc for r in forward] == [t(i) for i in range(n)]
    assert backward == forward[::-1]
    assert len(middle) == 1101 + 50 - 50  # CP002's 50 records lie before t(50)
    assert [r.time_utc for r in middle] == sorted((r.time_utc for r in middle), reverse=True)
    assert len(every) == n + 50


@pytest.mark.parametrize("indexed", [False, True], ids=["time-index-only", "under-empty-id"])
def test_site_wide_records_in_both_layouts(tmp_path: Path, indexed: bool) -> None:
    write(tmp_path, "n", [rules(-7200, 1), record(-100, CP, AuditKind.LIMIT), rules(-50, 2)])
    write(tmp_path, "n", [record(-10, None, AuditKind.RESTART), record(5, CP, AuditKind.LIMIT)])
    if not indexed:
        assert drop_site_wide_index(tmp_path / "n") == 3
    with audit_log.reading(tmp_path / "n") as store:
        assert audit_log.site_wide_indexed(store) is indexed
        between = audit_log.site_wide_between(store, t(-60), t(60))
        latest, complete = audit_log.latest_site_wide(
            store, t(0), [AuditKind.RULES_APPLIED], max_scan=100
        )
        older, _ = audit_log.latest_site_wide(store, t(-50), [AuditKind.RULES_APPLIED], max_scan=9)
        cut, cut_complete = audit_log.latest_site_wide(
            store, t(100), [AuditKind.RULES_APPLIED], max_scan=2
        )
        ids = audit_log.charge_point_ids(store, 10)
    assert [r.decision for r in between] == ["version 2", "restart@-10"]
    assert latest is not None
    assert latest.decision == "version 2"
    assert complete
    assert older is not None
    assert older.decision == "version 1"
    if indexed:  # the bound counts site-wide entries only: restart, then version 2
        assert cut is not None
        assert cut.decision == "version 2"
        assert cut_complete
    else:  # two time-index entries back from t(100) are CP001's limit and the restart
        assert cut is None
        assert not cut_complete
    assert ids == [CP]


def test_the_lookback_bound_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    var = tmp_path / "var"
    write(var, "broker", [rules(-7200, 3), *(auth(-3000 + i) for i in range(5))])
    write(var, "energy", [limit(-60, 10, "grid_limit:dso")])
    site = write_site(tmp_path)
    drop_site_wide_index(var / "broker")  # a store of the first layout: rules by the time index
    monkeypatch.setattr(audit_query, "LOOKBACK", 3)
    r = run_main(["explain", CP, "--at", "2025-06-01T12:00:00Z", "--config", str(site)])
    assert "the search before the window stopped after 3 records" in r.out
    assert "Rules:" not in r.out
    doc = orjson.loads(run_main(["explain", CP, "--json", "--config", str(site)]).out)
    assert doc["lookback_complete"] is False
    monkeypatch.setattr(audit_query, "LOOKBACK", 10)
    doc = orjson.loads(run_main(["explain", CP, "--json", "--config", str(site)]).out)
    assert doc["rules"]["decision"] == "version 3"
    assert doc["lookback_complete"] is True


def test_latest_for_stops_at_its_bound(tmp_path: Path) -> None:
    write(tmp_path, "n", [auth(-100), *(limit(-50 + i, 6, "min") for i in range(10))])
    wanted = [AuditKind.LIMIT, AuditKind.AUTHORIZATION]
    with audit_log.reading(tmp_path / "n") as store:
        near, near_done = audit_log.latest_for(store, CP, t(0), wanted, max_scan=5)
        far, far_done = audit_log.latest_for(store, CP, t(0), wanted, max_scan=11)
        none, none_done = audit_log.latest_for(store, "CP404", t(0), wanted, max_scan=5)
    assert set(near) == {AuditKind.LIMIT}
    assert not near_done
    assert far[AuditKind.AUTHORIZATION].time_utc == t(-100)
    assert far[AuditKind.LIMIT].time_utc == t(-41)
    assert far_done
    assert none == {}
    assert none_done


# --- properties: the indexed reads give what brute force over every record gives --------------

trails = st.lists(
    st.tuples(
        st.integers(min_value=-4000, max_value=4000),
        st.sampled_from((*CPS, None)),
        st.sampled_from(KINDS),
        st.sampled_from(("broker", "energy")),
    ),
    max_size=40,
    unique_by=lambda row: row[0],  # distinct times: "the newest N" is then one answer
)


def build(
    base: Path, rows: list[tuple[int, str | None, AuditKind, str]]
) -> dict[str, list[AuditRecord]]:
    by_node: dict[str, list[AuditRecord]] = {"broker": [], "energy": []}
    for at, cp, kind, node in sorted(rows):
        by_node[node].append(record(at, cp, kind))
    out = {}
    for node, records in by_node.items():
        ids = write(base, node, records)
        out[node] = [with_id(r, i) for r, i in zip(records, ids, strict=True)]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=trails,
    cp=st.sampled_from(CPS),
    at=st.integers(min_value=-4500, max_value=4500),
    window_s=st.sampled_from((0.0, 30.0, 900.0)),
    indexed=st.booleans(),
)
def test_explain_from_the_indexes_equals_explain_over_everything(
    rows: list[tuple[int, str | None, AuditKind, str]],
    cp: str,
    at: int,
    window_s: float,
    indexed: bool,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        everything = build(base, rows)
        if not indexed:
            for node in everything:
                drop_site_wide_index(base / node)
        with audit_query.open_stores(base) as stores:
            got = audit_query.explain_charge_point(stores, cp, at_utc=t(at), window_s=window_s)
    every = [r for records in everything.values() for r in records]
    want = explain(every, charge_point_id=cp, at_utc=t(at), window_s=window_s)
    assert got.lookback_complete
    assert got.explanation.lines == want.lines
    assert got.explanation.data == want.data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=trails,
    since=st.none() | st.integers(min_value=-4500, max_value=4500),
    span=st.none() | st.integers(min_value=0, max_value=4000),
    cp=st.none() | st.sampled_from(CPS),
    kinds=st.none() | st.frozensets(st.sampled_from(KINDS), min_size=1),
    limit_n=st.none() | st.integers(min_value=1, max_value=10),
)
def test_audit_rows_equal_brute_force(
    rows: list[tuple[int, str | None, AuditKind, str]],
    since: int | None,
    span: int | None,
    cp: str | None,
    kinds: frozenset[AuditKind] | None,
    limit_n: int | None,
) -> None:
    until = None if span is None else (since or 0) + span
    with tempfile.TemporaryDirectory() as tmp:
        everything = build(Path(tmp), rows)
        with audit_query.open_stores(Path(tmp)) as stores:
            got, more = audit_query.audit_rows(
                stores,
                since=None if since is None else t(since),
                until=None if until is None else t(until),
                charge_point_id=cp,
                kinds=kinds,
                limit=limit_n,
            )
    want = sorted(
        (
            (node, r)
            for node, records in everything.items()
            for r in records
            if (since is None or r.time_utc >= t(since))
            and (until is None or r.time_utc <= t(until))
            and (cp is None or r.charge_point_id == cp)
            and (kinds is None or r.kind in kinds)
        ),
        key=lambda row: row[1].time_utc,
    )
    shown = want if limit_n is None else want[-limit_n:]
    assert got == shown
    assert more == (len(shown) < len(want))
    assert all(a[1].time_utc < b[1].time_utc for a, b in itertools.pairwise(got))
