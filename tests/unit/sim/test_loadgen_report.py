"""Load generator helpers: percentiles, the message mix, merging worker results."""

from __future__ import annotations

from array import array

import pytest

from sim.cp_config import ChargePointConfig, quirk
from sim.loadgen import merge, parse_mix, percentile
from sim.loadgen_worker import WorkerResult


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        pytest.param([], 0.5, 0.0, id="empty"),
        pytest.param([1.0], 0.99, 1.0, id="single"),
        pytest.param([float(i) for i in range(1, 101)], 0.50, 50.0, id="p50-of-100"),
        pytest.param([float(i) for i in range(1, 101)], 0.99, 99.0, id="p99-of-100"),
        pytest.param([float(i) for i in range(1, 11)], 0.90, 9.0, id="p90-of-10"),
    ],
)
def test_percentile_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


def test_parse_mix() -> None:
    assert parse_mix("Heartbeat=1, MeterValues=3") == (("Heartbeat", 1.0), ("MeterValues", 3.0))
    with pytest.raises(ValueError, match="unknown action 'Boot'"):
        parse_mix("Boot=1")
    with pytest.raises(ValueError, match="positive weight"):
        parse_mix("Heartbeat=0")


def test_merge_sums_workers_and_pools_latencies() -> None:
    a = WorkerResult(
        worker_index=0,
        charge_points=2,
        connected=2,
        sent=3,
        answered=3,
        measured_s=2.0,
        latencies_ms=array("d", [1.0, 2.0, 3.0]).tobytes(),
    )
    b = WorkerResult(
        worker_index=1,
        charge_points=2,
        connected=1,
        connect_failures=1,
        sent=1,
        answered=0,
        timeouts=1,
        measured_s=2.0,
        first_error="timeout: Heartbeat",
        latencies_ms=b"",
    )
    report = merge(
        [a, b], url="ws://x", protocol="ocpp1.6", rate_per_cp_hz=1, duration_s=2, wall_s=3
    )
    assert (report.charge_points, report.connected, report.sent, report.answered) == (4, 3, 4, 3)
    assert report.errors == 2
    assert report.first_error == "timeout: Heartbeat"
    assert (report.p50_ms, report.max_ms) == (2.0, 3.0)
    assert report.throughput_msg_s == pytest.approx(1.5)
    assert "p99" in report.summary()


def test_charge_point_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"'CP1': protocol must be one of .* got 'ocpp2.1'"):
        ChargePointConfig(charge_point_id="CP1", url="ws://x", protocol="ocpp2.1")
    with pytest.raises(ValueError, match="unknown charge point quirk 'lazy'"):
        quirk("lazy")
