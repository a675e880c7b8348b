"""A simulated grid meter: a real pymodbus TCP server whose registers follow the simulated site.

On every read the meter computes the site now: the base load per phase plus what every source (the
simulated charge points, or anything with ``phase_currents_a()``) draws per phase, minus optional
generation, and encodes it with the model's register map (``sim/register_maps.py``). Energy
registers integrate power between reads and never decrease. ``stop_answering()`` keeps the TCP
connection open but sends nothing back, as a meter behind a hung RS-485 gateway does, until
``resume_answering()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.ports import free_tcp_port
from sim.base_load import BaseLoad
from sim.clock import Clock, SystemClock
from sim.register_maps import EASTRON_SDM630, MeterModel, encode

NOMINAL_FREQUENCY_HZ = 50.0


class PhaseCurrentSource(Protocol):
    def phase_currents_a(self) -> tuple[float, float, float]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterReading:
    at_utc: datetime
    voltages_v: tuple[float, float, float]
    # Unsigned, as most meters report them; the sign is in the phase power.
    currents_a: tuple[float, float, float]
    powers_w: tuple[float, float, float]
    total_power_w: float
    frequency_hz: float
    import_energy_wh: float
    export_energy_wh: float

    def quantities(self) -> dict[str, float]:
        q = {
            "total_power_w": self.total_power_w,
            "frequency_hz": self.frequency_hz,
            "import_energy_wh": self.import_energy_wh,
            "export_energy_wh": self.export_energy_wh,
        }
        for i, phase in enumerate(("l1", "l2", "l3")):
            q[f"voltage_{phase}_v"] = self.voltages_v[i]
            q[f"current_{phase}_a"] = self.currents_a[i]
            q[f"power_{phase}_w"] = self.powers_w[i]
        return q


class SimMeter:
    def __init__(
        self,
        *,
        model: MeterModel = EASTRON_SDM630,
        base_load: BaseLoad | None = None,
        sources: Iterable[PhaseCurrentSource] = (),
        generation_a: tuple[float, float, float] = (0.0, 0.0, 0.0),
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int | None = None,
    ) -> None:
        self.model = model
        self.base_load = base_load if base_load is not None else BaseLoad()
        self.sources: list[PhaseCurrentSource] = list(sources)
        self.generation_a = generation_a
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.host = host
        self._port = port
        self.unit_id = model.unit_id if unit_id is None else unit_id
        self.answering = True
        self.reads = 0
        self.last_reading: MeterReading | None = None
        self._import_wh = 0.0
        self._export_wh = 0.0
        self._last_s: float | None = None
        self._last_power_w = 0.0
        self._server: ModbusTcpServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            return
        # Not bind(0) the first time: a port from the ephemeral range could be taken by an
        # outgoing connection while stopped, and start() must reopen the same one.
        self._port = self._port or free_tcp_port(self.host)
        server = ModbusTcpServer(
            self._device(),
            address=(self.host, self._port),
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if not sockets:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"simulated meter could not listen on {self.host}:{self._port}")
        self._port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            # Let the transport finish closing before the loop may end.
            await asyncio.sleep(0)

    async def __aenter__(self) -> SimMeter:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the simulated meter has not been started yet")
        return self._port

    def stop_answering(self) -> None:
        self.answering = False

    def resume_answering(self) -> None:
        self.answering = True

    def add_source(self, source: PhaseCurrentSource) -> None:
        self.sources.append(source)

    # -- the site now ------------------------------------------------------------------------------

    def reading(self) -> MeterReading:
        """What the meter measures now; advances the energy registers."""
        now_s = self.clock.monotonic()
        now_utc = self.clock.utc()
        if self._last_s is not None and now_s > self._last_s:
            energy_wh = self._last_power_w * (now_s - self._last_s) / 3600.0
            if energy_wh >= 0:
                self._import_wh += energy_wh
            else:
                self._export_wh -= energy_wh
        self._last_s = now_s if self._last_s is None else max(self._last_s, now_s)
        base = self.base_load.currents_a(now_utc)
        net = list(base)
        for source in self.sources:
            for i, amps in enumerate(source.phase_currents_a()):
                net[i] += amps
        for i, amps in enumerate(self.generation_a):
            net[i] -= amps
        voltage = self.base_load.voltage_v
        powers = (net[0] * voltage, net[1] * voltage, net[2] * voltage)
        total = sum(powers)
        self._last_power_w = total
        return MeterReading(
            at_utc=now_utc,
            voltages_v=(voltage, voltage, voltage),
            currents_a=(abs(net[0]), abs(net[1]), abs(net[2])),
            powers_w=powers,
            total_power_w=total,
            frequency_hz=NOMINAL_FREQUENCY_HZ,
            import_energy_wh=self._import_wh,
            export_energy_wh=self._export_wh,
        )

    # -- pymodbus glue -----------------------------------------------------------------------------

    def _device(self) -> SimDevice:
        m = self.model
        span = SimData(
            address=m.first_address,
            count=m.last_address - m.first_address + 1,
            values=0,
            datatype=DataType.REGISTERS,
        )
        unused = SimData(address=0, datatype=DataType.INVALID)
        bits = SimData(address=0, values=[False] * 16, datatype=DataType.BITS)
        holding = [span] if m.table == "holding" else [unused]
        inputs = [span] if m.table == "input" else [unused]
        return SimDevice(
            id=self.unit_id, simdata=([bits], [bits], holding, inputs), action=self._on_access
        )

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        if function_code != self.model.function_code:
            return ExcCodes.ILLEGAL_ADDRESS
        reading = self.reading()
        values = reading.quantities()
        for field in self.model.fields:
            offset = field.address - start_address
            registers[offset : offset + field.words] = encode(field, values[field.quantity])
        if self.answering:
            self.reads += 1
            self.last_reading = reading
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # An empty write sends nothing: the client sees a meter that stopped answering.
        if sending and not self.answering:
            return b""
        return data
