"""Fixtures: a recording simulated cloud, and ledger charge points stopped at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim.cloud import SimCloud
from tests.integration.broker_faults.ledger_cp import LedgerChargePoint


@pytest.fixture
async def cloud() -> AsyncIterator[SimCloud]:
    c = SimCloud(heartbeat_interval_s=300)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def ledger_cps() -> AsyncIterator[list[LedgerChargePoint]]:
    """Charge points the test appends here are stopped at the end."""
    cps: list[LedgerChargePoint] = []
    yield cps
    for cp in cps:
        await cp.stop()
