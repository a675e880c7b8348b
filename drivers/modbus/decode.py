"""Pure register work: plan the fewest requests, decode words, detect undefined values.

No I/O here, so every meter's encoding is tested without a socket.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from drivers.modbus.reading import MeterReading
from drivers.modbus.registers import (
    FieldSpec,
    RegisterMap,
    TableName,
    Undefined,
    ValueType,
    WordOrder,
)

_STRUCT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
_SUNSPEC_SF_UNDEFINED = -32768


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One read request: ``count`` registers of ``table`` from ``start``."""

    table: TableName
    start: int
    count: int


class UndefinedField(Exception):
    """A required field holds the "not available" pattern (turned into MeterUndefinedValue)."""

    def __init__(self, field: str, address: int | None, words: Sequence[int]) -> None:
        self.field = field
        self.address = address
        self.words = tuple(words)
        raw = " ".join(f"{w:04X}" for w in words)
        detail = f"raw {raw}" if words else "no value: not mapped or not available"
        super().__init__(f"field {field!r} is undefined ({detail})")


class ImplausibleField(UndefinedField):
    """A required or optional field decodes to a value no meter measures (infinite, beyond any
    site's range, or a float so small it is a word-order mistake): a failed read, not a reading
    (one of -1e9 A would read as export and let every car rise)."""

    def __init__(self, field: str, address: int | None, words: Sequence[int], why: str) -> None:
        raw = " ".join(f"{w:04X}" for w in words)
        Exception.__init__(self, f"field {field!r} is implausible: {why} (raw {raw})")
        self.field = field
        self.address = address
        self.words = tuple(words)


# Beyond these a value is not a measurement (a site's transformer stays far below).
PLAUSIBLE_MAX = {"_a": 1e5, "_v": 1e5, "_w": 1e9, "_wh": 1e15}
SMALLEST_FLOAT = 1e-20  # a float32 read in the wrong word order lands far below this
SUNSPEC_SF_RANGE = range(-10, 11)  # sunssf: -10..10 (0x8000: not implemented)


def _check_plausible(name: str, value: float, raw: float, words: Sequence[int]) -> str | None:
    """Why ``value`` (``raw`` before scaling) is not a measurement, or None."""
    if not math.isfinite(value):
        return f"{value} is not a number"
    if isinstance(raw, float) and 0.0 < abs(raw) < SMALLEST_FLOAT:
        return f"{raw:g} (a float this small is read in the wrong word order)"
    for suffix, bound in PLAUSIBLE_MAX.items():
        if name.endswith(suffix) and abs(value) > bound:
            return f"{value:g} is beyond {bound:g}"
    return None


def plan_blocks(m: RegisterMap) -> tuple[Block, ...]:
    """Group the map's registers (fields and scale-factor registers) into as few requests as
    possible, within ``max_block`` registers each and spanning at most ``max_gap`` unused ones."""
    spans: set[tuple[TableName, int, int]] = set()
    for f in m.fields:
        spans.add((f.table, f.address, f.count))
        if f.scale_factor is not None:
            spans.add((f.table, f.scale_factor, 1))
    blocks: list[Block] = []
    table: TableName | None = None
    start = end = 0
    for t, address, count in sorted(spans):
        fits = (
            t == table
            and address - end <= m.max_gap
            and max(end, address + count) - start <= m.max_block
        )
        if fits:
            end = max(end, address + count)
            continue
        if table is not None:
            blocks.append(Block(table=table, start=start, count=end - start))
        table, start, end = t, address, address + count
    if table is not None:
        blocks.append(Block(table=table, start=start, count=end - start))
    return tuple(blocks)


# Fields a reading can do without: load management uses the phase currents only (the total
# power is shown in the status; to_reading sums the phase powers when it is missing). The phase
# powers are needed when they give the current its sign (current_sign = "from_power"). Any
# other name (an EMS limit, its heartbeat) is needed: its map has nothing to spare.
NON_ESSENTIAL = frozenset(
    {
        "voltage_l1_v",
        "voltage_l2_v",
        "voltage_l3_v",
        "power_w",
        "energy_import_wh",
        "energy_export_wh",
    }
)
PHASE_POWERS = frozenset({"power_l1_w", "power_l2_w", "power_l3_w"})


def is_essential(f: FieldSpec, m: RegisterMap) -> bool:
    """Whether a read without ``f`` cannot be a reading: a refused register of it fails the read,
    while a non-essential field the meter refuses is dropped (see :class:`ReadPlan`)."""
    if f.name in NON_ESSENTIAL:
        return False
    if f.name in PHASE_POWERS:
        return m.current_sign == "from_power"
    return True


def _registers(f: FieldSpec) -> list[int]:
    """The registers a field is read from: its value's, and its scale factor's."""
    regs = list(range(f.address, f.address + f.count))
    if f.scale_factor is not None:
        regs.append(f.scale_factor)
    return regs


def _in(block: Block, f: FieldSpec) -> list[int]:
    """The registers of ``f`` that ``block`` reads."""
    if f.table != block.table:
        return []
    return [a for a in _registers(f) if block.start <= a < block.start + block.count]


