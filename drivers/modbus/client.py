"""An async Modbus/TCP meter reader: the only place that talks to pymodbus.

One :class:`ModbusMeter` per meter (or per EMS register set). It connects lazily, reads the map's
registers in as few requests as :func:`plan_blocks` allows, and raises only the errors of
:mod:`drivers.modbus.errors`. It never retries: a failed read is reported at once and the actor
decides (staleness, backoff). After a timeout or a dropped connection the socket is discarded
and the next read reconnects, so a late answer to an old request can never be taken for the
answer to a new one (RTU framing over TCP has no transaction id to tell them apart).

A meter that refuses a block (exception 2 or 3) holding fields a reading can do without (energy,
voltages, the total power: :func:`~drivers.modbus.decode.is_essential`) is read again without
them, in the same read while ``timeout_s`` since its start allows, else at the next read; a
field the meter refuses on its own is dropped (None from then on, :attr:`ModbusMeter.dropped`)
and logged once. A refused block of essential fields fails the read as any bad response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.modbus.decode import (
    DroppedField,
    ReadPlan,
    Registers,
    UndefinedField,
    decode_planned,
    is_essential,
    to_reading,
)
from drivers.modbus.errors import (
    MeterBadResponse,
    MeterConnectionError,
    MeterError,
    MeterTimeout,
    MeterUndefinedValue,
)
from drivers.modbus.reading import MeterReading
from drivers.modbus.registers import RegisterMap, TableName
from drivers.modbus.sunspec import SunSpecNotFound, check_length, scan

log = logging.getLogger(__name__)

Framer = Literal["tcp", "rtu"]
FRAMERS: tuple[Framer, ...] = ("tcp", "rtu")
SUNSPEC_PHASES = {201: 1, 202: 2, 203: 3, 204: 3, 211: 1, 212: 2, 213: 3, 214: 3}
_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}
# Exception codes that refuse the registers asked for, every time: 2 (illegal data address), and
# 3 (illegal data value), which some meters and gateways answer for a range they lack (the
# protocol gives it for a register count out of 1..125; ours never is). The others (device
# failure, busy, gateway) are the device or its line failing now: a failed read, nothing more.
REFUSED = frozenset({2, 3})
# What a plan learned from refusals is asked again this long after it began learning: each
# dropped field alone (back if the meter answers), the fields set apart grouped again. A gateway
# that answered exception 2 for a whole block once (a transient fault on its RS-485 side) does
# not cost the fields, or the extra requests, for the reader's life; a meter that lacks a
# register costs one refused request per such field and period, no failed read.
RELEARN_AFTER_S = 600.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def last_offset(m: RegisterMap) -> int:
    """The highest register a map reads (for SunSpec: an offset from the model's ID register)."""
    ends = [f.address + f.count - 1 for f in m.fields]
    ends += [f.scale_factor for f in m.fields if f.scale_factor is not None]
    return max(ends)


class ModbusMeter:
    """Reads one device over Modbus/TCP (``framer="tcp"``) or RTU framing over TCP
    (``framer="rtu"``, for RS-485 gateways in transparent mode)."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        register_maps: Sequence[RegisterMap],
        port: int = 502,
        unit_id: int = 1,
        framer: Framer = "tcp",
        timeout_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        utc_now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not register_maps:
            raise ValueError(f"meter {name!r}: no register map")
        if len(register_maps) > 1 and not all(m.sunspec_models for m in register_maps):
            raise ValueError(f"meter {name!r}: several maps are only allowed for a SunSpec scan")
        if framer not in FRAMERS:
            raise ValueError(f"meter {name!r}: framer must be one of {FRAMERS}, got {framer!r}")
        if not 0 < timeout_s <= 30:
            raise ValueError(f"meter {name!r}: timeout_s must be in (0, 30], got {timeout_s!r}")
        self.name = name
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.framer = framer
        self.timeout_s = timeout_s
        self._maps = tuple(register_maps)
        self._monotonic = monotonic
        self._utc_now = utc_now
        self._client: AsyncModbusTcpClient | None = None
        self._map: RegisterMap | None = None
        self._plan: ReadPlan | None = None
        self._learning_since: float | None = None  # the plan's first lesson (RELEARN_AFTER_S)
        self._warned: set[str] = set()  # fields whose drop was logged as a warning
        self._requests = 0
        self._answered_as: int | None = None  # the unit id of the last data received

    @property
    def register_map(self) -> RegisterMap | None:
        """The map in use: for SunSpec, the one for the model found (None before the scan)."""
        return self._map

    @property
    def dropped(self) -> tuple[DroppedField, ...]:
        """Fields the meter refused to be read, in the order found: None in every reading."""
        return () if self._plan is None else self._plan.dropped

    async def read_values(self) -> dict[str, float | None]:
        """Every field of the map, scaled to its unit (a dropped field: None)."""
        plan = await self._resolved()
        started = self._monotonic()
        since = self._learning_since
        if since is not None and started - since >= RELEARN_AFTER_S:
            await self._relearn(plan)
            started = self._monotonic()
        self._requests = 0
        while True:
            words: list[list[int]] = []
            try:
                for b in plan.blocks:
                    self._requests += 1
                    words.append(await self._read(b.table, b.start, b.count))
            except MeterBadResponse as exc:
                self._refused(plan, len(words), exc, started)
                continue  # planned again: read the new plan's blocks
            break
        try:
            return decode_planned(plan, Registers(plan.blocks, words))
        except UndefinedField as exc:
            raise self._error(MeterUndefinedValue, str(exc), exc.address) from None

    async def read(self) -> MeterReading:
        """A complete meter reading (the map must map the phase currents)."""
        started = self._monotonic()
        values = await self.read_values()
        done = self._monotonic()
        m = self._map
        assert m is not None  # read_values resolved it
        try:
            return to_reading(
                values,
                m,
                meter=self.name,
                read_s=done,
                read_utc=self._utc_now(),
                duration_s=done - started,
                requests=self._requests,
            )
        except UndefinedField as exc:
            raise self._error(MeterUndefinedValue, str(exc), exc.address) from None

    async def close(self) -> None:
        self._drop()

    # --- internals ------------------------------------------------------------------------

    async def _relearn(self, plan: ReadPlan) -> None:
        """RELEARN_AFTER_S after the plan's first lesson: each dropped field asked for alone
        (one request each; a refusal costs nothing more and no failed read), those answered
        back, and the fields set apart grouped again. Still refusing some: again a period later."""
        answered: set[str] = set()
        for d in plan.dropped:
            try:
                await self._read(d.table, d.address, d.count)
            except MeterBadResponse as exc:
                if exc.exception_code not in REFUSED:
                    raise
                continue
            answered.add(d.name)
        plan.relearned(frozenset(answered))
        self._learning_since = self._monotonic() if plan.dropped else None
        log.log(
            logging.INFO if answered else logging.DEBUG,
            "meter %r: the registers it refused asked for again: %s read again, %s still refused",
            self.name,
            ", ".join(sorted(answered)) or "none",
            ", ".join(d.name for d in plan.dropped) or "none",
        )

    def _refused(self, plan: ReadPlan, index: int, exc: MeterBadResponse, started: float) -> None:
        """Block ``index`` got ``exc``: plan again without the fields that may go, or raise."""
        code = exc.exception_code
        if code not in REFUSED:
            raise exc
        block = plan.blocks[index]
        fields = plan.fields_of(index)
        dropped = plan.refused(index, code)
        if dropped is None:
            raise exc  # essential fields only: the map is wrong for this meter
        if self._learning_since is None:
            self._learning_since = self._monotonic()
        name = _EXCEPTION_NAMES[code]
        for d in dropped:
            level = logging.DEBUG if d.name in self._warned else logging.WARNING
            self._warned.add(d.name)
            log.log(
                level,
                "meter %r at %s:%d refuses %s (exception %d, %s): field %s dropped, "
                "it reads as no value from now on; the phase currents are read without it",
                self.name,
                self.host,
                self.port,
                d.registers,
                code,
                name,
                d.name,
            )
        if not dropped:
            log.debug(
                "meter %r refuses %s registers 0x%04X..0x%04X (exception %d) holding %s: "
                "planned again",
                self.name,
                block.table,
                block.start,
                block.start + block.count - 1,
                code,
                ", ".join(f.name for f in fields),
            )
        if self._monotonic() - started >= self.timeout_s:
            spare = ", ".join(f.name for f in fields if not is_essential(f, plan.map))
            raise self._error(
                MeterBadResponse,
                f"exception response {code} ({name}) reading {block.count} {block.table} "
                f"registers with {spare}; planned again, no time left in this read: the next "
                "read goes on",
                block.start,
            ) from None

    async def _resolved(self) -> ReadPlan:
        if self._map is None:
            first = self._maps[0]
            if first.sunspec_models:
                wanted = {mid for m in self._maps for mid in m.sunspec_models}
                try:
                    found = await scan(self._read_holding, wanted)
                except SunSpecNotFound as exc:
                    raise self._error(MeterBadResponse, str(exc), None) from None
                chosen = next(m for m in self._maps if found.model_id in m.sunspec_models)
                try:
                    check_length(found, last_offset(chosen))
                except SunSpecNotFound as exc:
                    raise self._error(MeterBadResponse, str(exc), found.address) from None
                self._map = replace(
                    chosen.shifted(found.address),
                    name=f"{chosen.name} (model {found.model_id} at {found.address})",
                    phases=SUNSPEC_PHASES.get(found.model_id, chosen.phases),
                )
            else:
                self._map = first
            self._plan = ReadPlan(self._map)
        assert self._plan is not None
        return self._plan

    async def _read_holding(self, address: int, count: int) -> list[int]:
        return await self._read("holding", address, count)

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,  # no background reconnect loop: the actor owns retrying
            name=f"meter {self.name}",
            trace_packet=self._traced,
        )
        started = self._monotonic()
        try:
            ok = await client.connect()
        except OSError as exc:  # e.g. a host name that does not resolve
            client.close()
            raise self._error(MeterConnectionError, f"cannot connect: {exc}", None) from None
        if not ok:
            client.close()
            if self._monotonic() - started >= self.timeout_s * 0.9:
                raise self._error(
                    MeterTimeout, f"no TCP connection within {self.timeout_s:g} s", None
                )
            raise self._error(MeterConnectionError, "connection refused or unreachable", None)
        self._client = client
        return client

    def _traced(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: the unit id of what came in (an answer pymodbus skips as
        another device's would otherwise read as no answer). Modbus/TCP only: the MBAP header
        places it; RTU bytes on a noisy line may begin anywhere."""
        if not sending and self.framer == "tcp" and len(data) > 6:
            self._answered_as = data[6]
        return data

    def _forget_answer(self) -> None:
        self._answered_as = None

    async def _read(self, table: TableName, address: int, count: int) -> list[int]:
        client = await self._connected()
        self._forget_answer()
        try:
            # pymodbus has its own timeout; this guard also bounds what it does not cover.
            async with asyncio.timeout(self.timeout_s + 0.25):
                if table == "input":
                    response = await client.read_input_registers(
                        address, count=count, device_id=self.unit_id
                    )
                else:
                    response = await client.read_holding_registers(
                        address, count=count, device_id=self.unit_id
                    )
        except (TimeoutError, ModbusIOException):
            self._drop()
            other = self._answered_as
            if other is not None and other != self.unit_id and self.unit_id != 0:
                # pymodbus skipped the answer as another device's
                raise self._error(
                    MeterBadResponse,
                    f"answers as unit {other}, not unit {self.unit_id}: check unit_id "
                    "(the meter's Modbus address, or the gateway's)",
                    address,
                ) from None
            raise self._error(
                MeterTimeout, f"no answer within {self.timeout_s:g} s ({table})", address
            ) from None
        except (ConnectionException, OSError) as exc:
            self._drop()
            raise self._error(MeterConnectionError, f"connection lost: {exc}", address) from None
        except ModbusException as exc:
            self._drop()
            raise self._error(MeterBadResponse, f"bad response: {exc}", address) from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            name = _EXCEPTION_NAMES.get(code, "exception")
            raise MeterBadResponse(
                f"exception response {code} ({name}) reading {count} {table} registers",
                meter=self.name,
                host=self.host,
                port=self.port,
                register=address,
                exception_code=code,
            )
        registers = list(response.registers)
        if len(registers) != count:
            raise self._error(
                MeterBadResponse, f"asked for {count} registers, got {len(registers)}", address
            )
        return registers

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _error(self, kind: type[MeterError], message: str, register: int | None) -> MeterError:
        return kind(message, meter=self.name, host=self.host, port=self.port, register=register)
