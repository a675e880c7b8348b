"""The simulated meter over real Modbus/TCP: site load plus cars, per phase, and going silent."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from sim.base_load import BaseLoad
from sim.car import CarSpec
from sim.charge_point import SimChargePoint
from sim.clock import ManualClock
from sim.cloud import SimCloud
from sim.meter import SimMeter
from sim.register_maps import EASTRON_SDM630, JANITZA_UMG604, MeterModel
from tests.integration.sim.conftest import GOOD_TAG, StartCp, fast_config

FLAT = BaseLoad(mean_a=(10.0, 8.0, 12.0), daily_swing=0.0, noise_a=0.0)


async def modbus_client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
    assert await client.connect()
    return client


async def read_quantities(client: AsyncModbusTcpClient, model: MeterModel) -> dict[str, float]:
    count = model.last_address - model.first_address + 1
    if model.table == "input":
        rr = await client.read_input_registers(model.first_address, count=count, device_id=1)
    else:
        rr = await client.read_holding_registers(model.first_address, count=count, device_id=1)
    assert not rr.isError(), rr
    values = {}
    for field in model.fields:
        offset = field.address - model.first_address
        raw = client.convert_from_registers(
            rr.registers[offset : offset + 2], data_type=client.DATATYPE.FLOAT32, word_order="big"
        )
        assert isinstance(raw, float)
        values[field.quantity] = raw / field.scale
    return values


@pytest.fixture
async def site(cloud: SimCloud, start_cp: StartCp) -> tuple[SimChargePoint, ManualClock]:
    """One charge point, a 3-phase car at 16 A and a 1-phase car at 10 A on L2, settled."""
    clock = ManualClock()
    cp = await start_cp(fast_config(cloud.url, "ocpp1.6", connectors=2), clock=clock)
    await cp.plug_in(1, CarSpec(max_current_a=16.0, energy_need_wh=1e9))
    await cp.plug_in(2, CarSpec(max_current_a=10.0, phases=1, single_phase=2, energy_need_wh=1e9))
    await cp.start_transaction(1, GOOD_TAG)
    await cp.start_transaction(2, GOOD_TAG)
    clock.advance(60.0)
    return cp, clock


@pytest.mark.parametrize(
    "model",
    [pytest.param(EASTRON_SDM630, id="sdm630"), pytest.param(JANITZA_UMG604, id="umg604")],
)
async def test_meter_reads_base_load_plus_cars_per_phase(
    site: tuple[SimChargePoint, ManualClock], model: MeterModel
) -> None:
    cp, clock = site
    assert cp.phase_currents_a() == (16.0, 26.0, 16.0)
    async with SimMeter(model=model, base_load=FLAT, sources=[cp], clock=clock) as meter:
        client = await modbus_client(meter.port)
        try:
            q = await read_quantities(client, model)
        finally:
            client.close()
    expected = {"current_l1_a": 26.0, "current_l2_a": 34.0, "current_l3_a": 28.0}
    for name, amps in expected.items():
        assert q[name] == pytest.approx(amps, rel=1e-6), name
    assert q["total_power_w"] == pytest.approx((26.0 + 34.0 + 28.0) * 230.0, rel=1e-6)
    if "power_l2_w" in q:
        assert q["power_l2_w"] == pytest.approx(34.0 * 230.0, rel=1e-6)


async def test_energy_register_integrates_power_and_only_grows(
    site: tuple[SimChargePoint, ManualClock],
) -> None:
    cp, clock = site
    async with SimMeter(base_load=FLAT, sources=[cp], clock=clock) as meter:
        client = await modbus_client(meter.port)
        try:
            first = await read_quantities(client, EASTRON_SDM630)
            clock.advance(1800.0)
            second = await read_quantities(client, EASTRON_SDM630)
        finally:
            client.close()
    delta_wh = second["import_energy_wh"] - first["import_energy_wh"]
    assert delta_wh == pytest.approx(first["total_power_w"] * 0.5, rel=1e-3)
    assert second["export_energy_wh"] == 0.0


async def test_noisy_base_load_is_served_as_computed() -> None:
    clock = ManualClock()
    async with SimMeter(base_load=BaseLoad(seed=3), clock=clock) as meter:
        client = await modbus_client(meter.port)
        try:
            q = await read_quantities(client, EASTRON_SDM630)
        finally:
            client.close()
    served = meter.last_reading
    assert served is not None
    assert q["current_l1_a"] == pytest.approx(served.currents_a[0], rel=1e-6)
    assert q["current_l3_a"] == pytest.approx(served.currents_a[2], rel=1e-6)
    assert served.currents_a != (10.0, 8.0, 12.0), "noise and the daily shape are applied"


async def test_wrong_table_is_an_illegal_address() -> None:
    async with SimMeter(base_load=FLAT) as meter:
        client = await modbus_client(meter.port)
        try:
            rr = await client.read_holding_registers(0, count=2, device_id=1)
        finally:
            client.close()
    assert rr.isError()


async def test_meter_stops_answering_and_resumes() -> None:
    async with SimMeter(base_load=FLAT) as meter:
        client = await modbus_client(meter.port)
        try:
            assert not (await client.read_input_registers(6, count=2, device_id=1)).isError()
            meter.stop_answering()
            with pytest.raises(ModbusIOException):
                await client.read_input_registers(6, count=2, device_id=1)
            reads = meter.reads
            meter.resume_answering()
            if not client.connected:
                assert await client.connect()
            rr = await client.read_input_registers(6, count=2, device_id=1)
            assert not rr.isError()
            assert meter.reads == reads + 1
        finally:
            client.close()
