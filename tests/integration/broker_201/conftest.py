"""Fixtures: stations stopped (and checked error-free) at the end (the cloud: ../conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim.charge_point import SimChargePoint


@pytest.fixture
async def stations() -> AsyncIterator[list[SimChargePoint]]:
    started: list[SimChargePoint] = []
    yield started
    for cp in started:
        await cp.stop()
    for cp in started:
        assert cp.errors == [], f"{cp.id} recorded errors: {cp.errors}"
