"""Reading the audit trail of a node store: by time, by charge point, after an id.

Records are written by ``actors.audit.stage_record`` with two indexes (by time, and by charge
point and time), so questions like "why did CP-7 get 10 A at 14:02" read a few keys, not the log.

The second half serves ``run.py explain`` / ``run.py audit``, which read the stores of running
nodes from another process: :func:`reading` opens a store without disturbing its node, and every
walk reads in chunks of short read transactions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import lmdb
import orjson

from actors.audit import AUDIT_BY_CP, AUDIT_BY_TIME, AUDIT_TABLE, record_key, stage_record
from actors.audit_records import AuditKind, AuditRecord, decode_record
from drivers.store.env import Op, Store, StoreError, _open_stores


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def get_record(store: Store, record_id: int) -> AuditRecord | None:
    raw = store.get(AUDIT_TABLE, record_key(record_id))
    return None if raw is None else decode_record(raw)


def records_after(
    store: Store, after_id: int = 0, limit: int | None = None
) -> Iterator[AuditRecord]:
    """In id order (the order they were committed in one node), strictly after ``after_id``."""
    rows = store.scan(AUDIT_TABLE, start=record_key(after_id + 1))
    for n, (_, raw) in enumerate(rows, 1):
        yield decode_record(raw)
        if limit is not None and n >= limit:
            return


def records_between(
    store: Store, start: datetime | None, end: datetime | None
) -> Iterator[AuditRecord]:
    begin = b"" if start is None else _ms(start).to_bytes(8, "big")
    stop = None if end is None else _ms(end)
    for key, _ in store.scan(AUDIT_BY_TIME, start=begin):
        if stop is not None and int.from_bytes(key[:8], "big") > stop:
            return
        record = get_record(store, int.from_bytes(key[8:16], "big"))
        if record is not None:
            yield record


def records_for(
    store: Store, charge_point_id: str, start: datetime, end: datetime
) -> list[AuditRecord]:
    prefix = charge_point_id.encode() + b"\x00"
    stop = _ms(end)
    out = []
    for key, _ in store.scan(AUDIT_BY_CP, prefix, start=prefix + _ms(start).to_bytes(8, "big")):
        if int.from_bytes(key[len(prefix) : len(prefix) + 8], "big") > stop:
            break
        record = get_record(store, int.from_bytes(key[-8:], "big"))
        if record is not None:
            out.append(record)
    return out


def count(store: Store) -> int:
    return store.count(AUDIT_TABLE)


def last_id(store: Store) -> int:
    with store.env.begin(db=store.table(AUDIT_TABLE)) as txn:
        cur = txn.cursor()
        return int.from_bytes(cur.key(), "big") if cur.last() else 0


# --- reading for run.py explain / audit: chunked walks of the indexes ------------------------
#
# Each chunk is one short read transaction that resolves its records too (no transaction per
# record) and is closed before anything is yielded, so a slow consumer never pins old pages of a
# running node, and a map the node grew meanwhile is adopted between chunks.

CHUNK = 1024
_MS_MAX = (1 << 63) - 1


def _mark(field: str, value: object) -> bytes:
    # A byte test before decoding: encode_record writes compact orjson, so a record with this
    # field value always contains the mark (another record may too, in its inputs: decoding and
    # checking the field settles it).
    return orjson.dumps({field: value})[1:-1]


SITE_WIDE_MARK = _mark("charge_point_id", None)


def kind_mark(kind: AuditKind) -> bytes:
    return _mark("kind", kind.value)


@contextmanager
def reading(path: Path) -> Iterator[Store]:
    """The node store at ``path`` for reading, without disturbing a node that runs on it.

    The store this process already has open (a node running here: py-lmdb refuses a second open
    of the same files) is reused and left open; otherwise it is opened read-only and closed after.
    LMDB errors, opening or reading inside the block, come out as :class:`StoreError`.
    """
    own = _open_stores.get(os.path.realpath(path))
    opened = None
    if own is None or own.closed:
        try:
            # Map size 0 maps what the node has mapped; a map it grows later is adopted in _begin.
            own = opened = Store(path, readonly=True, map_size_bytes=0)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {path} read-only: {exc}") from exc
    try:
        yield own
    except lmdb.Error as exc:
        raise StoreError(f"reading the audit trail at {path}: {exc}") from exc
    finally:
        if opened is not None:
            opened.close()


def _begin(store: Store) -> Any:
    try:
        return store.env.begin()
    except lmdb.MapResizedError:
        store.env.set_mapsize(0)  # the node grew the map since we opened it: adopt the new size
        return store.env.begin()


def _db(store: Store, name: str) -> Any | None:
    try:
        return store.table(name)
    except lmdb.NotFoundError:  # read-only open of a store that never had an audit record
        return None


def _entries(store: Store, name: str) -> int:
    db = _db(store, name)
    if db is None:
        return 0
    with _begin(store) as txn:
        return int(txn.stat(db)["entries"])


def _ms_key(t: datetime) -> bytes:
    return min(max(_ms(t), 0), _MS_MAX).to_bytes(8, "big")


def _after_ms_key(t: datetime) -> bytes:
    return (min(max(_ms(t), 0), _MS_MAX) + 1).to_bytes(8, "big")


def _walk(
    store: Store, index: str, prefix: bytes, low: bytes, high: bytes | None, *, newest_first: bool
) -> Iterator[bytes]:
    """Encoded records whose index key is ``prefix + k`` with ``low <= k < high`` (``None``: no
    upper bound), in index order or reversed."""
    index_db, records_db = _db(store, index), _db(store, AUDIT_TABLE)
    if index_db is None or records_db is None:
        return
    lo = prefix + low
    if high is not None:
        hi: bytes | None = prefix + high
    elif prefix:  # just past every key under the prefix (prefixes end in NUL)
        hi = prefix[:-1] + bytes([prefix[-1] + 1])
    else:
        hi = None
    while True:
        chunk: list[bytes] = []
        seen = 0
        last = b""
        with _begin(store) as txn:
            cur = txn.cursor(db=index_db)
            if newest_first:
                # The last key below ``hi``: step back from the first key at or above it.
                positioned = cur.last() if hi is None or not cur.set_range(hi) else cur.prev()
                keys = cur.iterprev(values=False) if positioned else iter(())
            else:
                keys = cur.iternext(values=False) if cur.set_range(lo) else iter(())
            for key in keys:
                if key < lo or (hi is not None and key >= hi) or not key.startswith(prefix):
                    break
                last = bytes(key)
                raw = txn.get(last[-8:], db=records_db)
                if raw is not None:
                    chunk.append(bytes(raw))
                seen += 1
                if seen >= CHUNK:
                    break
        yield from chunk
        if seen < CHUNK:
            return
        if newest_first:
            hi = last
        else:
            lo = last + b"\x00"


def _cp_prefix(charge_point_id: str) -> bytes:
    return charge_point_id.encode() + b"\x00"


def records_by_time(
    store: Store,
    start: datetime | None,
    end: datetime | None,
    *,
    charge_point_id: str | None = None,
    newest_first: bool = False,
) -> Iterator[AuditRecord]:
    """Records with ``start <= time <= end`` (to the millisecond; ``None``: open), of one charge
    point or of all, oldest or newest first."""
    low = b"" if start is None else _ms_key(start)
    high = None if end is None else _after_ms_key(end)
    if charge_point_id is None:
        index, prefix = AUDIT_BY_TIME, b""
    else:
        index, prefix = AUDIT_BY_CP, _cp_prefix(charge_point_id)
    for raw in _walk(store, index, prefix, low, high, newest_first=newest_first):
        yield decode_record(raw)


SITE_WIDE_PREFIX = _cp_prefix("")  # site-wide records, when the cp index holds them (see below)


def site_wide_indexed(store: Store) -> bool:
    """Whether every record with a time index entry also has one in ``audit_cp``: either all
    records name a charge point, or site-wide ones are indexed under the empty id (key ``NUL,
    time, id``). Then site-wide records are a prefix walk; otherwise (``stage_record`` indexes
    only records with a charge point) finding them means reading the time index."""
    return _entries(store, AUDIT_BY_TIME) == _entries(store, AUDIT_BY_CP)


def _site_wide_walk(
    store: Store, low: bytes, high: bytes | None, *, newest_first: bool
) -> Iterator[bytes]:
    """Encoded site-wide records (and, from the time index, others that may be; callers check)."""
    if site_wide_indexed(store):
        return _walk(store, AUDIT_BY_CP, SITE_WIDE_PREFIX, low, high, newest_first=newest_first)
    walk = _walk(store, AUDIT_BY_TIME, b"", low, high, newest_first=newest_first)
    return (raw for raw in walk if SITE_WIDE_MARK in raw)


def site_wide_between(store: Store, start: datetime, end: datetime) -> list[AuditRecord]:
    """Records without a charge point with ``start <= time <= end``."""
    out = []
    for raw in _site_wide_walk(store, _ms_key(start), _after_ms_key(end), newest_first=False):
        record = decode_record(raw)
        if record.charge_point_id is None:
            out.append(record)
    return out


def latest_for(
    store: Store,
    charge_point_id: str,
    before: datetime,
    kinds: Iterable[AuditKind],
    *,
    max_scan: int,
) -> tuple[dict[AuditKind, AuditRecord], bool]:
    """The newest record of each of ``kinds`` for the charge point with time < ``before``,
    looking at most ``max_scan`` records back; and whether the search was complete (all found,
    or reached the charge point's oldest record)."""
    wanted = set(kinds)
    marks = [kind_mark(k) for k in wanted]
    found: dict[AuditKind, AuditRecord] = {}
    walk = _walk(
        store, AUDIT_BY_CP, _cp_prefix(charge_point_id), b"", _ms_key(before), newest_first=True
    )
    for scanned, raw in enumerate(walk, 1):
        if any(m in raw for m in marks):
            record = decode_record(raw)
            if record.kind in wanted and record.kind not in found:
                found[record.kind] = record
                if len(found) == len(wanted):
                    return found, True
        if scanned >= max_scan:
            return found, False
    return found, True


def latest_site_wide(
    store: Store, before: datetime, kinds: Iterable[AuditKind], *, max_scan: int
) -> tuple[AuditRecord | None, bool]:
    """The newest record without a charge point of one of ``kinds`` with time < ``before``,
    looking at most ``max_scan`` index entries back; and whether the search was complete (found,
    or reached the oldest record)."""
    wanted = set(kinds)
    marks = [kind_mark(k) for k in wanted]
    if site_wide_indexed(store):
        walk = _walk(store, AUDIT_BY_CP, SITE_WIDE_PREFIX, b"", _ms_key(before), newest_first=True)
    else:
        walk = _walk(store, AUDIT_BY_TIME, b"", b"", _ms_key(before), newest_first=True)
    for scanned, raw in enumerate(walk, 1):
        if SITE_WIDE_MARK in raw and any(m in raw for m in marks):
            record = decode_record(raw)
            if record.charge_point_id is None and record.kind in wanted:
                return record, True
        if scanned >= max_scan:
            return None, False
    return None, True


def has_records_for(store: Store, charge_point_id: str) -> bool:
    db = _db(store, AUDIT_BY_CP)
    if db is None or not charge_point_id:
        return False
    prefix = _cp_prefix(charge_point_id)
    with _begin(store) as txn:
        cur = txn.cursor(db=db)
        return bool(cur.set_range(prefix)) and bytes(cur.key()).startswith(prefix)


def charge_point_ids(store: Store, limit: int) -> list[str]:
    """Up to ``limit`` charge point ids with records, in order: one seek per id, not a scan."""
    db = _db(store, AUDIT_BY_CP)
    if db is None:
        return []
    out: list[str] = []
    with _begin(store) as txn:
        cur = txn.cursor(db=db)
        positioned = cur.first()
        while positioned and len(out) < limit:
            key = bytes(cur.key())
            cp = key[: key.find(b"\x00")]
            if cp:  # not the site-wide records
                out.append(cp.decode(errors="replace"))
            positioned = cur.set_range(cp + b"\x01")  # past every key of this charge point
    return out


def unindexed(store: Store) -> int:
    """Records missing from the time index (appended without ``actors.audit.stage_record``):
    explain and audit cannot see them."""
    return max(0, _entries(store, AUDIT_TABLE) - _entries(store, AUDIT_BY_TIME))


# --- writing outside an actor (tests, benches, tools) ----------------------------------------


class _Staging:
    """Stands in for the actor ``stage_record`` stages into, so records written here get exactly
    the keys and indexes a running node writes."""

    def __init__(self, store: Store) -> None:
        self.ops: list[Op] = []
        self.ctx = self
        self.system = self
        self._store = store

    def require_store(self) -> Store:
        return self._store

    def stage(self, op: Op, after_commit: Callable[[], None] | None = None) -> None:
        self.ops.append(op)


def write_records(store: Store, records: Iterable[AuditRecord]) -> list[int]:
    """Append ``records`` in one write transaction, now; their new ids. Not for a running node's
    actors (they stage records with the message they handle), nor while its writer runs."""
    staging = _Staging(store)
    ids = [stage_record(staging, record) for record in records]  # type: ignore[arg-type]
    for name in (AUDIT_TABLE, AUDIT_BY_TIME, AUDIT_BY_CP):
        store.table(name)
    store.write_now(staging.ops)
    return ids
