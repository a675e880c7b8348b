"""Fixtures shared by the integration tests: a recording simulated cloud (a directory may define
its own ``cloud`` with other settings, as ``sim/`` does)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim.cloud import SimCloud


@pytest.fixture
async def cloud() -> AsyncIterator[SimCloud]:
    c = SimCloud(heartbeat_interval_s=300)
    await c.start()
    yield c
    await c.stop()
