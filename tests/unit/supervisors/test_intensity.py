from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisors.intensity import Backoff, backoff_delay_s, next_attempt, restart_allowed


@pytest.mark.parametrize(
    ("history", "now", "allowed"),
    [
        pytest.param((), 0.0, True, id="first"),
        pytest.param((0.0, 1.0), 2.0, True, id="third-within-max-3"),
        pytest.param((0.0, 1.0, 2.0), 3.0, False, id="fourth-within-period"),
        pytest.param((0.0, 1.0, 2.0), 10.5, True, id="old-ones-expired"),
        pytest.param((5.0, 6.0, 7.0), 15.0, True, id="exactly-period-later-expires"),
    ],
)
def test_restart_allowed(history: tuple[float, ...], now: float, allowed: bool) -> None:
    ok, _ = restart_allowed(history, now, max_restarts=3, period_s=10.0)
    assert ok is allowed


def test_zero_restarts_means_give_up_at_once() -> None:
    assert restart_allowed((), 0.0, max_restarts=0, period_s=1.0)[0] is False


@given(
    st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=30),
    st.integers(min_value=0, max_value=10),
    st.floats(min_value=0.1, max_value=100),
)
def test_history_only_keeps_the_period(
    times: list[float], max_restarts: int, period: float
) -> None:
    history: tuple[float, ...] = ()
    for now in sorted(times):
        ok, history = restart_allowed(history, now, max_restarts=max_restarts, period_s=period)
        assert all(now - t < period for t in history[:-1])
        assert ok == (len(history) <= max_restarts)


@given(
    st.integers(min_value=0, max_value=50),
    st.floats(min_value=0, max_value=0.999),
    st.floats(min_value=0.01, max_value=5),
    st.floats(min_value=1, max_value=4),
    st.floats(min_value=0, max_value=0.9),
)
def test_backoff_stays_within_jittered_bounds(
    attempt: int, r: float, min_s: float, factor: float, jitter: float
) -> None:
    b = Backoff(min_s=min_s, max_s=min_s * 50, factor=factor, jitter=jitter)
    delay = backoff_delay_s(b, attempt, r)
    base = min(b.max_s, b.min_s * b.factor**attempt)
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_backoff_grows_then_caps() -> None:
    b = Backoff(min_s=1, max_s=8, factor=2, jitter=0)
    assert [backoff_delay_s(b, n, 0.5) for n in range(6)] == [1, 2, 4, 8, 8, 8]


def test_attempts_reset_after_a_long_run() -> None:
    b = Backoff(reset_after_s=30)
    assert next_attempt(4, 29.9, b) == 5
    assert next_attempt(4, 30.0, b) == 0
