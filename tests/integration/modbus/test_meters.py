"""Every built-in meter model against a real pymodbus server on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import pytest
from pymodbus import FramerType
from pymodbus.constants import ExcCodes

from actors.meter import PYMODBUS_LOGGER, quiet_pymodbus
from drivers.modbus import (
    MeterBadResponse,
    MeterConnectionError,
    MeterTimeout,
    MeterUndefinedValue,
    ModbusMeter,
    load_map_file,
    load_model,
)
from drivers.modbus.registers import RegisterMap
from drivers.ports import free_tcp_port
from tests.helpers import timeout_s, wait_for
from tests.integration.modbus.meter_server import MeterServer, encode, registers_for

TRUTH = {
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 231.2,
    "voltage_l3_v": 229.8,
    "current_l1_a": 12.5,
    "current_l2_a": 8.25,
    "current_l3_a": 3.0,  # unsigned on the wire; L3 exports (negative power)
    "power_l1_w": 2875.0,
    "power_l2_w": 1900.0,
    "power_l3_w": -690.0,
    "power_w": 4085.0,
    "energy_import_wh": 1234500.0,
    "energy_export_wh": 89000.0,
}
EXPECTED_CURRENT = (12.5, 8.25, -3.0)


def meter_for(server: MeterServer, maps: tuple[RegisterMap, ...], **kw: object) -> ModbusMeter:
    return ModbusMeter(
        name="grid",
        host="127.0.0.1",
        port=server.port,
        register_maps=maps,
        timeout_s=kw.pop("timeout_s", 0.5),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def check(reading_values: Mapping[str, float | None], rel: float) -> None:
    for name, value in TRUTH.items():
        assert reading_values[name] == pytest.approx(value, rel=rel), name


@pytest.mark.parametrize(
    ("model", "rel", "requests"),
    [
        pytest.param("sdm630", 1e-6, 1, id="eastron-sdm630-float32"),
        pytest.param("em24", 1e-9, 1, id="carlo-gavazzi-em24-int32-low-word-first"),
        pytest.param("em340", 1e-9, 1, id="carlo-gavazzi-em340"),
        pytest.param("umg604", 1e-6, 1, id="janitza-umg604-float32"),
        pytest.param("abb_b23", 1e-9, 2, id="abb-b23-scaled-uint"),
    ],
)
async def test_meter_model_round_trip(model: str, rel: float, requests: int) -> None:
    maps = load_model(model)
    truth = {k: v for k, v in TRUTH.items() if maps[0].field(k) is not None}
    async with MeterServer(registers_for(maps[0], truth)) as server:
        meter = meter_for(server, maps)
        try:
            reading = await meter.read()
        finally:
            await meter.close()
    assert reading.current_a == pytest.approx(EXPECTED_CURRENT, rel=rel)
    assert reading.voltage_v == pytest.approx((230.1, 231.2, 229.8), rel=rel)
    assert reading.power_w == pytest.approx((2875.0, 1900.0, -690.0), rel=rel)
    assert reading.total_power_w == pytest.approx(4085.0, rel=rel)
    if "energy_import_wh" in truth:
        assert reading.energy_import_wh == pytest.approx(1234500.0, rel=rel)
        assert reading.energy_export_wh == pytest.approx(89000.0, rel=rel)
    assert reading.requests == requests == server.requests
    assert reading.meter == "grid"
    assert reading.duration_s >= 0


SUNS = [0x5375, 0x6E53]


def sunspec_registers(model_id: int, length: int, truth: Mapping[str, float]) -> dict[int, int]:
    """SunS at 40000, common model 1 (66 registers), then the meter model, then the end."""
    (int_map,) = load_model("sunspec_int")
    (float_map,) = load_model("sunspec_float")
    regs: dict[int, int] = {40000: SUNS[0], 40001: SUNS[1], 40002: 1, 40003: 66}
    for a in range(40004, 40070):
        regs[a] = 0
    base = 40070
    regs[base], regs[base + 1] = model_id, length
    for a in range(base + 2, base + 2 + length):
        regs[a] = 0
    m = int_map if model_id < 210 else float_map
    exponents = {6: -2, 15: -1, 22: 0, 54: 0}
    regs.update(registers_for(m, truth, base=base, exponents=exponents)["holding"])
    regs[base + 2 + length] = 0xFFFF
    regs[base + 3 + length] = 0
    return regs


@pytest.mark.parametrize(
    ("model_id", "length"),
    [
        pytest.param(203, 105, id="model-203-int-with-scale-factors"),
        pytest.param(213, 124, id="model-213-float"),
    ],
)
async def test_sunspec_scan_and_read(model_id: int, length: int) -> None:
    regs = sunspec_registers(model_id, length, TRUTH)
    async with MeterServer({"holding": regs}) as server:
        meter = meter_for(server, load_model("sunspec"))
        try:
            reading = await meter.read()
            second = await meter.read()
        finally:
            await meter.close()
    assert meter.register_map is not None
    assert f"model {model_id} at 40070" in meter.register_map.name
    assert reading.current_a == pytest.approx(EXPECTED_CURRENT, rel=1e-6)
    assert reading.total_power_w == pytest.approx(4085.0, rel=1e-6)
    assert reading.energy_import_wh == pytest.approx(1234500.0, rel=1e-6)
    assert second.requests == 1  # the scan happens once


async def test_sunspec_single_phase_model_201() -> None:
    truth = {"current_l1_a": 9.5, "power_w": 2185.0, "power_l1_w": 2185.0}
    regs = sunspec_registers(201, 105, truth)
    for offset in (4, 5, 20, 21):  # phase B, C: not implemented
        regs[40070 + offset] = 0x8000
    async with MeterServer({"holding": regs}) as server:
        meter = meter_for(server, load_model("sunspec"))
        try:
            reading = await meter.read()
        finally:
            await meter.close()
    assert reading.current_a == pytest.approx((9.5, 0.0, 0.0))


async def test_sunspec_marker_missing_is_a_bad_response() -> None:
    async with MeterServer({"holding": {40000: 1, 40001: 2}}) as server:
        meter = meter_for(server, load_model("sunspec"))
        with pytest.raises(MeterBadResponse, match="no SunS marker"):
            await meter.read()
        await meter.close()


async def test_sunspec_model_shorter_than_the_map_is_refused() -> None:
    """A model 203 whose length register says 20 (the standard says 105): the map's scale
    factors and energies lie past its end, in the next model or the end marker (W_SF read the
    end marker's 0xFFFF as 10^-1): the read fails naming the model, not a reading made of them."""
    regs = sunspec_registers(203, 105, TRUTH)
    regs[40071] = 20
    regs[40070 + 22], regs[40070 + 23] = 0xFFFF, 0  # the end marker right after its 20 registers
    async with MeterServer({"holding": regs}) as server:
        meter = meter_for(server, load_model("sunspec"))
        try:
            with pytest.raises(MeterBadResponse, match=r"model 203 at 40070 has 20 registers"):
                await meter.read()
        finally:
            await meter.close()


async def test_sunspec_chain_running_past_the_last_register_is_a_bad_response() -> None:
    """A length register holding garbage (0xFFF0) sends the walk past register 65535: pymodbus
    raised ValueError, out of the driver (the meter actor crashed at every read, restarted with
    backoff, with no failed read reported)."""
    regs = {40000: SUNS[0], 40001: SUNS[1], 40002: 1, 40003: 0xFFF0}
    async with MeterServer({"holding": regs}) as server:
        meter = meter_for(server, load_model("sunspec"))
        try:
            with pytest.raises(MeterBadResponse, match=r"past register 65535 after models \[1\]"):
                await meter.read()
        finally:
            await meter.close()


async def test_sunspec_chain_without_its_end_marker_names_the_models_found() -> None:
    """The chain stops without the 0xFFFF end model (the device refuses the next header): the
    error says what the scan found, as a chain without a meter model does."""
    regs = {40000: SUNS[0], 40001: SUNS[1], 40002: 1, 40003: 4, 40004: 0, 40007: 0}
    async with MeterServer({"holding": regs}) as server:
        server.refuse[("holding", 40008)] = ExcCodes.ILLEGAL_ADDRESS
        meter = meter_for(server, load_model("sunspec"))
        try:
            with pytest.raises(MeterBadResponse, match=r"no model at 40008.*models \[1\]"):
                await meter.read()
        finally:
            await meter.close()


async def answering_as_unit(unit_id: int, open_: set[object]) -> tuple[asyncio.Server, int]:
    """A Modbus/TCP peer that answers every read with zeros under ``unit_id`` whatever unit
    was asked for (a gateway or meter set to another address than the site file says).
    ``open_`` holds its connections until each is closed."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                request = await reader.readexactly(12)
                tid, function, count = request[0:2], request[7], int.from_bytes(request[10:12])
                body = bytes([function, 2 * count]) + bytes(2 * count)
                header = tid + b"\x00\x00" + (len(body) + 1).to_bytes(2, "big")
                writer.write(header + bytes([unit_id]) + body)
                await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        open_.discard(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_answer_from_another_unit_id_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The meter answers, as unit 2, a read for unit 1: pymodbus skips the frame and the read
    times out. It was reported as "no answer within 0.3 s" (a network fault to chase) while
    pymodbus logged an ERROR for every read, once a second for as long as it lasted."""
    quiet_pymodbus()
    connections: set[object] = set()
    server, port = await answering_as_unit(2, connections)
    (sdm,) = load_model("sdm630")
    meter = ModbusMeter(
        name="grid", host="127.0.0.1", port=port, register_maps=(sdm,), timeout_s=0.3
    )
    try:
        with caplog.at_level(logging.DEBUG, logger=PYMODBUS_LOGGER):
            for _ in range(3):
                with pytest.raises(MeterBadResponse, match="answers as unit 2, not unit 1"):
                    await meter.read()
    finally:
        await meter.close()
        server.close()
        await server.wait_closed()
        await wait_for(lambda: not connections, what="the peer's connections closed")
    noise = [r.getMessage() for r in caplog.records if r.name == PYMODBUS_LOGGER]
    assert not [m for m in noise if "got id=2" in m], noise


async def test_abb_all_ff_is_undefined_and_optional_export_is_none() -> None:
    (abb,) = load_model("abb_b23")
    regs = registers_for(abb, TRUTH)
    for i in range(4):
        regs["holding"][0x5004 + i] = 0xFFFF  # export energy: not available on this meter
    async with MeterServer(regs) as server:
        meter = meter_for(server, (abb,))
        try:
            reading = await meter.read()
            assert reading.energy_export_wh is None
            await server.set("holding", 0x5B0E, [0xFFFF, 0xFFFF])  # current L2 undefined
            with pytest.raises(MeterUndefinedValue) as info:
                await meter.read()
        finally:
            await meter.close()
    assert info.value.register == 0x5B0E
    assert "0x5B0E" in str(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)


async def test_values_follow_the_server() -> None:
    (sdm,) = load_model("sdm630")
    async with MeterServer(registers_for(sdm, TRUTH)) as server:
        meter = meter_for(server, (sdm,))
        try:
            first = await meter.read()
            await server.set("input", 0x06, encode(31.5, "float32", "big"))
            second = await meter.read()
        finally:
            await meter.close()
    assert first.current_a[0] == pytest.approx(12.5)
    assert second.current_a[0] == pytest.approx(31.5)
    assert second.read_s >= first.read_s


async def test_meter_that_stops_answering_times_out_within_a_second() -> None:
    (sdm,) = load_model("sdm630")
    async with MeterServer(registers_for(sdm, TRUTH)) as server:
        meter = meter_for(server, (sdm,), timeout_s=0.5)
        try:
            await meter.read()
            server.stop_answering()
            before = server.requests
            started = time.monotonic()
            with pytest.raises(MeterTimeout) as info:
                await meter.read()
            elapsed = time.monotonic() - started
            assert elapsed < 1.0 * timeout_s(1)
            assert server.requests == before + 1  # no retries: the actor decides
            assert "no answer within 0.5 s" in str(info.value)
            server.answer_again()
            recovered = await meter.read()  # a fresh connection, no stale answer mixed in
            assert recovered.current_a[0] == pytest.approx(12.5)
        finally:
            await meter.close()


async def test_connection_refused_is_classified() -> None:
    port = free_tcp_port()  # nothing listens there
    (sdm,) = load_model("sdm630")
    meter = ModbusMeter(
        name="gone", host="127.0.0.1", port=port, register_maps=(sdm,), timeout_s=0.5
    )
    started = time.monotonic()
    with pytest.raises(MeterConnectionError) as info:
        await meter.read()
    assert time.monotonic() - started < 0.5 * timeout_s(1)
    assert f"127.0.0.1:{port}" in str(info.value)
    await meter.close()


@pytest.mark.parametrize(
    ("unit_id", "match"),
    [
        pytest.param(9, "exception response 4", id="unknown-unit-id"),
    ],
)
async def test_exception_response_is_a_bad_response(unit_id: int, match: str) -> None:
    (sdm,) = load_model("sdm630")
    async with MeterServer(registers_for(sdm, TRUTH)) as server:
        meter = meter_for(server, (sdm,), unit_id=unit_id)
        with pytest.raises(MeterBadResponse, match=match):
            await meter.read()
        await meter.close()


async def test_illegal_address_names_the_register() -> None:
    """A refused phase current fails the read (the map is wrong for this meter), naming the
    block of the essential fields, read apart from the rest after the first refusal."""
    (sdm,) = load_model("sdm630")
    async with MeterServer(registers_for(sdm, TRUTH)) as server:
        server.refuse[("input", 0x08)] = ExcCodes.ILLEGAL_ADDRESS  # current L2
        meter = meter_for(server, (sdm,))
        try:
            with pytest.raises(MeterBadResponse, match="illegal data address") as info:
                await meter.read()
            with pytest.raises(MeterBadResponse, match="illegal data address"):
                await meter.read()  # and every read after it
        finally:
            await meter.close()
    assert info.value.register == 0x06  # currents and phase powers: 0x06..0x11
    assert meter.dropped == ()


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(ExcCodes.ILLEGAL_ADDRESS, id="exception-2-illegal-data-address"),
        pytest.param(ExcCodes.ILLEGAL_VALUE, id="exception-3-illegal-data-value"),
    ],
)
async def test_em24_that_refuses_export_energy_is_read_without_it(
    code: ExcCodes, caplog: pytest.LogCaptureFixture
) -> None:
    """evcc-io/evcc#31143: an EM24 without kWh(-) TOT (0x5C) refuses every read that includes
    it; the one request 0x00..0x5D of the map failed every poll. Now the export energy is
    dropped (logged once) and the rest is read, in one request again (0x00..0x3F)."""
    (em24,) = load_model("em24")
    async with MeterServer(registers_for(em24, TRUTH)) as server:
        server.refuse[("input", 0x5C)] = code
        meter = meter_for(server, (em24,))
        try:
            with caplog.at_level(logging.WARNING, logger="drivers.modbus.client"):
                first = await meter.read()
                requests = server.requests
                later = [await meter.read() for _ in range(3)]
        finally:
            await meter.close()
    for reading in (first, *later):
        assert reading.current_a == pytest.approx(EXPECTED_CURRENT)
        assert reading.power_w == pytest.approx((2875.0, 1900.0, -690.0))
        assert reading.total_power_w == pytest.approx(4085.0)
        assert reading.voltage_v == pytest.approx((230.1, 231.2, 229.8))
        assert reading.energy_import_wh == pytest.approx(1234500.0)
        assert reading.energy_export_wh is None
    assert [r.requests for r in later] == [1, 1, 1]
    assert server.requests == requests + 3, "one request per read once the field is dropped"
    assert server.refused == 2  # 0x00..0x5D, then 0x5C (set apart, read without the gaps)
    assert [(d.name, d.table, d.address, d.exception_code) for d in meter.dropped] == [
        ("energy_export_wh", "input", 0x5C, int(code))
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "meter 'grid'" in warnings[0]
    assert "input 0x005C..0x005D" in warnings[0]
    assert "energy_export_wh" in warnings[0]


async def test_meter_without_energy_registers_reads_without_them() -> None:
    """A meter whose register space ends before the energy counters (SDM630 without 0x48..0x4B):
    both energies are dropped, the rest is read."""
    (sdm,) = load_model("sdm630")
    regs = registers_for(sdm, {k: v for k, v in TRUTH.items() if not k.startswith("energy")})
    async with MeterServer(regs) as server:
        meter = meter_for(server, (sdm,))
        try:
            reading = await meter.read()
            again = await meter.read()
            values = await meter.read_values()
        finally:
            await meter.close()
    assert reading.current_a == pytest.approx(EXPECTED_CURRENT)
    assert reading.energy_import_wh is None
    assert reading.energy_export_wh is None
    assert sorted(d.name for d in meter.dropped) == ["energy_export_wh", "energy_import_wh"]
    assert again.requests == 1  # 0x00..0x35
    assert values["energy_import_wh"] is None
    assert values["current_l1_a"] == pytest.approx(12.5)


async def test_device_failure_on_a_non_essential_register_fails_the_read() -> None:
    """Exception 4 (device failure) is the meter failing now, not a register it lacks: the read
    fails as before, nothing is dropped."""
    (em24,) = load_model("em24")
    async with MeterServer(registers_for(em24, TRUTH)) as server:
        server.refuse[("input", 0x5C)] = ExcCodes.DEVICE_FAILURE
        meter = meter_for(server, (em24,))
        try:
            with pytest.raises(MeterBadResponse, match="exception response 4"):
                await meter.read()
        finally:
            await meter.close()
    assert meter.dropped == ()
    assert server.requests == 1


async def test_refusals_beyond_the_time_budget_are_read_again_at_the_next_read() -> None:
    """With no time left in a read (a clock that moves 1 s per look, timeout 0.5 s) each refusal
    fails that read; the next read goes on from what it learnt, and reads without the field."""
    (em24,) = load_model("em24")
    clock = iter(range(1_000_000))
    async with MeterServer(registers_for(em24, TRUTH)) as server:
        server.refuse[("input", 0x5C)] = ExcCodes.ILLEGAL_ADDRESS
        meter = meter_for(server, (em24,), monotonic=lambda: float(next(clock)))
        try:
            failed = 0
            for _ in range(2):
                with pytest.raises(MeterBadResponse, match="no time left in this read"):
                    await meter.read()
                failed += 1
            reading = await meter.read()
        finally:
            await meter.close()
    assert failed == 2
    assert reading.current_a == pytest.approx(EXPECTED_CURRENT)
    assert reading.energy_export_wh is None
    assert [d.name for d in meter.dropped] == ["energy_export_wh"]


async def test_rtu_framing_over_tcp() -> None:
    (em24,) = load_model("em24")
    async with MeterServer(registers_for(em24, TRUTH), unit_id=7, framer=FramerType.RTU) as server:
        meter = meter_for(server, (em24,), unit_id=7, framer="rtu")
        try:
            reading = await meter.read()
        finally:
            await meter.close()
    assert reading.current_a == pytest.approx(EXPECTED_CURRENT)


async def test_user_written_map(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "ems.toml"
    path.write_text(
        'table = "holding"\n[fields]\n'
        'limit = { address = 100, type = "uint16", scale = 0.1 }\n'
        'heartbeat = { address = 101, type = "uint16" }\n'
        'extra = { address = 200, type = "int32", word_order = "little", table = "input", '
        "scale = 0.01 }\n"
    )
    m = load_map_file(path)
    regs = {"holding": {100: 320, 101: 17}, "input": {200: 0xFC18, 201: 0xFFFF}}
    async with MeterServer(regs) as server:
        meter = meter_for(server, (m,))
        try:
            values = await meter.read_values()
        finally:
            await meter.close()
    assert values == {
        "limit": pytest.approx(32.0),
        "heartbeat": 17.0,
        "extra": pytest.approx(-10.0),
    }


async def test_connection_is_reused_until_an_error() -> None:
    (sdm,) = load_model("sdm630")
    async with MeterServer(registers_for(sdm, TRUTH)) as server:
        meter = meter_for(server, (sdm,), timeout_s=0.3)
        try:
            for _ in range(4):
                await meter.read()
            assert server.connections == 1
            server.stop_answering()
            with pytest.raises(MeterTimeout):
                await meter.read()
            server.answer_again()
            await meter.read()
            assert server.connections == 2
        finally:
            await meter.close()


async def test_fields_a_gateway_refused_once_come_back_after_the_relearn_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A gateway answered exception 2 for the EM24's energy registers once (a transient RS-485
    fault): the fields are dropped then, asked for again RELEARN_AFTER_S later, and read again;
    a meter that still refuses costs its few refused requests once more, logged at debug, not
    a new warning (second review of 4a75c04: a flaky gateway lost every optional field for good
    within minutes, and the requests per read grew)."""
    from drivers.modbus.client import RELEARN_AFTER_S

    (em24,) = load_model("em24")
    now = [1000.0]
    async with MeterServer(registers_for(em24, TRUTH)) as server:
        server.refuse[("input", 0x5C)] = ExcCodes.ILLEGAL_ADDRESS
        meter = meter_for(server, (em24,), monotonic=lambda: now[0])
        try:
            with caplog.at_level(logging.DEBUG, logger="drivers.modbus.client"):
                assert (await meter.read()).energy_export_wh is None
                assert [d.name for d in meter.dropped] == ["energy_export_wh"]
                now[0] += RELEARN_AFTER_S - 1
                assert (await meter.read()).energy_export_wh is None  # not yet
                now[0] += 1
                refused = server.refused
                again = await meter.read()  # still refused: asked for alone, no failed read
                assert again.energy_export_wh is None
                assert server.refused == refused + 1, "one refused request for the dropped field"
                assert again.requests == 1
                del server.refuse[("input", 0x5C)]  # the gateway's fault is gone
                now[0] += RELEARN_AFTER_S
                back = await meter.read()
                steady = [await meter.read() for _ in range(2)]
        finally:
            await meter.close()
    assert back.energy_export_wh == pytest.approx(TRUTH["energy_export_wh"])
    assert meter.dropped == ()
    assert [r.requests for r in steady] == [1, 1], "the plan of a meter that answers all"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
