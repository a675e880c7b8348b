"""OCPP-J framing, sans-I/O: text frame to typed frame and back, and the CALLERROR a bad frame earns.

Parsed frames keep the text they came in (``raw``) so a relay forwards exactly what the peer sent;
nothing here round-trips a payload through dataclasses. The payload is also available parsed, for
the broker's decisions and for schema validation (:mod:`drivers.ocpp.validation`).

Exceptions (one tree; every error a frame can cause is one of these)::

    FrameError (ValueError)        the frame cannot be accepted; .kind, .message_id, .message_type
    ├── MalformedFrame             not JSON, not an array, wrong length or element types
    │   └── InvalidMessageId       the message id is missing, not a string, empty or over 36 chars
    ├── UnknownMessageType         the message type number is not 2 (CALL), 3 or 4
    ├── UnknownAction              (raised by validation) no schema for this action and version
    └── PayloadViolation           (raised by validation) the payload breaks the action's schema

``FrameError.reply(version)`` gives the CALLERROR text to send back, or None when none is due: a
CALLRESULT or CALLERROR is never answered, and OCPP 1.6 ignores unknown message types (section
4.1.3). A frame whose message id cannot be read is answered with id ``"-1"`` (2.0.1 Part 4 section
4.2.3; applied to 1.6 as well, which has no rule for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from drivers.ocpp.codes import ErrorKind, OcppVersion, error_code

CALL: Final = 2
CALL_RESULT: Final = 3
CALL_ERROR: Final = 4

MAX_MESSAGE_ID_CHARS: Final = 36
MAX_ERROR_DESCRIPTION_CHARS: Final = 255  # 2.0.1 Part 4 table 7: string[255]
UNREADABLE_ID: Final = "-1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]
    raw: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]
    raw: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: dict[str, Any]
    raw: str


Frame = Call | CallResult | CallError


class FrameError(ValueError):
    """A frame that cannot be accepted as OCPP-J.

    ``message_id`` is None when it could not be read; ``message_type`` is None when the message
    type number could not be read (the frame might have been a CALL, so it is answered).
    """

    def __init__(
        self,
        description: str,
        *,
        kind: ErrorKind,
        message_id: str | None,
        message_type: int | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.kind = kind
        self.message_id = message_id
        self.message_type = message_type
        self.details: dict[str, Any] = {} if details is None else details

    def code(self, version: OcppVersion) -> str | None:
        return error_code(self.kind, version)

    def reply(self, version: OcppVersion) -> str | None:
        """The CALLERROR text to send back, or None when this frame must not be answered."""
        if self.message_type not in (None, CALL) and not isinstance(self, UnknownMessageType):
            return None
        code = self.code(version)
        if code is None:
            return None
        message_id = self.message_id if self.message_id is not None else UNREADABLE_ID
        return call_error_text(message_id, code, self.description, self.details)


class MalformedFrame(FrameError):
    def __init__(
        self,
        description: str,
        *,
        message_id: str | None,
        message_type: int | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        # 2.0.1 reserves RpcFrameworkError for a frame whose message id cannot be read.
        kind = ErrorKind.FORMAT if message_id is not None else ErrorKind.RPC_FRAMEWORK
        super().__init__(
            description,
            kind=kind,
            message_id=message_id,
            message_type=message_type,
            details=details,
        )


class InvalidMessageId(MalformedFrame):
    def __init__(self, description: str, *, message_type: int | None) -> None:
        super().__init__(description, message_id=None, message_type=message_type)


class UnknownMessageType(FrameError):
    def __init__(self, message_type: object, *, message_id: str | None) -> None:
        super().__init__(
            f"message type {message_type!r} is not 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)",
            kind=ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
            message_id=message_id,
            message_type=message_type if isinstance(message_type, int) else None,
        )


class UnknownAction(FrameError):
    def __init__(
        self,
        action: str,
        version: OcppVersion,
        *,
        message_id: str | None,
        message_type: int = CALL,
    ) -> None:
        super().__init__(
            f"action {action!r} is not known in OCPP {version}"[:200],
            kind=ErrorKind.NOT_IMPLEMENTED,
            message_id=message_id,
            message_type=message_type,
        )
        self.action = action


class PayloadViolation(FrameError):
    """``field`` is the dotted path of the offending field inside the payload ("" for the root)."""

    def __init__(
        self,
        description: str,
        *,
        kind: ErrorKind,
        action: str,
        field: str,
        message_id: str | None,
        message_type: int,
    ) -> None:
        super().__init__(
            description,
            kind=kind,
            message_id=message_id,
            message_type=message_type,
            details={"field": field} if field else {},
        )
        self.action = action
        self.field = field


def _readable_id(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID_CHARS:
        return value
    return None


def _object(value: object) -> dict[str, Any] | None:
    """A payload or details object; JSON null means "no payload" (OCPP-J 1.6 section 4.2.1)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return None


