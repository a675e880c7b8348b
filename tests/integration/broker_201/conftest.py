"""Fixtures: a recording simulated cloud; stations stopped (and checked error-free) at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim.charge_point import SimChargePoint
from sim.cloud import SimCloud


@pytest.fixture
async def cloud() -> AsyncIterator[SimCloud]:
    c = SimCloud(heartbeat_interval_s=300)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def stations() -> AsyncIterator[list[SimChargePoint]]:
    started: list[SimChargePoint] = []
    yield started
    for cp in started:
        await cp.stop()
    for cp in started:
        assert cp.errors == [], f"{cp.id} recorded errors: {cp.errors}"
