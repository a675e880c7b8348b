"""A whole simulated site: mixed protocols, typical and quirky cars, the meter seeing them all."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient

from sim.base_load import BaseLoad
from sim.clock import ManualClock
from sim.cloud import SimCloud
from sim.site import SimSite, SiteSpec
from tests.helpers import wait_for


async def test_site_cars_charge_and_the_meter_sees_them(cloud: SimCloud) -> None:
    clock = ManualClock()
    spec = SiteSpec(
        charge_points=5,
        protocols=("ocpp1.6", "ocpp2.0.1"),
        base_load=BaseLoad(mean_a=(5.0, 5.0, 5.0), daily_swing=0.0, noise_a=0.0),
        charge_point_options=(("tick_s", 0.05), ("backoff_initial_s", 0.05)),
    )
    cloud.id_tags = None
    async with SimSite(spec, url=cloud.url, clock=clock) as site:
        await wait_for(lambda: all(cp.connected for cp in site.charge_points), what="all online")
        await site.arrive_all()
        clock.advance(60.0)
        # 16 A and 32 A three-phase, 32 A on L2, the Zoe at 32 A, the van at 16 A.
        assert site.phase_currents_a() == pytest.approx((96.0, 128.0, 96.0))
        client = AsyncModbusTcpClient("127.0.0.1", port=site.meter.port, timeout=1.0, retries=0)
        assert await client.connect()
        try:
            rr = await client.read_input_registers(0x06, count=6, device_id=1)
        finally:
            client.close()
        currents = client.convert_from_registers(
            rr.registers, data_type=client.DATATYPE.FLOAT32, word_order="big"
        )
        assert currents == pytest.approx([101.0, 133.0, 101.0])
        await site.leave_all()
        await wait_for(
            lambda: all(len(cp.outbox) == 0 for cp in site.charge_points), what="stops delivered"
        )
        assert site.errors == []
    versions = {cp.subprotocol for cp in cloud.charge_points.values()}
    assert versions == {"ocpp1.6", "ocpp2.0.1"}
    ended = [tx.ended for cp in cloud.charge_points.values() for tx in cp.transactions.values()]
    assert ended == [True] * 5
