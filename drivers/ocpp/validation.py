"""Payload validation against the official OCPP JSON schemas, compiled once with fastjsonschema.

The schema files are the ones the ``ocpp`` package ships (OCA's own, 1.6 with the security
extension and 2.0.1), read from its installed directory. Each is compiled to a Python function the
first time its action is seen (or all at once by :func:`preload`) and kept for the process.

Parity with the ``ocpp`` package, which a test holds us to:

- ``ocpp`` validates every version with a Draft-4 validator, although the 2.0.1 files declare
  draft-06; the drafts differ on whether ``1.0`` is an integer. We compile as Draft-4 too.
- ``ocpp`` checks no ``format`` (its validator has no format checker), so neither do we: a
  ``date-time`` field is only checked to be a string.
- ``ocpp`` parses three 1.6 payloads with ``Decimal`` so that ``multipleOf: 0.1`` accepts 21.4;
  fastjsonschema compares such floats through ``Decimal(repr(x))``, which agrees.

Failures map to OCPP error kinds by the schema keyword that failed (our mapping, where ``ocpp``
differs: it answers a missing required field with ProtocolError, a 1.6 spelling it does not have
for occurrence; the OCPP-J tables call that an occurrence constraint)::

    type, maxLength, minLength          -> TypeConstraintViolation
    required, minItems, maxItems        -> Occur(r)enceConstraintViolation
    enum, minimum, maximum, multipleOf  -> PropertyConstraintViolation
    additionalProperties, anything else -> FormationViolation (1.6) / FormatViolation (2.0.1)
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastjsonschema

from drivers.ocpp.codes import ErrorKind, OcppVersion
from drivers.ocpp.framing import (
    CALL,
    CALL_RESULT,
    Call,
    CallResult,
    PayloadViolation,
    UnknownAction,
)
from drivers.ocpp.redact import printable

Validator = Callable[[Any], Any]


def _ocpp_package_dir() -> Path:
    # Located, not imported: importing ocpp would pull in jsonschema for nothing.
    spec = importlib.util.find_spec("ocpp")
    if spec is None or spec.origin is None:
        raise ImportError("the ocpp package (which ships the official schemas) is not installed")
    return Path(spec.origin).parent


SCHEMA_ROOT: Final = _ocpp_package_dir()
_DRAFT_4: Final = "http://json-schema.org/draft-04/schema#"

_KIND_BY_RULE: Final[dict[str, ErrorKind]] = {
    "type": ErrorKind.TYPE,
    "maxLength": ErrorKind.TYPE,
    "minLength": ErrorKind.TYPE,
    "required": ErrorKind.OCCURRENCE,
    "minItems": ErrorKind.OCCURRENCE,
    "maxItems": ErrorKind.OCCURRENCE,
    "enum": ErrorKind.PROPERTY,
    "minimum": ErrorKind.PROPERTY,
    "maximum": ErrorKind.PROPERTY,
    "exclusiveMinimum": ErrorKind.PROPERTY,
    "exclusiveMaximum": ErrorKind.PROPERTY,
    "multipleOf": ErrorKind.PROPERTY,
    "pattern": ErrorKind.PROPERTY,
    "format": ErrorKind.PROPERTY,
    "uniqueItems": ErrorKind.PROPERTY,
}


def _no_remote_refs(uri: str) -> Any:
    # fastjsonschema fetches unknown $ref URIs over the network by default; the official files
    # only refer inside themselves, so anything else is a broken schema, never a download.
    raise ValueError(f"remote $ref {uri!r} is not allowed in an OCPP schema")


_HANDLERS: Final = {scheme: _no_remote_refs for scheme in ("http", "https", "file", "ftp", "urn")}


def schema_path(version: OcppVersion, action: str, *, response: bool) -> Path:
    folder = SCHEMA_ROOT / ("v16" if version is OcppVersion.V16 else "v201") / "schemas"
    if response:
        return folder / f"{action}Response.json"
    suffix = "" if version is OcppVersion.V16 else "Request"
    return folder / f"{action}{suffix}.json"


@cache
def actions(version: OcppVersion) -> frozenset[str]:
    """Every action this version defines (a request schema and a response schema both exist)."""
    folder = schema_path(version, "X", response=False).parent
    names = {p.stem for p in folder.glob("*.json")}
    responses = {n.removesuffix("Response") for n in names if n.endswith("Response")}
    if version is OcppVersion.V16:
        requests = names - {n for n in names if n.endswith("Response")}
    else:
        requests = {n.removesuffix("Request") for n in names if n.endswith("Request")}
    return frozenset(requests & responses)


def load_schema(version: OcppVersion, action: str, *, response: bool) -> dict[str, Any]:
    # The 2.0.1 files start with a byte order mark.
    text = schema_path(version, action, response=response).read_text(encoding="utf-8-sig")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(version: OcppVersion, action: str, response: bool) -> Validator:
    schema = dict(load_schema(version, action, response=response))
    schema["$schema"] = _DRAFT_4
    validator: Validator = fastjsonschema.compile(
        schema,
        handlers=_HANDLERS,
        use_default=False,  # the default would write "default" values into the payload
        use_formats=False,
    )
    return validator


def preload(version: OcppVersion | None = None) -> int:
    """Compile every schema now (about 4 ms each) rather than on first use; return the count."""
    versions = list(OcppVersion) if version is None else [version]
    count = 0
    for v in versions:
        for action in sorted(actions(v)):
            _validator(v, action, False)
            _validator(v, action, True)
            count += 2
    return count


def validate_payload(
    version: OcppVersion,
    action: str,
    payload: Any,
    *,
    response: bool,
    message_id: str | None = None,
) -> None:
    """Raise :class:`UnknownAction` or :class:`PayloadViolation` unless the payload is valid."""
    message_type = CALL_RESULT if response else CALL
    if action not in actions(version):
        raise UnknownAction(action, version, message_id=message_id, message_type=message_type)
    try:
        _validator(version, action, response)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _violation(exc, action, message_id, message_type) from None


def validate_call(frame: Call, version: OcppVersion) -> None:
    validate_payload(
        version, frame.action, frame.payload, response=False, message_id=frame.message_id
    )


def validate_call_result(frame: CallResult, action: str, version: OcppVersion) -> None:
    """``action`` is the one of the CALL this result answers (a CALLRESULT does not carry it)."""
    validate_payload(version, action, frame.payload, response=True, message_id=frame.message_id)


def _violation(
    exc: fastjsonschema.JsonSchemaValueException,
    action: str,
    message_id: str | None,
    message_type: int,
) -> PayloadViolation:
    rule = exc.rule or ""
    path = [str(p) for p in (exc.path or [])[1:]]  # the first element is the root, "data"
    what = f"{rule} constraint failed"
    value, definition = exc.value, exc.definition
    if isinstance(value, dict) and isinstance(definition, dict):
        # Name the field itself: which one is missing, or which one is not allowed.
        if rule == "required":
            missing = [k for k in definition.get("required", ()) if k not in value]
            path.append(str(missing[0]) if missing else "")
            what = "required field missing"
        elif rule == "additionalProperties":
            allowed = definition.get("properties", {})
            extra = sorted(str(k) for k in value if k not in allowed)
            path.append(extra[0] if extra else "")
            what = "field not allowed here"
    # A peer's unknown key can be any length and any characters; the CALLERROR it earns stays
    # small, and a control character in it (a newline) is escaped: the field is logged too.
    field = ".".join(printable(p) for p in path if p)[:128]
    where = field or "payload"
    return PayloadViolation(
        f"{action}: {where}: {what}",
        kind=_KIND_BY_RULE.get(rule, ErrorKind.FORMAT),
        action=action,
        field=field,
        message_id=message_id,
        message_type=message_type,
    )
