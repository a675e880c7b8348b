"""Audit records: one append-only entry per local decision, with its inputs and reason.

An :class:`AuditRecord` is built with :func:`new_record` (or a builder below), which redacts its
inputs and checks they are plain JSON; the store assigns ``id`` on append. Bytes on disk are orjson
of ``{"rv": RECORD_VERSION, ...}``; older record versions decode through :data:`MIGRATIONS`.

Redaction (:func:`redact`) is the one gate between decision inputs and the trail, which is synced to
the cloud and printed by the CLI. It replaces, at any depth:

- the value of any key that looks like a secret: password, passwd, passphrase, secret, credential,
  apikey, privatekey, authorizationkey, token (but not the OCPP identities idToken/groupIdToken,
  which the trail must show), cookie, and the header names authorization/proxy-authorization;
- OCPP configuration pairs naming a secret (1.6 ``{"key": "AuthorizationKey", "value": ...}``,
  2.0.1 ``{"variable": {"name": "BasicAuthPassword"}, "attributeValue": ...}``) and header pairs
  ``["Authorization", "Basic ..."]``;
- any string that is an HTTP credential (``Basic dXNlcjpwYXNz``, ``Bearer eyJ...``, ``Digest ...``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from actors.utc import format_utc, parse_utc, require_aware

REDACTED = "<redacted>"


class AuditKind(StrEnum):
    AUTHORIZATION = "authorization"
    LATE_AUTHORIZATION = "late_authorization"  # the cloud disagreed with a local acceptance
    LIMIT = "limit"
    MESSAGE_BUFFERED = "message_buffered"
    MESSAGE_COALESCED = "message_coalesced"
    MESSAGE_REPLAYED = "message_replayed"
    MESSAGE_DEAD_LETTERED = "message_dead_lettered"
    FRAME_REJECTED = "frame_rejected"
    CLOUD_LINK = "cloud_link"  # the upstream session went up or down
    RESTART = "restart"
    RULES_APPLIED = "rules_applied"
    RULES_REFUSED = "rules_refused"
    RULES_ROLLED_BACK = "rules_rolled_back"
    LOCAL_LIST_UPDATED = "local_list_updated"
    CACHE_CLEARED = "cache_cleared"
    KEY_ROTATED = "key_rotated"  # the cloud changed a charge point's HTTP Basic key (never shown)


MESSAGE_KINDS = frozenset(
    {
        AuditKind.MESSAGE_BUFFERED,
        AuditKind.MESSAGE_COALESCED,
        AuditKind.MESSAGE_REPLAYED,
        AuditKind.MESSAGE_DEAD_LETTERED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    id: int | None  # assigned by the store on append
    time_utc: datetime
    actor: str  # supervision path, e.g. "broker/charge_points/CP001"
    charge_point_id: str | None
    kind: AuditKind
    decision: str
    inputs: Mapping[str, Any] = field(default_factory=dict)  # plain JSON, redacted
    reason: str = ""


def new_record(
    *,
    time_utc: datetime,
    actor: str,
    kind: AuditKind,
    decision: str,
    reason: str,
    charge_point_id: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """A record ready to append: inputs redacted and checked to be plain JSON."""
    require_aware(time_utc, where="audit record time_utc")
    clean = _flat_clean(inputs)
    if clean is None:
        clean = redact(dict(inputs or {}))
        _check_plain(clean, "inputs")
    return AuditRecord(
        id=None,
        time_utc=time_utc,
        actor=actor,
        charge_point_id=charge_point_id,
        kind=kind,
        decision=decision,
        inputs=clean,
        reason=reason,
    )


def with_id(record: AuditRecord, record_id: int) -> AuditRecord:
    return replace(record, id=record_id)


# --- builders that fix the conventions explain.py reads --------------------------------------


def limit_record(
    *,
    time_utc: datetime,
    actor: str,
    charge_point_id: str,
    limit_a: float,
    binding_source: str,
    reason: str,
    connector_id: int | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """A current limit and the source that bound it (grid limit, meter headroom, rule, ...)."""
    fields: dict[str, Any] = dict(inputs or {})
    fields.update(limit_a=limit_a, binding_source=binding_source)
    if connector_id is not None:
        fields["connector_id"] = connector_id
    return new_record(
        time_utc=time_utc,
        actor=actor,
        kind=AuditKind.LIMIT,
        charge_point_id=charge_point_id,
        decision=f"{limit_a:g} A",
        reason=reason,
        inputs=fields,
    )


def message_record(
    kind: AuditKind,
    *,
    time_utc: datetime,
    actor: str,
    charge_point_id: str,
    action: str,
    reason: str,
    message_id: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> AuditRecord:
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"{kind.value} is not a message kind ({sorted(MESSAGE_KINDS)})")
    fields: dict[str, Any] = dict(inputs or {})
    fields["action"] = action
    if message_id is not None:
        fields["message_id"] = message_id
    return new_record(
        time_utc=time_utc,
        actor=actor,
        kind=kind,
        charge_point_id=charge_point_id,
        decision=action,
        reason=reason,
        inputs=fields,
    )


# --- redaction -------------------------------------------------------------------------------

_SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "credential",
    "apikey",
    "privatekey",
    "authorizationkey",
    "token",
    "cookie",
)
_SECRET_NAMES = frozenset({"authorization", "proxyauthorization", "authorizationheader"})
_IDENTITIES = frozenset({"idtoken", "groupidtoken"})  # OCPP 2.0.1 identities, not secrets
_HTTP_CREDENTIAL = re.compile(
    r"^\s*(?:(?:basic|bearer)\s+[A-Za-z0-9+/=._~-]{6,}\s*$|digest\s+\w+=)", re.IGNORECASE
)


def secret_name(name: object) -> bool:
    return isinstance(name, str) and _secret_name(name)


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    # Cached: the same few keys recur in every record (measured: over half of an allocator step
    # redacting records before this).
    folded = re.sub(r"[^a-z0-9]", "", name.lower())

    if folded in _IDENTITIES:
        return False
    return folded in _SECRET_NAMES or any(word in folded for word in _SECRET_WORDS)


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) in which no secret survives; see the module docstring."""
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        pair_secret = secret_name(value.get("key")) or _names_secret_variable(value)
        for key, item in value.items():
            if secret_name(key) or (pair_secret and key in ("value", "attributeValue")):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list | tuple):
        if len(value) == 2 and secret_name(value[0]):
            return [value[0], REDACTED]
        return [redact(item) for item in value]
    if isinstance(value, str) and _HTTP_CREDENTIAL.match(value):
        return REDACTED
    return value


