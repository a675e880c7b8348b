"""Fixtures for the simulated peers talking over real sockets on 127.0.0.1 port 0."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sim.charge_point import SimChargePoint
from sim.clock import Clock
from sim.cloud import SimCloud
from sim.cp_config import ChargePointConfig
from tests.helpers import wait_for

GOOD_TAG = "TAG-OK"
PROTOCOLS = [pytest.param("ocpp1.6", id="ocpp16"), pytest.param("ocpp2.0.1", id="ocpp201")]

StartCp = Callable[..., Awaitable[SimChargePoint]]


def fast_config(
    url: str, protocol: str, charge_point_id: str = "CP1", **over: Any
) -> ChargePointConfig:
    """Timers short enough for tests; everything else as a real charger."""
    base = ChargePointConfig(
        charge_point_id=charge_point_id,
        url=url,
        protocol=protocol,
        meter_interval_s=0.2,
        tick_s=0.05,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
        response_timeout_s=5.0,
        transaction_message_retry_interval_s=0.05,
        ping_interval_s=None,
    )
    return dataclasses.replace(base, **over)


@pytest.fixture
async def cloud() -> AsyncIterator[SimCloud]:
    c = SimCloud(id_tags=[GOOD_TAG, "TAG-2"], heartbeat_interval_s=30)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def start_cp() -> AsyncIterator[StartCp]:
    """Start a simulated charge point, wait until the cloud accepted it, stop it at the end."""
    started: list[SimChargePoint] = []

    async def start(
        config: ChargePointConfig, *, clock: Clock | None = None, wait_online: bool = True
    ) -> SimChargePoint:
        cp = SimChargePoint(config, clock=clock)
        started.append(cp)
        await cp.start()
        if wait_online:
            await wait_for(lambda: cp.connected, what=f"{config.charge_point_id} online")
        return cp

    yield start
    for cp in started:
        await cp.stop()
    for cp in started:
        assert cp.errors == [], f"{cp.id} recorded errors: {cp.errors}"
