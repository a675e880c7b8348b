"""Reading the audit trail of a node store: by time, by charge point, after an id.

Records are written by ``actors.audit.stage_record`` with two indexes (by time, and by charge
point and time), so questions like "why did CP-7 get 10 A at 14:02" read a few keys, not the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from actors.audit import AUDIT_BY_CP, AUDIT_BY_TIME, AUDIT_TABLE, record_key
from actors.audit_records import AuditRecord, decode_record
from drivers.store.env import Store


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def get_record(store: Store, record_id: int) -> AuditRecord | None:
    raw = store.get(AUDIT_TABLE, record_key(record_id))
    return None if raw is None else decode_record(raw)


def records_after(
    store: Store, after_id: int = 0, limit: int | None = None
) -> Iterator[AuditRecord]:
    """In id order (the order they were committed in one node), strictly after ``after_id``."""
    n = 0
    for _, raw in store.scan(AUDIT_TABLE, start=record_key(after_id + 1)):
        yield decode_record(raw)
        n += 1
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
