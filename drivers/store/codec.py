"""Encoding of persisted values: messages, actor state and records, with versions and migrations.

A persisted value is ``{"t": type name, "v": version, "d": fields}`` as orjson bytes for registered
dataclasses, or plain JSON for plain values. A type registered with ``@persisted(version=N,
migrate=f)`` decodes older versions through ``f(old_version, fields) -> fields``. Decoding rebuilds
nested dataclasses, tuples and enums from the field annotations, so frozen messages round-trip
exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
Migration = Callable[[int, dict[str, Any]], dict[str, Any]]


class CodecError(ValueError):
    """A persisted value cannot be decoded (unknown type, newer version, bad fields)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    cls: type[Any]
    version: int
    migrate: Migration | None


_by_name: dict[str, _Entry] = {}
_by_cls: dict[type[Any], str] = {}
_hints: dict[type[Any], dict[str, Any]] = {}


def persisted(
    *, version: int = 1, migrate: Migration | None = None, name: str | None = None
) -> Callable[[type[T]], type[T]]:
    """Class decorator: this dataclass may be written to LMDB (durable message, state, record)."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__qualname__} must be a dataclass to be persisted")
        key = name or cls.__qualname__
        existing = _by_name.get(key)
        if existing is not None and existing.cls is not cls:
            raise TypeError(f"persisted type name {key!r} already used by {existing.cls!r}")
        _by_name[key] = _Entry(cls, version, migrate)
        _by_cls[cls] = key
        return cls

    return register


def is_persisted(cls: type[Any]) -> bool:
    return cls in _by_cls


def _default(obj: Any) -> Any:
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    raise TypeError(f"cannot persist a value of type {type(obj).__name__}")


def encode(value: Any) -> bytes:
    name = _by_cls.get(type(value))
    if name is not None:
        entry = _by_name[name]
        return orjson.dumps({"t": name, "v": entry.version, "d": value}, default=_default)
    if dataclasses.is_dataclass(value):
        raise CodecError(f"{type(value).__qualname__} is not registered with @persisted")
    return orjson.dumps({"t": None, "d": value}, default=_default)


def decode(data: bytes | memoryview) -> Any:
    try:
        doc = orjson.loads(bytes(data) if isinstance(data, memoryview) else data)
        name = doc["t"]
        fields = doc["d"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CodecError(f"not a persisted value: {exc}") from exc
    if name is None:
        return fields
    entry = _by_name.get(name)
    if entry is None:
        raise CodecError(f"unknown persisted type {name!r} (known: {sorted(_by_name)})")
    version = int(doc.get("v", 1))
    if version > entry.version:
        raise CodecError(f"{name} version {version} is newer than this code's {entry.version}")
    if version < entry.version:
        if entry.migrate is None:
            raise CodecError(f"{name} version {version} has no migration to {entry.version}")
        fields = entry.migrate(version, fields)
    return _build(entry.cls, fields)


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    hints = _hints.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _hints[cls] = hints
    return hints


def _build(cls: type[Any], fields: dict[str, Any]) -> Any:
    if not isinstance(fields, dict):
        raise CodecError(f"{cls.__qualname__}: expected an object, got {type(fields).__name__}")
    hints = _type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in fields:
            kwargs[f.name] = _convert(hints.get(f.name, Any), fields[f.name])
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise CodecError(f"{_by_cls.get(cls, cls.__qualname__)}: {exc}") from exc


def _convert(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value)
        for arg in args:
            if isinstance(arg, type) and isinstance(value, arg):
                return value
        return value
    if origin is tuple:
        targs = typing.get_args(tp)
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(_convert(targs[0], v) for v in value)
        if targs:
            return tuple(_convert(a, v) for a, v in zip(targs, value, strict=False))
        return tuple(value)
    if origin is frozenset:
        (arg,) = typing.get_args(tp) or (Any,)
        return frozenset(_convert(arg, v) for v in value)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is dict:
        _, varg = typing.get_args(tp) or (Any, Any)
        return {k: _convert(varg, v) for k, v in value.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _build(tp, value)
        if issubclass(tp, enum.Enum):
            return tp(value)
        if tp is float and isinstance(value, int):
            return float(value)
    return value