_SCALARS = (bool, int, float, type(None))


def _flat_clean(inputs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The common case in one pass: flat inputs of numbers, booleans, None and plain strings
    under names that are not secret (a limit record per connector, a site-wide decrease writes
    hundreds in one allocator step: redact + check took 40 % of that step). None when anything
    needs the general path (nested values, a secret-like name or value, a bad number)."""
    if not inputs:
        return {}
    if secret_name(inputs.get("key")):  # {"key": "AuthorizationKey", "value": ...}
        return None
    for key, value in inputs.items():
        if type(key) is not str or _secret_name(key):
            return None
        kind = type(value)
        if kind is str:
            if _HTTP_CREDENTIAL.match(value):
                return None
        elif kind is float:
            if not math.isfinite(value):
                return None
        elif kind is int:
            if not -(2**63) <= value < 2**64:
                return None
        elif kind not in _SCALARS:
            return None
    return dict(inputs)


def _names_secret_variable(value: Mapping[Any, Any]) -> bool:
    variable = value.get("variable")
    return isinstance(variable, Mapping) and secret_name(variable.get("name"))


def _check_plain(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"{path}: integer {value} does not fit 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a finite number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not a string")
            _check_plain(item, f"{path}.{key}")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
        return
    raise ValueError(
        f"{path}: {type(value).__name__} is not plain JSON (use str/int/float/list/dict)"
    )


# --- encoding --------------------------------------------------------------------------------

RECORD_VERSION = 1
# MIGRATIONS[n] turns a version-n record dict into a version-(n+1) one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "time_utc": format_utc(record.time_utc),
        "actor": record.actor,
        "charge_point_id": record.charge_point_id,
        "kind": record.kind.value,
        "decision": record.decision,
        "inputs": dict(record.inputs),
        "reason": record.reason,
    }


def encode_record(record: AuditRecord) -> bytes:
    return orjson.dumps({"rv": RECORD_VERSION, **record_to_json(record)})


def decode_record(data: bytes | memoryview) -> AuditRecord:
    try:
        doc = orjson.loads(bytes(data))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"audit record: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"audit record: expected an object, got {type(doc).__name__}")
    rv = doc.pop("rv", None)
    if isinstance(rv, bool) or not isinstance(rv, int) or rv < 1:
        raise ValueError(f"audit record: rv must be an integer >= 1, got {rv!r}")
    if rv > RECORD_VERSION:
        raise ValueError(f"audit record version {rv} is newer than this code's {RECORD_VERSION}")
    while rv < RECORD_VERSION:
        migrate = MIGRATIONS.get(rv)
        if migrate is None:
            raise ValueError(f"audit record version {rv} has no migration to {rv + 1}")
        doc = migrate(doc)
        rv += 1
    return record_from_json(doc)


def record_from_json(doc: Mapping[str, Any]) -> AuditRecord:
    ident = doc.get("id")
    kind = doc.get("kind")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int)):
        raise ValueError(f"audit record id: expected an integer, got {ident!r}")
    if kind not in _KINDS:
        raise ValueError(f"audit record kind: unknown {kind!r} (known: {sorted(_KINDS)})")
    inputs = doc.get("inputs", {})
    if not isinstance(inputs, dict):
        raise ValueError(f"audit record inputs: expected an object, got {inputs!r:.100}")
    texts = {}
    for name in ("actor", "decision", "reason"):
        value = doc.get(name, "")
        if not isinstance(value, str):
            raise ValueError(f"audit record {name}: expected a string, got {value!r:.100}")
        texts[name] = value
    cp = doc.get("charge_point_id")
    if cp is not None and not isinstance(cp, str):
        raise ValueError(f"audit record charge_point_id: expected a string, got {cp!r}")
    return AuditRecord(
        id=ident,
        time_utc=parse_utc(doc.get("time_utc"), where="audit record time_utc"),
        actor=texts["actor"],
        charge_point_id=cp,
        kind=_KINDS[kind],
        decision=texts["decision"],
        inputs=inputs,
        reason=texts["reason"],
    )


_KINDS = {k.value: k for k in AuditKind}
