"""The one place the simulators import the ``ocpp`` package, which ships no type information.

Handlers are bound per connection through the instance's route map instead of the package's
``@on`` decorators: the decorators register method names in a process-wide list and are untyped, and
a plain mapping from action to function is easier to read and to test. Handlers receive the payload
as snake_case keyword arguments and return a call_result dataclass, as with ``@on``. The package's
``@after`` hooks are never used: their exceptions vanish in unawaited tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import ocpp.charge_point as _cp  # type: ignore[import-untyped]
import ocpp.exceptions as _exc  # type: ignore[import-untyped]
import ocpp.v16 as _v16  # type: ignore[import-untyped]
import ocpp.v201 as _v201  # type: ignore[import-untyped]

V16ChargePoint: Any = _v16.ChargePoint
v16_call: Any = _v16.call
v16_call_result: Any = _v16.call_result
V201ChargePoint: Any = _v201.ChargePoint
v201_call: Any = _v201.call
v201_call_result: Any = _v201.call_result

OCPPError: type[Exception] = _exc.OCPPError
UnknownCallErrorCodeError: type[Exception] = _exc.UnknownCallErrorCodeError
NotImplementedOcppError: type[Exception] = _exc.NotImplementedError

camel_to_snake_case: Callable[[Any], Any] = _cp.camel_to_snake_case
snake_to_camel_case: Callable[[Any], Any] = _cp.snake_to_camel_case
serialize_as_dict: Callable[[Any], Any] = _cp.serialize_as_dict
remove_nones: Callable[[Any], Any] = _cp.remove_nones

Handler = Callable[..., Any]


def bind(
    cls: Any,
    charge_point_id: str,
    connection: Any,
    *,
    response_timeout_s: float,
    handlers: Mapping[str, Handler],
) -> Any:
    """An ``ocpp`` ChargePoint on ``connection`` that routes each action to ``handlers``."""
    peer = cls(charge_point_id, connection, response_timeout=response_timeout_s)
    peer.route_map = {
        action: {"_on_action": handler, "_skip_schema_validation": False}
        for action, handler in handlers.items()
    }
    return peer


def answer_later(result: Any, delay_s: float) -> Any:
    """``result``, or after ``delay_s`` (the ``ocpp`` package awaits a handler's awaitable)."""
    if delay_s <= 0:
        return result

    async def later() -> Any:
        await asyncio.sleep(delay_s)
        return result

    return later()


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "code", type(exc).__name__))


def error_description(exc: BaseException) -> str:
    return str(getattr(exc, "description", exc))


def to_camel_dict(result: Any) -> dict[str, Any]:
    """A call_result dataclass as the camelCase dict that went over the wire (Decimal as float:
    the package parses 1.6 schedule limits as Decimal to validate ``multipleOf``)."""
    converted: dict[str, Any] = _plain(snake_to_camel_case(remove_nones(serialize_as_dict(result))))
    return converted


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def snake_key(key: str) -> str:
    converted: dict[str, Any] = camel_to_snake_case({key: None})
    return next(iter(converted))
