"""The load generator against the simulated cloud: API and command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from sim.cloud import SimCloud
from sim.loadgen import run_load_async

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "protocol", [pytest.param("ocpp1.6", id="ocpp16"), pytest.param("ocpp2.0.1", id="ocpp201")]
)
async def test_run_load_reports_every_round_trip(cloud: SimCloud, protocol: str) -> None:
    report = await run_load_async(cloud.url, 12, 5.0, 1.0, 2, protocol=protocol, prefix="LG")
    assert report.errors == 0, report.first_error
    assert report.connected == 12
    assert report.answered == report.sent >= 12 * 4
    assert 0.0 < report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    # Every message the generator counted reached the cloud: boots plus measured calls.
    received = sum(len(cloud.received(f"LG{i:05d}")) for i in range(12))
    assert received == 12 + report.sent
    assert {cloud.charge_points[f"LG{i:05d}"].subprotocol for i in range(12)} == {protocol}


async def test_quick_command_line_prints_percentiles_and_no_errors(cloud: SimCloud) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.loadgen",
        "--quick",
        "--url",
        cloud.url,
        "--json",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["errors"] == 0
    assert report["charge_points"] == report["connected"] == 50
    assert report["p99_ms"] >= report["p50_ms"] > 0
    assert len(cloud.charge_points) == 50


async def test_bad_arguments_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="rate=0"):
        await run_load_async("ws://127.0.0.1:1/ocpp", 1, 0.0, 1.0, 1)
