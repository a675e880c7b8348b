"""A real pymodbus TCP server (SimDevice datastore) playing a meter on 127.0.0.1, port 0.

Values are encoded here independently of the driver: raw = value / scale, packed with ``struct``
in the register type, split into words, low word first when the map says "little".
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import Any

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.registers import FieldSpec, RegisterMap

_PACK = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
FC = {"holding": 3, "input": 4}
TABLE_OF_FC = {3: "holding", 4: "input"}


def encode(value: float, type_: str, word_order: str) -> list[int]:
    raw: Any = value if type_.startswith("float") else round(value)
    data = struct.pack(">" + _PACK[type_], raw)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "big" else words[::-1]


def encode_field(spec: FieldSpec, value: float, exponent: int = 0) -> list[int]:
    return encode(value / spec.scale / (10.0**exponent), spec.type, spec.word_order)


def registers_for(
    m: RegisterMap,
    truth: Mapping[str, float],
    *,
    base: int = 0,
    exponents: Mapping[int, int] | None = None,
) -> dict[str, dict[int, int]]:
    """Registers that make a meter with this map report ``truth``. ``exponents`` gives the
    value of each scale-factor register (by offset), for SunSpec integer models."""
    out: dict[str, dict[int, int]] = {"holding": {}, "input": {}}
    for spec in m.fields:
        if spec.name not in truth:
            continue
        exponent = 0
        if spec.scale_factor is not None:
            exponent = (exponents or {})[spec.scale_factor]
            out[spec.table][base + spec.scale_factor] = exponent & 0xFFFF
        for i, w in enumerate(encode_field(spec, truth[spec.name], exponent)):
            out[spec.table][base + spec.address + i] = w
    return out


def _blocks(registers: Mapping[int, int], spare: int) -> list[SimData]:
    """Contiguous SimData blocks (gaps under 200 registers filled with zeros, as real meters
    answer over them); a table with no registers gets one dummy register far away."""
    if not registers:
        return [SimData(address=spare, values=[0], datatype=DataType.REGISTERS)]
    addresses = sorted(registers)
    blocks: list[SimData] = []
    start = prev = addresses[0]
    for a in [*addresses[1:], None]:
        if a is not None and a - prev < 200:
            prev = a
            continue
        values = [registers.get(x, 0) for x in range(start, prev + 1)]
        blocks.append(SimData(address=start, values=values, datatype=DataType.REGISTERS))
        if a is not None:
            start = prev = a
    return blocks


class MeterServer:
    def __init__(
        self,
        registers: Mapping[str, Mapping[int, int]],
        *,
        unit_id: int = 1,
        framer: FramerType = FramerType.SOCKET,
    ) -> None:
        self.registers = registers
        self.unit_id = unit_id
        self.framer = framer
        self.requests = 0
        self.refused = 0
        self.connections = 0
        # (table, address) -> the exception a read that includes that register gets, as a meter
        # that lacks it answers (the registers around it still read)
        self.refuse: dict[tuple[str, int], ExcCodes] = {}
        self._answering = asyncio.Event()
        self._answering.set()
        self._server: ModbusTcpServer | None = None
        self.port = 0

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        await self._answering.wait()
        table = TABLE_OF_FC.get(function_code)
        for a in range(address, address + count):
            code = self.refuse.get((table or "", a))
            if code is not None and set_values is None:
                self.refused += 1
                return code
        return None

    def _connected(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    def stop_answering(self) -> None:
        self._answering.clear()

    def answer_again(self) -> None:
        self._answering.set()

    async def __aenter__(self) -> MeterServer:
        dummy_bits = [SimData(address=0, values=False, datatype=DataType.BITS)]
        device = SimDevice(
            id=self.unit_id,
            simdata=(
                list(dummy_bits),
                list(dummy_bits),
                _blocks(self.registers.get("holding", {}), 60000),
                _blocks(self.registers.get("input", {}), 60000),
            ),
            action=self._action,
        )
        self._server = ModbusTcpServer(
            device,
            address=("127.0.0.1", 0),
            framer=self.framer,
            trace_connect=self._connected,
        )
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def set(self, table: str, address: int, words: list[int]) -> None:
        assert self._server is not None
        await self._server.async_setValues(self.unit_id, FC[table], address, words)

    async def __aexit__(self, *exc: object) -> None:
        self._answering.set()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
