"""Meter register maps as data: a new meter model is a table entry, not code.

Addresses are protocol addresses (0-based). ``scale`` multiplies the quantity into the register's
unit (the SDM630 reports energy in kWh, the site computes Wh). Sources: ENERGY-NOTES.md (Eastron
SDM630 and Janitza UMG 604 maps, from volkszaehler/mbmd); check a datasheet before adding one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum


class Encoding(StrEnum):
    FLOAT32_BE = "float32_be"  # IEEE 754, high word first
    FLOAT32_LE_WORDS = "float32_le_words"  # IEEE 754, low word first
    INT32_BE = "int32_be"
    INT32_LE_WORDS = "int32_le_words"
    UINT32_BE = "uint32_be"
    INT16 = "int16"
    UINT16 = "uint16"


_WORDS = {
    Encoding.FLOAT32_BE: 2,
    Encoding.FLOAT32_LE_WORDS: 2,
    Encoding.INT32_BE: 2,
    Encoding.INT32_LE_WORDS: 2,
    Encoding.UINT32_BE: 2,
    Encoding.INT16: 1,
    Encoding.UINT16: 1,
}

QUANTITIES = (
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_l1_w",
    "power_l2_w",
    "power_l3_w",
    "total_power_w",
    "frequency_hz",
    "import_energy_wh",
    "export_energy_wh",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterField:
    quantity: str
    address: int
    encoding: Encoding = Encoding.FLOAT32_BE
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(
                f"register 0x{self.address:04X}: unknown quantity {self.quantity!r}; "
                f"known: {', '.join(QUANTITIES)}"
            )

    @property
    def words(self) -> int:
        return _WORDS[self.encoding]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterModel:
    name: str
    # "input" (function code 4) or "holding" (function code 3)
    table: str
    unit_id: int
    # Inclusive range of readable registers; the ones no field covers read as 0, as on the device,
    # so a driver can read one contiguous block.
    first_address: int
    last_address: int
    fields: tuple[RegisterField, ...]

    def __post_init__(self) -> None:
        if self.table not in ("input", "holding"):
            raise ValueError(f"meter model {self.name!r}: table must be 'input' or 'holding'")
        for f in self.fields:
            if not self.first_address <= f.address <= self.last_address - f.words + 1:
                raise ValueError(
                    f"meter model {self.name!r}: {f.quantity} at 0x{f.address:04X} lies outside "
                    f"0x{self.first_address:04X}..0x{self.last_address:04X}"
                )

    @property
    def function_code(self) -> int:
        return 4 if self.table == "input" else 3


def _float_fields(
    addresses: dict[str, int], scale: dict[str, float] | None = None
) -> tuple[RegisterField, ...]:
    scale = scale or {}
    return tuple(
        RegisterField(quantity=q, address=a, scale=scale.get(q, 1.0)) for q, a in addresses.items()
    )


EASTRON_SDM630 = MeterModel(
    name="eastron_sdm630",
    table="input",
    unit_id=1,
    first_address=0x0000,
    last_address=0x004F,
    fields=_float_fields(
        {
            "voltage_l1_v": 0x00,
            "voltage_l2_v": 0x02,
            "voltage_l3_v": 0x04,
            "current_l1_a": 0x06,
            "current_l2_a": 0x08,
            "current_l3_a": 0x0A,
            "power_l1_w": 0x0C,
            "power_l2_w": 0x0E,
            "power_l3_w": 0x10,
            "total_power_w": 0x34,
            "frequency_hz": 0x46,
            "import_energy_wh": 0x48,
            "export_energy_wh": 0x4A,
        },
        {"import_energy_wh": 0.001, "export_energy_wh": 0.001},
    ),
)

JANITZA_UMG604 = MeterModel(
    name="janitza_umg604",
    table="holding",
    unit_id=1,
    first_address=1317,
    last_address=1370,
    fields=_float_fields(
        {
            "voltage_l1_v": 1317,
            "voltage_l2_v": 1319,
            "voltage_l3_v": 1321,
            "current_l1_a": 1325,
            "current_l2_a": 1327,
            "current_l3_a": 1329,
            "total_power_w": 1369,
        }
    ),
)

METER_MODELS: dict[str, MeterModel] = {m.name: m for m in (EASTRON_SDM630, JANITZA_UMG604)}


def meter_model(name: str) -> MeterModel:
    try:
        return METER_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown meter model {name!r}; known: {sorted(METER_MODELS)}") from None


def encode(field: RegisterField, value: float) -> list[int]:
    """The registers holding ``value`` (in the quantity's unit) as the device would send them."""
    scaled = value * field.scale
    enc = field.encoding
    if enc in (Encoding.FLOAT32_BE, Encoding.FLOAT32_LE_WORDS):
        raw = struct.pack(">f", scaled)
    elif enc in (Encoding.INT32_BE, Encoding.INT32_LE_WORDS):
        raw = struct.pack(">i", round(scaled))
    elif enc == Encoding.UINT32_BE:
        raw = struct.pack(">I", max(0, round(scaled)))
    elif enc == Encoding.INT16:
        raw = struct.pack(">h", round(scaled))
    else:
        raw = struct.pack(">H", max(0, round(scaled)))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if enc in (Encoding.FLOAT32_LE_WORDS, Encoding.INT32_LE_WORDS):
        words.reverse()
    return words