def _holds(block: Block, f: FieldSpec) -> bool:
    """Whether ``block`` reads a register of ``f`` (its value or its scale factor)."""
    return bool(_in(block, f))


def _around(blocks: Sequence[Block], holes: Sequence[tuple[TableName, int, int]]) -> list[Block]:
    """``blocks`` cut where they span a hole (table, first register, end): the parts beside it."""
    out = list(blocks)
    for table, start, end in holes:
        cut: list[Block] = []
        for b in out:
            b_end = b.start + b.count
            if b.table != table or end <= b.start or b_end <= start:
                cut.append(b)
                continue
            if b.start < start:
                cut.append(Block(table=b.table, start=b.start, count=start - b.start))
            if end < b_end:
                cut.append(Block(table=b.table, start=end, count=b_end - end))
        out = cut
    return out


def _trimmed(b: Block, held: Sequence[FieldSpec]) -> Block:
    """``b`` from the first to the last register of ``held`` in it (a block cut beside a hole
    may begin or end in registers no field maps)."""
    used = [a for f in held for a in _in(b, f)]
    first, last = min(used), max(used)
    return Block(table=b.table, start=first, count=last - first + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DroppedField:
    """A field the meter refused to be read: None from then on."""

    name: str
    table: TableName
    address: int
    count: int
    exception_code: int

    @property
    def registers(self) -> str:
        """E.g. ``input 0x005C..0x005D``."""
        return f"{self.table} 0x{self.address:04X}..0x{self.address + self.count - 1:04X}"


class ReadPlan:
    """The requests for one map, and what the meter's refusals taught.

    At first every field is in one group planned by :func:`plan_blocks` (a meter that answers
    everything costs the same requests as ever). When the meter refuses a block (exception 2,
    illegal data address, or 3) :meth:`refused` plans again:

    - a block with essential fields (:func:`is_essential`) and others: those others go *apart*,
      one group planned on its own, so the essential fields are read without them;
    - a block with only non-essential fields, several: each of them goes *alone*, one request
      per field, to find the one refused;
    - a block with one non-essential field: the field is dropped (None from then on), and the
      rest is grouped again as at first (the cheapest plan, now without it);
    - a block with only essential fields: nothing to learn (None): the map is wrong for this
      meter, the read fails.

    Each refusal moves a field one step (grouped -> apart -> alone) or drops one, so a meter
    that keeps refusing runs out of steps: every field is dropped or the read fails.
    """

    def __init__(self, m: RegisterMap) -> None:
        self.map = m
        self.dropped: tuple[DroppedField, ...] = ()
        self._apart: frozenset[str] = frozenset()
        self._alone: frozenset[str] = frozenset()
        self.read_map = m
        self.blocks: tuple[Block, ...] = ()
        self._fields: tuple[tuple[FieldSpec, ...], ...] = ()
        self._plan()

    def _plan(self) -> None:
        gone = {d.name for d in self.dropped}
        kept = tuple(f for f in self.map.fields if f.name not in gone)
        self.read_map = self.map if not gone else replace(self.map, fields=kept)
        grouped = tuple(f for f in kept if f.name not in self._apart | self._alone)
        # The fields set apart or alone are read without spanning unmapped registers (max_gap
        # 0: a meter that lacks one refuses a request that spans it), and no block spans a
        # dropped field's registers.
        groups = [(grouped, self.map.max_gap), (tuple(f for f in kept if f.name in self._apart), 0)]
        groups += [((f,), 0) for f in kept if f.name in self._alone]
        holes = [(d.table, d.address, d.address + d.count) for d in self.dropped]
        # ... and the grouped fields' blocks do not span the values of those read apart: a
        # meter that refused one of them would refuse the essential fields' block again.
        elsewhere = [
            (f.table, f.address, f.address + f.count)
            for f in kept
            if f.name in self._apart | self._alone
        ]
        blocks: list[Block] = []
        fields: list[tuple[FieldSpec, ...]] = []
        for group, gap in groups:
            if not group:
                continue
            planned = plan_blocks(replace(self.map, fields=group, max_gap=gap))
            for b in _around(planned, holes + (elsewhere if group is grouped else [])):
                held = tuple(f for f in group if _holds(b, f))
                if held:
                    blocks.append(_trimmed(b, held))
                    fields.append(held)
        self.blocks = tuple(blocks)
        self._fields = tuple(fields)

    def relearned(self, answered: frozenset[str]) -> None:
        """Forget what was learned but the drops the meter still stands by: the dropped fields
        in ``answered`` (it read them again) come back, and nothing is set apart any more."""
        self.dropped = tuple(d for d in self.dropped if d.name not in answered)
        self._apart = self._alone = frozenset()
        self._plan()

    def fields_of(self, index: int) -> tuple[FieldSpec, ...]:
        """The fields with a register in block ``index``."""
        return self._fields[index]

    def refused(self, index: int, exception_code: int) -> tuple[DroppedField, ...] | None:
        """The meter refused block ``index``: plan again. None if the block holds only essential
        fields (nothing to leave out); else the fields dropped now (often none: read again)."""
        fields = self._fields[index]
        essential = [f for f in fields if is_essential(f, self.map)]
        spare = frozenset(f.name for f in fields if not is_essential(f, self.map))
        if not spare:
            return None
        if essential:
            self._apart |= spare
        elif len(spare) > 1:
            self._apart -= spare
            self._alone |= spare
        else:
            (f,) = fields
            dropped = DroppedField(
                name=f.name,
                table=f.table,
                address=f.address,
                count=f.count,
                exception_code=exception_code,
            )
            self.dropped += (dropped,)
            self._apart = self._alone = frozenset()
            self._plan()
            return (dropped,)
        self._plan()
        return ()


def decode_words(words: Sequence[int], type_: ValueType, word_order: WordOrder) -> int | float:
    """Registers to a number. Bytes inside a register are always big-endian (Modbus); only the
    order of the registers varies ("little" = low word first, as Carlo Gavazzi meters send)."""
    ordered = list(words) if word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    value: int | float = struct.unpack(">" + _STRUCT[type_], raw)[0]
    return value


def is_undefined(value: int | float, type_: ValueType, policy: Undefined) -> bool:
    if isinstance(value, float):
        return math.isnan(value)  # (infinity: ImplausibleField)
    if policy == "none":
        return False
    bits = int(type_[-2:])
    signed = type_.startswith("int")
    top: int = 1 << (bits - 1)
    if policy == "all_ones":
        return value == (top - 1 if signed else 2 * top - 1)
    return value == (-top if signed else 2 * top - 1)


class Registers:
    """The words of every block read, addressable by table and address."""

    def __init__(self, blocks: Sequence[Block], words: Sequence[Sequence[int]]) -> None:
        self._data: dict[tuple[str, int], int] = {}
        for block, block_words in zip(blocks, words, strict=True):
            for i, w in enumerate(block_words):
                self._data[(block.table, block.start + i)] = w

    def get(self, table: str, address: int, count: int) -> list[int]:
        return [self._data[(table, address + i)] for i in range(count)]


def decode_fields(m: RegisterMap, regs: Registers) -> dict[str, float | None]:
    """Every field scaled to its unit; an undefined optional field is None."""
    out: dict[str, float | None] = {}
    for f in m.fields:
        words = regs.get(f.table, f.address, f.count)
        value = decode_words(words, f.type, f.word_order)
        undefined = is_undefined(value, f.type, m.undefined)
        exponent = 0
        if f.scale_factor is not None:
            exponent = int(decode_words(regs.get(f.table, f.scale_factor, 1), "int16", "big"))
            undefined = undefined or exponent == _SUNSPEC_SF_UNDEFINED
            if not undefined and exponent not in SUNSPEC_SF_RANGE:
                sf_words = regs.get(f.table, f.scale_factor, 1)
                why = f"scale factor {exponent} at {f.scale_factor} is outside -10..10"
                raise ImplausibleField(f.name, f.scale_factor, sf_words, why)
        if undefined:
            if f.optional:
                out[f.name] = None
                continue
            raise UndefinedField(f.name, f.address, words)
        scaled = float(value) * f.scale * (10.0**exponent)
        why_not = _check_plausible(f.name, scaled, value, words)
        if why_not is not None:
            if f.optional:  # (as an undefined optional field)
                out[f.name] = None
                continue
            raise ImplausibleField(f.name, f.address, words, why_not)
        out[f.name] = scaled
    return out


def decode_planned(plan: ReadPlan, regs: Registers) -> dict[str, float | None]:
    """:func:`decode_fields` for the fields the plan still reads; a dropped field is None."""
    out = decode_fields(plan.read_map, regs)
    for d in plan.dropped:
        out[d.name] = None
    return out


def to_reading(
    values: Mapping[str, float | None],
    m: RegisterMap,
    *,
    meter: str,
    read_s: float,
    read_utc: datetime,
    duration_s: float,
    requests: int,
) -> MeterReading:
    currents: list[float] = []
    for p in (1, 2, 3):
        if p > m.phases:
            currents.append(0.0)
            continue
        name = f"current_l{p}_a"
        current = values.get(name)
        if current is None:
            spec = m.field(name)
            raise UndefinedField(name, None if spec is None else spec.address, ())
        power = values.get(f"power_l{p}_w")
        if m.current_sign == "from_power" and power is not None:
            current = -abs(current) if power < 0 else abs(current)
        currents.append(current)
    phase_power = (values.get("power_l1_w"), values.get("power_l2_w"), values.get("power_l3_w"))
    total = values.get("power_w")
    if total is None and all(p is not None for p in phase_power[: m.phases]):
        total = sum(p for p in phase_power[: m.phases] if p is not None)
    return MeterReading(
        meter=meter,
        current_a=(currents[0], currents[1], currents[2]),
        voltage_v=(
            values.get("voltage_l1_v"),
            values.get("voltage_l2_v"),
            values.get("voltage_l3_v"),
        ),
        power_w=phase_power,
        total_power_w=total,
        energy_import_wh=values.get("energy_import_wh"),
        energy_export_wh=values.get("energy_export_wh"),
        read_s=read_s,
        read_utc=read_utc,
        duration_s=duration_s,
        requests=requests,
    )
