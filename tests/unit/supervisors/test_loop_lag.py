"""The loop-lag monitor every node runs (supervisors/loop_lag.py), and its status cell."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.status import loop_lag_cell
from supervisors.loop_lag import BUCKETS_MS, LoopLag, histogram_percentile, monitor
from tests.helpers import wait_for


def test_report_of_the_last_window() -> None:
    lag = LoopLag(window_s=10.0)
    for i in range(100):
        lag.add(float(i) * 0.1, 1.0 if i % 10 else 40.0)  # every tenth sample 40 ms late
    lag.add(100.0, 2.0)  # 90 s later: everything before fell out of the window
    lag.add(100.5, 3.0)
    report = lag.report()
    assert (report["samples"], report["p50_ms"], report["max_ms"]) == (2, 3.0, 3.0)
    assert report["max_ms_since_start"] == 40.0
    assert sum(report["histogram"].values()) == 102, "the histogram counts since the start"
    assert report["histogram"]["1"] == 90
    assert report["histogram"]["50"] == 10


def test_an_empty_report() -> None:
    report = LoopLag().report()
    assert (report["samples"], report["p99_ms"], report["max_ms"]) == (0, None, None)
    assert loop_lag_cell(report) == "-"
    assert loop_lag_cell(None) == "-"


def test_two_readings_give_the_lag_between_them() -> None:
    lag = LoopLag()
    for i in range(50):
        lag.add(i * 0.1, 0.2)
    before = dict(lag.report()["histogram"])
    for i in range(50, 100):
        lag.add(i * 0.1, 12.0 if i % 2 else 0.2)
    after = lag.report()["histogram"]
    between = {k: after[k] - before.get(k, 0) for k in after}
    assert histogram_percentile(between, 0.5) == 0.5
    assert histogram_percentile(between, 0.99) == 15, "12 ms lies in the bucket up to 15 ms"
    assert histogram_percentile(before, 0.99) == 0.5
    assert histogram_percentile({}, 0.5) is None


@given(st.lists(st.floats(min_value=0.0, max_value=5000.0), min_size=1, max_size=200))
def test_the_histogram_bound_is_never_below_the_true_percentile(lags: list[float]) -> None:
    lag = LoopLag(window_s=1e9)
    for i, ms in enumerate(lags):
        lag.add(float(i), ms)
    report = lag.report()
    for q in (0.5, 0.9, 0.99, 1.0):
        bound = histogram_percentile(report["histogram"], q)
        assert bound is not None
        exact = sorted(lags)[max(1, math.ceil(q * len(lags) - 1e-9)) - 1]  # nearest rank
        assert bound >= exact


def test_the_status_cell() -> None:
    lag = LoopLag()
    for i in range(10):
        lag.add(float(i), 0.25 if i else 7.46)
    assert loop_lag_cell(lag.report()) == "p99 7.5 max 7.5 ms"


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag()
    task = asyncio.get_running_loop().create_task(monitor(lag, every_s=0.01))
    try:
        await wait_for(lambda: lag.samples >= 3, what="the monitor's first samples")
        time.sleep(0.2)  # noqa: ASYNC251  (the fault: the loop runs nothing for 200 ms)
        await wait_for(lambda: lag.max_ms >= 150, what="the blocked loop in the lag")
        assert lag.report()["max_ms"] >= 150
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("value", [0.0, 0.5, 0.50001, 1000.0, 1000.1])
def test_bucket_edges(value: float) -> None:
    lag = LoopLag()
    lag.add(0.0, value)
    (label,) = [k for k, n in lag.report()["histogram"].items() if n]
    bound = float(label)
    assert value <= bound
    lower = [b for b in BUCKETS_MS if b < bound]
    assert not lower or value > lower[-1]
