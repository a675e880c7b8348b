"""Appending audit records: staged into the node store with the decision they explain.

A record is written in the same transaction as the state change or message it explains, so there
is never a decision without its record, nor a record of a decision that did not happen. Two indexes
are written with it (by time; by charge point and time) so questions are answered by a few reads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from actors.audit_records import AuditKind, AuditRecord, encode_record, new_record, with_id
from drivers.store.env import Op, Store
from supervisors.actor import Actor

AUDIT_TABLE = "audit"  # record id (8 bytes, big-endian) -> record
AUDIT_BY_TIME = "audit_time"  # time in ms (8), record id (8) -> b""
AUDIT_BY_CP = "audit_cp"  # charge point id ("" site-wide), NUL, time ms (8), record id (8) -> b""


def record_key(record_id: int) -> bytes:
    return record_id.to_bytes(8, "big")


def cp_index_key(charge_point_id: str, time_ms: int, record_id: int) -> bytes:
    return (
        charge_point_id.encode()
        + b"\x00"
        + time_ms.to_bytes(8, "big")
        + record_id.to_bytes(8, "big")
    )


def record_ops(store: Store, record: AuditRecord) -> tuple[list[Op], int]:
    """The store ops that append ``record`` with its indexes, and its new id."""
    record_id = store.next_id()
    data = encode_record(with_id(record, record_id))
    time_ms = int(record.time_utc.timestamp() * 1000)
    # Site-wide records (rules, links) are indexed under the empty id: "the rules in force at T"
    # is then one short backwards read, not a walk through the whole time index.
    return [
        ("put", AUDIT_TABLE, record_key(record_id), data),
        ("put", AUDIT_BY_TIME, time_ms.to_bytes(8, "big") + record_key(record_id), b""),
        ("put", AUDIT_BY_CP, cp_index_key(record.charge_point_id or "", time_ms, record_id), b""),
    ], record_id


def stage_record(
    actor: Actor, record: AuditRecord, after_commit: Callable[[], None] | None = None
) -> int:
    """Stage ``record`` with the message being handled; returns its id. ``after_commit`` runs
    once the record is on disk (e.g. to send what the record explains only then)."""
    ops, record_id = record_ops(actor.ctx.system.require_store(), record)
    for op in ops[:-1]:
        actor.stage(op)
    actor.stage(ops[-1], after_commit)
    return record_id


def audit(
    actor: Actor,
    kind: AuditKind,
    *,
    decision: str,
    reason: str,
    charge_point_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    return stage_record(
        actor,
        new_record(
            time_utc=now or datetime.now(UTC),
            actor=actor.path,
            kind=kind,
            decision=decision,
            reason=reason,
            charge_point_id=charge_point_id,
            inputs=inputs,
        ),
    )
