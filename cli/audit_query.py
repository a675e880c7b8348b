"""Reading the audit trail of every node store of a site: merged, through the indexes.

The queries behind ``run.py explain`` and ``run.py audit`` (:mod:`cli.audit`), without arguments
or output, so benches and tests time and check exactly what the commands run. Stores are those
under ``<storage_dir>/<node>/data.mdb``, opened with :func:`drivers.store.audit_log.reading`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from actors.audit_records import AuditKind, AuditRecord
from actors.explain import Explanation, explain
from drivers.store import audit_log
from drivers.store.env import Store

# Index entries searched back before the window for the limit, answer and rules in force: bounds
# explain's latency (site-wide records, e.g. rules, are found through the whole time index while
# they are not in the charge point index, see drivers.store.audit_log.site_wide_indexed).
LOOKBACK = 100_000
MAX_LISTED_IDS = 50
_RULES_KINDS = (AuditKind.RULES_APPLIED, AuditKind.RULES_ROLLED_BACK)
_OWN_KINDS = (AuditKind.LIMIT, AuditKind.AUTHORIZATION)

Stores = list[tuple[str, Store]]  # (node name, its store), in name order


def node_names(storage_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in storage_dir.glob("*/data.mdb"))


@contextmanager
def open_stores(storage_dir: Path) -> Iterator[Stores]:
    """Every node store under ``storage_dir``, open for reading until the block ends."""
    with ExitStack() as stack:
        yield [
            (name, stack.enter_context(audit_log.reading(storage_dir / name)))
            for name in node_names(storage_dir)
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplainResult:
    explanation: Explanation
    lookback_complete: bool


def explain_charge_point(
    stores: Stores, charge_point_id: str, *, at_utc: datetime, window_s: float
) -> ExplainResult:
    """The records :func:`explain` needs, read through the indexes of every store: the charge
    point's and the site-wide records in the window, and the latest limit, answer and rules before
    it when the window holds none."""
    window = timedelta(seconds=window_s)
    low, high = at_utc - window, at_utc + window
    records: list[AuditRecord] = []
    complete = True
    for _, store in stores:
        own = list(audit_log.records_by_time(store, low, high, charge_point_id=charge_point_id))
        site = audit_log.site_wide_between(store, low, high)
        records += own + site
        seen = {r.kind for r in own if r.time_utc <= at_utc}
        rules_seen = any(r.kind in _RULES_KINDS and r.time_utc <= at_utc for r in own + site)
        wanted = [k for k in _OWN_KINDS if k not in seen]
        if not rules_seen:  # explain() also takes rules recorded against the charge point
            wanted += _RULES_KINDS
        if wanted:
            found, done = audit_log.latest_for(
                store, charge_point_id, low, wanted, max_scan=LOOKBACK
            )
            records += found.values()
            complete = complete and done
        if not rules_seen:
            rules, done = audit_log.latest_site_wide(store, low, _RULES_KINDS, max_scan=LOOKBACK)
            complete = complete and done
            if rules is not None:
                records.append(rules)
    story = explain(records, charge_point_id=charge_point_id, at_utc=at_utc, window_s=window_s)
    return ExplainResult(explanation=story, lookback_complete=complete)


def audit_rows(
    stores: Stores,
    *,
    since: datetime | None,
    until: datetime | None,
    charge_point_id: str | None,
    kinds: frozenset[AuditKind] | None,
    limit: int | None,
) -> tuple[list[tuple[str, AuditRecord]], bool]:
    """The newest ``limit`` matching records of all stores, oldest first; and whether older ones
    matched too."""

    def newest_first(name: str, store: Store) -> Iterator[tuple[str, AuditRecord]]:
        for record in audit_log.records_by_time(
            store, since, until, charge_point_id=charge_point_id, newest_first=True
        ):
            if kinds is None or record.kind in kinds:
                yield name, record

    merged = heapq.merge(
        *(newest_first(name, store) for name, store in stores), key=_order, reverse=True
    )
    rows: list[tuple[str, AuditRecord]] = []
    more = False
    for row in merged:
        if limit is not None and len(rows) >= limit:
            more = True
            break
        rows.append(row)
    rows.sort(key=lambda row: (row[1].time_utc, _id(row[1]), row[0]))
    return rows, more


def _order(row: tuple[str, AuditRecord]) -> tuple[int, int, str]:
    # The order of the index keys (time in ms, then id), which each store's walk follows.
    name, record = row
    return int(record.time_utc.timestamp() * 1000), _id(record), name


def _id(record: AuditRecord) -> int:
    return -1 if record.id is None else record.id


def known_ids(stores: Stores) -> tuple[list[str], bool]:
    ids: set[str] = set()
    for _, store in stores:
        ids.update(audit_log.charge_point_ids(store, MAX_LISTED_IDS + 1))
    ordered = sorted(ids)
    return ordered[:MAX_LISTED_IDS], len(ordered) > MAX_LISTED_IDS
