"""Errors of the Modbus driver. pymodbus's exceptions never leave this package.

::

    MeterError                  base; names the meter, host:port and, where known, the register
    ├── MeterTimeout            no answer within timeout_s (meter off, gateway stuck, wrong unit id
    │                           on an RS-485 line)
    ├── MeterConnectionError    TCP connect refused, unreachable, or the connection dropped
    ├── MeterBadResponse        an exception response (e.g. illegal address), a short answer, no
    │                           SunSpec marker or model (a refused register of a field a reading
    │                           can do without is dropped instead: ModbusMeter.dropped)
    └── MeterUndefinedValue     the register holds the meter's "not available" pattern (all-FF,
                                SunSpec 0x8000, NaN) for a field the map does not mark optional
    UnknownMeterModel           (a ValueError) a model name not in the registry; lists known names

The meter actor owns retry and staleness: every error here is one failed read, nothing more.
"""

from __future__ import annotations


class MeterError(Exception):
    def __init__(
        self, message: str, *, meter: str, host: str, port: int, register: int | None = None
    ) -> None:
        self.meter = meter
        self.host = host
        self.port = port
        self.register = register
        where = f"meter {meter!r} at {host}:{port}"
        if register is not None:
            where += f" register {register} (0x{register:04X})"
        super().__init__(f"{where}: {message}")


class MeterTimeout(MeterError):
    pass


class MeterConnectionError(MeterError):
    pass


class MeterBadResponse(MeterError):
    """``exception_code``: the Modbus exception the meter answered with (None: no exception
    response, e.g. a short answer)."""

    def __init__(
        self,
        message: str,
        *,
        meter: str,
        host: str,
        port: int,
        register: int | None = None,
        exception_code: int | None = None,
    ) -> None:
        super().__init__(message, meter=meter, host=host, port=port, register=register)
        self.exception_code = exception_code


class MeterUndefinedValue(MeterError):
    pass


class UnknownMeterModel(ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown meter model {name!r}; known models: {', '.join(known)}")
