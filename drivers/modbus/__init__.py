"""Modbus/TCP meters and registers. The only package that imports pymodbus.

Public API: :class:`ModbusMeter` (``read()``, ``read_values()``, ``close()``),
:class:`MeterReading`, the errors of :mod:`drivers.modbus.errors`, and the register-map
registry (:func:`known_models`, :func:`load_model`, :func:`load_map_file`).
"""

from __future__ import annotations

from drivers.modbus.client import FRAMERS, Framer, ModbusMeter
from drivers.modbus.errors import (
    MeterBadResponse,
    MeterConnectionError,
    MeterError,
    MeterTimeout,
    MeterUndefinedValue,
    UnknownMeterModel,
)
from drivers.modbus.reading import MeterReading
from drivers.modbus.registers import RegisterMap, known_models, load_map_file, load_model

__all__ = [
    "FRAMERS",
    "Framer",
    "MeterBadResponse",
    "MeterConnectionError",
    "MeterError",
    "MeterReading",
    "MeterTimeout",
    "MeterUndefinedValue",
    "ModbusMeter",
    "RegisterMap",
    "UnknownMeterModel",
    "known_models",
    "load_map_file",
    "load_model",
]
