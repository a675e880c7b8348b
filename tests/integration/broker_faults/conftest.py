"""Fixtures: ledger charge points stopped at the end (the cloud: ../conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.broker_faults.ledger_cp import LedgerChargePoint


@pytest.fixture
async def ledger_cps() -> AsyncIterator[list[LedgerChargePoint]]:
    """Charge points the test appends here are stopped at the end."""
    cps: list[LedgerChargePoint] = []
    yield cps
    for cp in cps:
        await cp.stop()
