"""Typed readers for configuration tables.

Every configuration error names the file, the key path and what was expected, so a field engineer
can fix the site file without reading code. Section loaders (``from_table`` functions next to each
section's dataclass) use these readers and never raise anything but :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


class ConfigError(ValueError):
    """A configuration value is missing or wrong.

    ``source`` is the file (or "<embedded demo>"), ``key`` the dotted path inside it.
    """

    def __init__(self, source: str, key: str, expected: str, got: object = _MISSING) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        found = "" if got is _MISSING else f", got {got!r}"
        super().__init__(f"{source}: {key}: expected {expected}{found}")


class Table:
    """A view of one TOML table that remembers where it came from and which keys were read."""

    def __init__(self, data: Mapping[str, Any], *, source: str, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(source, path or "<top>", "a table", data)
        self.data = data
        self.source = source
        self.path = path
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, expected: str, got: object = _MISSING) -> ConfigError:
        return ConfigError(self.source, self.key(name), expected, got)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, default: Any) -> Any:
        self._read.add(name)
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            near = difflib.get_close_matches(name, [str(k) for k in self.data], n=1, cutoff=0.7)
            found = f"; found {near[0]!r}: misspelt?" if near else ""
            raise self.error(name, f"a value (the key is required{found})")
        return default

    def string(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        choices: tuple[str, ...] = (),
        nonempty: str | None = None,
    ) -> Any:
        """``nonempty``: what a blank value is refused for (a required host or path)."""
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(name, "a string", value)
        if nonempty is not None and not value.strip():
            raise self.error(name, nonempty, value)
        if choices and value not in choices:
            raise self.error(name, "one of " + ", ".join(repr(c) for c in choices), value)
        return value

    def integer(
        self, name: str, default: Any = _MISSING, *, min: int | None = None, max: int | None = None
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, "an integer", value)
        _check_range(self, name, value, min, max)
        return value

    def number(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, "a number", value)
        if not math.isfinite(value):  # TOML's inf and nan pass every range check
            raise self.error(name, "a finite number", value)
        _check_range(self, name, value, min, max)
        return float(value)

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value

    def table(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        return Table(value, source=self.source, path=self.key(name))

    def tables(self, name: str) -> list[Table]:
        """An array of tables (``[[name]]``); missing means empty."""
        value = self._get(name, [])
        if not isinstance(value, list):
            raise self.error(name, "an array of tables ([[...]])", value)
        return [
            Table(item, source=self.source, path=f"{self.key(name)}[{i}]")
            for i, item in enumerate(value)
        ]

    def items(
        self, name: str, item: Callable[[Any], T], expected: str, default: Any = _MISSING
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"a list of {expected}", value)
        out = []
        for i, element in enumerate(value):
            try:
                out.append(item(element))
            except (TypeError, ValueError) as exc:
                raise ConfigError(self.source, f"{self.key(name)}[{i}]", expected, element) from exc
        return out

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        return self._get(name, default)

    def reject_unknown(self) -> None:
        """A misspelt key must not be silently ignored: call after reading every known key."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise ConfigError(self.source, self.key(unknown[0]), "no such key here (misspelt?)")


def check_readable(t: Table, name: str, path: str | Path) -> None:
    """A file the runtime opens later (a TLS certificate, key or CA, a rules bundle): missing or
    unreadable, it is refused here, naming the key, rather than failing at start (an exception
    there restart-loops under systemd; a configuration error exits 78, which stops it)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise t.error(
            name, f"a readable file ({exc.strerror or type(exc).__name__})", str(path)
        ) from None


def _check_range(t: Table, name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise t.error(name, f"a value >= {lo}", value)
    if hi is not None and value > hi:
        raise t.error(name, f"a value <= {hi}", value)
