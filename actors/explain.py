"""Tell the story behind a charge point's limit or answer at a time, from its audit records.

The store hands over the records it selected (by charge point and time, site-wide ones included);
:func:`explain` picks out:

- the limit in force: the latest ``limit`` record for the charge point at or before the time that
  carries a limit (``limit_record`` conventions: ``limit_a``, ``binding_source``), with the source
  that bound it and its inputs (a cloud cap's record, ``cloud_cap_a``, is told around it); one
  per connector (``connector_id``) when the records name more than one (``limits`` in the
  JSON, ``limit`` the latest of them);
- the answer: the latest ``authorization`` record at or before the time;
- the central rules in force (latest ``rules_applied`` / ``rules_rolled_back`` at or before);
- everything else within ``window_s`` either side: earlier or later limits, authorizations, late
  answers, messages buffered, coalesced, replayed or dead-lettered, cloud link changes, restarts,
  rejected frames.

It returns text lines for a person and a JSON-able dict for tools. :func:`format_audit` renders the
rows of ``run.py audit [--since TIME] [--json]``; :func:`parse_since` reads its ``--since``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from actors.audit_records import AuditKind, AuditRecord, record_to_json
from actors.utc import format_utc, parse_utc, require_aware

_RULES_KINDS = frozenset({AuditKind.RULES_APPLIED, AuditKind.RULES_ROLLED_BACK})


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    lines: tuple[str, ...]
    data: Mapping[str, Any]

    def text(self) -> str:
        return "\n".join(self.lines)


def explain(
    records: Iterable[AuditRecord],
    *,
    charge_point_id: str,
    at_utc: datetime,
    window_s: float = 900.0,
) -> Explanation:
    require_aware(at_utc, where="explain at_utc")
    mine = sorted(
        (r for r in records if r.charge_point_id in (charge_point_id, None)),
        key=lambda r: (r.time_utc, r.id if r.id is not None else -1),
    )
    before = [r for r in mine if r.time_utc <= at_utc]
    own_before = [r for r in before if r.charge_point_id == charge_point_id]
    # A limit decided (``limit_a``): the broker's records of a cloud profile's cap coming or
    # going (``cloud_cap_a``) are kind ``limit`` too, but the cap binds only through the energy
    # node's decision (binding source "cloud profile" there): a cap above the site's limit, or
    # one cleared, leaves that decision as it was, unrecorded, and is no limit in force.
    decided = [r for r in own_before if r.kind is AuditKind.LIMIT and "limit_a" in r.inputs]
    # Per connector (the energy node decides, and records, each connector's limit): the latest
    # of any connector told alone made an idle connector's "0 A, no car" the charge point's
    # limit while its other connector's car charged.
    by_connector = _latest_by_connector(decided)
    limit = decided[-1] if decided else None
    answer = _latest(own_before, {AuditKind.AUTHORIZATION})
    rules = _latest(before, _RULES_KINDS)
    window = timedelta(seconds=window_s)
    chosen = {id(x) for x in (*by_connector.values(), answer, rules) if x is not None}
    around = [r for r in mine if abs(r.time_utc - at_utc) <= window and id(r) not in chosen]

    at = format_utc(at_utc)
    lines = [f"Why {charge_point_id} at {at}:"]
    if not by_connector:
        lines.append("  Limit: no limit decision at or before this time in the records given.")
    for connector, record in by_connector.items():
        label = "Limit" if len(by_connector) == 1 else f"Limit on connector {connector}"
        source = record.inputs.get("binding_source", "unknown source")
        lines.append(
            f"  {label}: {record.decision} since {format_utc(record.time_utc)}{_ref(record)}, "
            f"bound by {source}: {record.reason}"
        )
        inputs = {k: v for k, v in record.inputs.items() if k not in ("limit_a", "binding_source")}
        if inputs:
            lines.append(f"    inputs: {_inputs(inputs)}")
    if answer is None:
        lines.append("  Answer: no authorization decision at or before this time.")
    else:
        who = answer.inputs.get("id_tag", "?")
        path = answer.inputs.get("path", "?")
        lines.append(
            f"  Answer: {answer.decision} for {who} via {path} at "
            f"{format_utc(answer.time_utc)}{_ref(answer)}: {answer.reason}"
        )
    if rules is not None:
        lines.append(
            f"  Rules: {rules.decision} at {format_utc(rules.time_utc)}{_ref(rules)}: {rules.reason}"
        )
    minutes = f"{window_s / 60:g} min"
    if around:
        lines.append(f"  Around it (within {minutes}):")
        lines.extend(f"    {_row(r, at_utc)}" for r in around)
    else:
        lines.append(f"  Nothing else recorded within {minutes}.")

    data = {
        "charge_point_id": charge_point_id,
        "at_utc": at,
        "window_s": window_s,
        "limit": None if limit is None else record_to_json(limit),
        "limits": [record_to_json(r) for r in by_connector.values()],
        "answer": None if answer is None else record_to_json(answer),
        "rules": None if rules is None else record_to_json(rules),
        "around": [record_to_json(r) for r in around],
        "messages": {
            kind.value: sum(1 for r in around if r.kind is kind)
            for kind in (
                AuditKind.MESSAGE_BUFFERED,
                AuditKind.MESSAGE_COALESCED,
                AuditKind.MESSAGE_REPLAYED,
                AuditKind.MESSAGE_DEAD_LETTERED,
            )
        },
    }
    return Explanation(lines=tuple(lines), data=data)


def _latest_by_connector(records: list[AuditRecord]) -> dict[Any, AuditRecord]:
    """The latest of ``records`` (oldest first) per ``connector_id`` input, by connector."""
    latest: dict[Any, AuditRecord] = {}
    for record in records:
        latest[record.inputs.get("connector_id")] = record
    return dict(
        sorted(latest.items(), key=lambda kv: (not isinstance(kv[0], int), str(kv[0]).zfill(9)))
    )


def _latest(records: list[AuditRecord], kinds: Iterable[AuditKind]) -> AuditRecord | None:
    wanted = set(kinds)
    for record in reversed(records):
        if record.kind in wanted:
            return record
    return None


def _ref(record: AuditRecord) -> str:
    return "" if record.id is None else f" (record #{record.id})"


def _inputs(inputs: Mapping[str, Any]) -> str:
    parts = []
    for key in sorted(inputs):
        value = inputs[key]
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def _row(record: AuditRecord, at_utc: datetime) -> str:
    delta = (record.time_utc - at_utc).total_seconds()
    return (
        f"{format_utc(record.time_utc)} ({delta:+.0f} s){_ref(record)} {record.kind.value}: "
        f"{record.decision} - {record.reason}"
    )


# --- run.py audit ----------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: datetime) -> datetime:
    """``--since``: an RFC 3339 time, or a span back from now (``90s``, ``15m``, ``2h``, ``1d``)."""
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        return parse_utc(text, where="--since")
    except ValueError:
        raise ValueError(
            f"--since: expected an RFC 3339 time or a span like 15m, 2h, 1d; got {text!r}"
        ) from None


def format_audit(records: Iterable[AuditRecord], *, as_json: bool = False) -> str:
    """Rows oldest first: aligned text lines, or a JSON array of records with ``--json``."""
    ordered = sorted(records, key=lambda r: (r.time_utc, r.id if r.id is not None else -1))
    if as_json:
        return orjson.dumps(
            [record_to_json(r) for r in ordered], option=orjson.OPT_INDENT_2
        ).decode()
    lines = []
    for r in ordered:
        ident = "-" if r.id is None else str(r.id)
        cp = r.charge_point_id or "-"
        lines.append(
            f"{ident:>7}  {format_utc(r.time_utc)}  {r.kind.value:<22} {cp:<14} "
            f"{r.decision}  ({r.reason})  [{r.actor}]"
        )
    return "\n".join(lines)
