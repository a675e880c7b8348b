"""Register maps: how a meter lays out its values, as data in TOML (``config/meters/*.toml``).

A map file::

    description = "Eastron SDM630"
    table = "input"              # default table: "input" (function 04) or "holding" (03)
    word_order = "big"           # default: "big" (high word first) or "little" (low word first)
    undefined = "none"           # "none", "all_ones" (ABB: all-FF unsigned, 0x7F..FF signed)
                                 # or "sunspec" (0x8000 / 0xFFFF / 0x80000000 / NaN)
    current_sign = "from_power"  # "from_power": current takes the sign of the phase power
                                 # (most meters report unsigned current); or "as_read"
    max_block = 100              # most registers per request (Modbus allows 125)
    max_gap = 40                 # unread registers a request may span to save a round trip;
                                 # 0 for meters that reject reads over unmapped addresses
    phases = 3                   # 1 for single-phase meters: L2/L3 read as 0 A
    sunspec_models = [203]       # SunSpec only: addresses are offsets from the model ID register

    [fields]
    current_l1_a = { address = 0x06, type = "float32" }
    energy_import_wh = { address = 0x48, type = "float32", scale = 1000 }
    power_w = { address = 18, type = "int16", scale_factor = 22 }   # value x 10^register(22)

Field keys: ``address`` (0-based protocol address), ``type`` (int16, uint16, int32, uint32,
int64, uint64, float32, float64), optional ``table``, ``word_order``, ``scale`` (multiplier to
the unit in the field's name), ``scale_factor`` (address of an int16 power-of-ten exponent),
``optional`` (an undefined value reads as None instead of failing the read).

Field names the meter reading understands: ``current_l1_a``..``current_l3_a`` (required),
``voltage_l1_v``.., ``power_l1_w``.., ``power_w`` (total), ``energy_import_wh``,
``energy_export_wh``. Any other name is read too and returned by ``read_values`` (an EMS limit
register and its heartbeat, for instance).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import config
from config.fields import ConfigError, Table
from drivers.modbus.errors import UnknownMeterModel

TableName = Literal["input", "holding"]
WordOrder = Literal["big", "little"]
ValueType = Literal["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
Undefined = Literal["none", "all_ones", "sunspec"]
CurrentSign = Literal["as_read", "from_power"]

TABLES: tuple[TableName, ...] = ("input", "holding")
WORD_ORDERS: tuple[WordOrder, ...] = ("big", "little")
TYPES: tuple[ValueType, ...] = (
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
)
REGISTERS = {"16": 1, "32": 2, "64": 4}
MAPS_DIR = Path(config.__file__).parent / "meters"
SUNSPEC = "sunspec"  # the registry name that scans for any SunSpec meter model


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    name: str
    address: int
    table: TableName
    type: ValueType
    word_order: WordOrder
    scale: float = 1.0
    scale_factor: int | None = None
    optional: bool = False

    @property
    def count(self) -> int:
        return REGISTERS[self.type[-2:]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterMap:
    name: str
    description: str
    fields: tuple[FieldSpec, ...]
    undefined: Undefined = "none"
    current_sign: CurrentSign = "from_power"
    max_block: int = 100
    max_gap: int = 40
    phases: int = 3
    sunspec_models: tuple[int, ...] = ()
    source: str = ""

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def shifted(self, base: int) -> RegisterMap:
        """A SunSpec map with offsets turned into absolute addresses for a model found at base."""
        return replace(
            self,
            fields=tuple(
                replace(
                    f,
                    address=f.address + base,
                    scale_factor=None if f.scale_factor is None else f.scale_factor + base,
                )
                for f in self.fields
            ),
            sunspec_models=(),
        )


def from_table(t: Table, *, name: str) -> RegisterMap:
    """Parse one map; every error names the file and the key."""
    description = t.string("description", "")
    table = t.string("table", "holding", choices=TABLES)
    word_order = t.string("word_order", "big", choices=WORD_ORDERS)
    undefined = t.string("undefined", "none", choices=("none", "all_ones", "sunspec"))
    current_sign = t.string("current_sign", "from_power", choices=("as_read", "from_power"))
    max_block = t.integer("max_block", 100, min=1, max=125)
    max_gap = t.integer("max_gap", 40, min=0, max=124)
    phases = t.integer("phases", 3, min=1, max=3)
    models = t.items("sunspec_models", _model_id, "SunSpec model ids (integers)", [])
    fields_table = t.table("fields")
    fields: list[FieldSpec] = []
    for key in sorted(fields_table.data):
        ft = fields_table.table(key)
        fields.append(
            FieldSpec(
                name=key,
                address=ft.integer("address", min=0, max=65535),
                table=ft.string("table", table, choices=TABLES),
                type=ft.string("type", choices=TYPES),
                word_order=ft.string("word_order", word_order, choices=WORD_ORDERS),
                scale=ft.number("scale", 1.0),
                scale_factor=ft.integer("scale_factor", None, min=0, max=65535),
                optional=ft.boolean("optional", False),
            )
        )
        ft.reject_unknown()
    fields_table.reject_unknown()
    t.reject_unknown()
    if not fields:
        raise t.error("fields", "at least one field")
    required = [f"current_l{p}_a" for p in range(1, phases + 1)]
    names = {f.name for f in fields}
    currents = {"current_l1_a", "current_l2_a", "current_l3_a"}
    if names & currents and not set(required) <= names:
        raise t.error("fields", f"all of {', '.join(required)} when any current is mapped")
    return RegisterMap(
        name=name,
        description=description,
        fields=tuple(fields),
        undefined=undefined,
        current_sign=current_sign,
        max_block=max_block,
        max_gap=max_gap,
        phases=phases,
        sunspec_models=tuple(models),
        source=t.source,
    )


def _model_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65534:
        raise ValueError(value)
    return value


def load_map_file(path: Path | str, *, name: str | None = None) -> RegisterMap:
    """A user-written map file (same format as the built-in ones)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(p), "<file>", "a readable register map file", str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "<file>", "valid TOML", str(exc)) from exc
    return from_table(Table(data, source=str(p)), name=name or p.stem)


def known_models() -> list[str]:
    """Names of the built-in maps, plus ``sunspec`` (scan for any SunSpec meter model)."""
    names = sorted(p.stem for p in MAPS_DIR.glob("*.toml"))
    return sorted([*names, SUNSPEC])


def load_model(name: str) -> tuple[RegisterMap, ...]:
    """The map(s) for a model name; ``sunspec`` yields every SunSpec map, the scan picks one."""
    if name == SUNSPEC:
        maps = tuple(load_map_file(p) for p in sorted(MAPS_DIR.glob("sunspec_*.toml")))
        return tuple(m for m in maps if m.sunspec_models)
    path = MAPS_DIR / f"{name}.toml"
    if "/" in name or "\\" in name or not path.is_file():
        raise UnknownMeterModel(name, known_models())
    return (load_map_file(path),)