def parse_frame(text: str) -> Frame:
    """Parse one websocket text message; raise a :class:`FrameError` subclass and nothing else."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not valid JSON: {exc}", message_id=None, message_type=None) from None
    if not isinstance(msg, list) or not msg:
        raise MalformedFrame(
            f"an OCPP-J frame is a non-empty JSON array, got {type(msg).__name__}",
            message_id=None,
            message_type=None,
        )
    message_type = msg[0]
    if isinstance(message_type, bool) or not isinstance(message_type, int):
        raise MalformedFrame(
            f"message type must be an integer, got {message_type!r}"[:200],
            message_id=_readable_id(msg[1]) if len(msg) > 1 else None,
            message_type=None,
        )
    if message_type not in (CALL, CALL_RESULT, CALL_ERROR):
        raise UnknownMessageType(
            message_type, message_id=_readable_id(msg[1]) if len(msg) > 1 else None
        )
    if len(msg) < 2:
        raise InvalidMessageId("frame has no message id", message_type=message_type)
    message_id = msg[1]
    if not isinstance(message_id, str):
        raise InvalidMessageId(
            f"message id must be a string, got {type(message_id).__name__}",
            message_type=message_type,
        )
    if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise InvalidMessageId(
            f"message id must have 1 to {MAX_MESSAGE_ID_CHARS} characters, got {len(message_id)}",
            message_type=message_type,
        )
    if message_type == CALL:
        return _call(msg, message_id, text)
    if message_type == CALL_RESULT:
        return _call_result(msg, message_id, text)
    return _call_error(msg, message_id, text)


def _call(msg: list[Any], message_id: str, text: str) -> Call:
    if len(msg) != 4:
        raise MalformedFrame(
            f"a CALL has 4 elements, got {len(msg)}", message_id=message_id, message_type=CALL
        )
    action = msg[2]
    if not isinstance(action, str) or not action:
        raise MalformedFrame(
            f"a CALL's action must be a non-empty string, got {action!r}"[:200],
            message_id=message_id,
            message_type=CALL,
        )
    payload = _object(msg[3])
    if payload is None:
        raise MalformedFrame(
            f"a CALL's payload must be a JSON object, got {type(msg[3]).__name__}",
            message_id=message_id,
            message_type=CALL,
        )
    return Call(message_id=message_id, action=action, payload=payload, raw=text)


def _call_result(msg: list[Any], message_id: str, text: str) -> CallResult:
    if len(msg) != 3:
        raise MalformedFrame(
            f"a CALLRESULT has 3 elements, got {len(msg)}",
            message_id=message_id,
            message_type=CALL_RESULT,
        )
    payload = _object(msg[2])
    if payload is None:
        raise MalformedFrame(
            f"a CALLRESULT's payload must be a JSON object, got {type(msg[2]).__name__}",
            message_id=message_id,
            message_type=CALL_RESULT,
        )
    return CallResult(message_id=message_id, payload=payload, raw=text)


def _call_error(msg: list[Any], message_id: str, text: str) -> CallError:
    # Four elements (details left out) is tolerated: dropping a peer's CALLERROR for a missing
    # empty object would leave the caller waiting for a timeout instead.
    if len(msg) not in (4, 5):
        raise MalformedFrame(
            f"a CALLERROR has 5 elements, got {len(msg)}",
            message_id=message_id,
            message_type=CALL_ERROR,
        )
    code, description = msg[2], msg[3]
    details = _object(msg[4]) if len(msg) == 5 else {}
    if not isinstance(code, str) or not isinstance(description, str) or details is None:
        raise MalformedFrame(
            "a CALLERROR is [4, id, code string, description string, details object]",
            message_id=message_id,
            message_type=CALL_ERROR,
        )
    return CallError(
        message_id=message_id, code=code, description=description, details=details, raw=text
    )


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def call_text(message_id: str, action: str, payload: dict[str, Any]) -> str:
    _check_id(message_id)
    return _dumps([CALL, message_id, action, payload])


def call_text_json(message_id: str, action: str, payload_json: str) -> str:
    """:func:`call_text` for a payload that is JSON text already (a prepared profile): the same
    frame, the payload not serialised again."""
    _check_id(message_id)
    return f"[{CALL},{_dumps(message_id)},{_dumps(action)},{payload_json}]"


def call_result_text(message_id: str, payload: dict[str, Any]) -> str:
    _check_id(message_id)
    return _dumps([CALL_RESULT, message_id, payload])


def call_error_text(
    message_id: str, code: str, description: str = "", details: dict[str, Any] | None = None
) -> str:
    if message_id != UNREADABLE_ID:
        _check_id(message_id)
    return _dumps(
        [
            CALL_ERROR,
            message_id,
            code,
            description[:MAX_ERROR_DESCRIPTION_CHARS],
            {} if details is None else details,
        ]
    )


def _check_id(message_id: str) -> None:
    if not message_id or len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise ValueError(
            f"an OCPP message id has 1 to {MAX_MESSAGE_ID_CHARS} characters, got {message_id!r}"
        )
