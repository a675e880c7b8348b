"""How the loop counts a car whose sample is older than its last change, and what it learns."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from actors.allocation_types import ConnectorDemand, PerPhase
from actors.car_learning import (
    NEVER_SAMPLED,
    CarKnowledge,
    as_counted,
    learn,
    reflects,
)
from tests.unit.energy.builders import car, phases

SETTLE_S = 5.0


def sampled(
    measured_a: PerPhase, at_s: float, *, arrived_s: float = 0.0, max_a: float = 32.0
) -> ConnectorDemand:
    d = car("a", measured_a=measured_a, arrived_s=arrived_s, max_a=max_a)
    return replace(d, sampled_s=at_s)


@pytest.mark.parametrize(
    ("sampled_s", "measured", "offered", "changed_s", "now_s", "expected"),
    [
        pytest.param(None, 0.0, 6.0, 100.0, 104.0, False, id="untimed-before-settle"),
        pytest.param(None, 0.0, 6.0, 100.0, 105.0, True, id="untimed-after-settle"),
        pytest.param(NEVER_SAMPLED, 0.0, 6.0, None, 200.0, False, id="never-sampled"),
        pytest.param(99.0, 0.0, 6.0, 100.0, 200.0, False, id="sample-before-the-change"),
        pytest.param(102.0, 0.0, 6.0, 100.0, 200.0, False, id="sample-while-it-reacts"),
        pytest.param(102.0, 5.8, 6.0, 100.0, 200.0, True, id="sample-shows-it-followed"),
        pytest.param(105.0, 0.0, 6.0, 100.0, 200.0, True, id="sample-settle-after-change"),
        pytest.param(50.0, 0.0, 6.0, None, 200.0, True, id="never-changed"),
    ],
)
def test_a_sample_reflects_the_offer_once_the_car_had_time_to_follow(
    sampled_s: float | None,
    measured: float,
    offered: float,
    changed_s: float | None,
    now_s: float,
    expected: bool,
) -> None:
    d = replace(car("a", measured_a=phases(measured)), sampled_s=sampled_s)
    got = reflects(d, offered_a=offered, changed_s=changed_s, now_s=now_s, settle_s=SETTLE_S)
    assert got is expected


@pytest.mark.parametrize(
    ("sample", "offered", "now_s", "high", "low"),
    [
        # Resumed at 6 A at t=100; the sample from t=95 says 0 A.
        pytest.param(0.0, 6.0, 101.0, 6.0, 0.0, id="resume-reacting"),
        pytest.param(0.0, 6.0, 120.0, 6.0, 0.0, id="resume-after-reaction"),
        # Lowered from 16 A to 10 A at t=100; the sample from t=95 says 16 A.
        pytest.param(16.0, 10.0, 101.0, 16.0, 10.0, id="decrease-reacting"),
        pytest.param(16.0, 10.0, 120.0, 10.0, 10.0, id="decrease-after-reaction"),
        # Paused at t=100 while drawing 8 A.
        pytest.param(8.0, 0.0, 101.0, 8.0, 0.0, id="pause-reacting"),
        pytest.param(8.0, 0.0, 120.0, 0.0, 0.0, id="pause-after-reaction"),
    ],
)
def test_a_car_in_transition_is_counted_between_its_sample_and_its_offer(
    sample: float, offered: float, now_s: float, high: float, low: float
) -> None:
    d = sampled(phases(sample), 95.0)
    got_high, got_low = as_counted(
        d, CarKnowledge(), offered_a=offered, changed_s=100.0, now_s=now_s, settle_s=SETTLE_S
    )
    assert got_high.measured_a == phases(high)
    assert got_low.measured_a == phases(low)
    assert not got_high.settled
    assert got_high.offered_a == offered


def test_a_reflecting_sample_is_counted_as_it_is_once() -> None:
    d = sampled((0.0, 7.5, 0.0), 106.0)
    high, low = as_counted(
        d, CarKnowledge(phases=(1,)), offered_a=8.0, changed_s=100.0, now_s=110.0, settle_s=5.0
    )
    assert high is low
    assert high.measured_a == (0.0, 7.5, 0.0)
    assert high.settled
    assert high.car_phases == (1,)


def test_a_one_phase_car_in_transition_is_counted_on_its_phase_only() -> None:
    d = sampled((0.0, 6.0, 0.0), 95.0)
    high, low = as_counted(
        d, CarKnowledge(phases=(1,)), offered_a=10.0, changed_s=100.0, now_s=120.0, settle_s=5.0
    )
    assert high.measured_a == (0.0, 10.0, 0.0)
    assert low.measured_a == (0.0, 6.0, 0.0)


def test_a_connector_that_never_reported_counts_at_its_offer_high_and_zero_low() -> None:
    d = replace(car("a"), sampled_s=NEVER_SAMPLED)
    high, low = as_counted(
        d, CarKnowledge(), offered_a=12.0, changed_s=100.0, now_s=500.0, settle_s=5.0
    )
    assert high.measured_a == phases(12.0)
    assert low.measured_a == phases(0.0)


def _learn(k: CarKnowledge, d: ConnectorDemand, offered: float) -> CarKnowledge:
    return learn(k, d, offered_a=offered, reflecting=True, min_current_a=6.0, probe_step_a=2.0)


@pytest.mark.parametrize(
    ("measured", "phases_learned"),
    [
        pytest.param((6.0, 6.0, 6.0), (0, 1, 2), id="three-phase"),
        pytest.param((0.0, 6.0, 0.0), (1,), id="one-phase-on-l2"),
        pytest.param((5.8, 0.2, 0.0), (0,), id="one-phase-with-noise"),
        pytest.param((2.0, 0.0, 0.0), (), id="too-little-to-tell"),
    ],
)
def test_phases_are_learned_from_a_car_clearly_drawing(
    measured: PerPhase, phases_learned: tuple[int, ...]
) -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled(measured, 10.0), 6.0)
    assert k.phases == phases_learned
    assert not k.idle


def test_a_phase_seen_drawing_later_is_added_back() -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled((6.0, 0.0, 0.0), 10.0), 6.0)
    k = _learn(k, sampled((6.0, 6.0, 0.0), 20.0), 6.0)
    assert k.phases == (0, 1)


def test_a_new_arrival_forgets_what_was_learned() -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled((6.0, 0.0, 0.0), 10.0), 6.0)
    assert k.phases == (0,)
    k = _learn(k, sampled((6.0, 6.0, 6.0), 20.0, arrived_s=15.0), 6.0)
    assert k == CarKnowledge(session_s=15.0, phases=(0, 1, 2))


def test_nothing_is_learned_from_untimed_or_unsettled_samples_or_below_the_minimum() -> None:
    k0 = CarKnowledge(session_s=0.0)
    untimed = car("a", measured_a=phases(0.0))
    assert _learn(k0, untimed, 6.0) == k0
    assert (
        learn(
            k0,
            sampled(phases(0.0), 10.0),
            offered_a=6.0,
            reflecting=False,
            min_current_a=6.0,
            probe_step_a=2.0,
        )
        == k0
    )
    assert _learn(k0, sampled(phases(0.0), 10.0), 0.0) == k0


def test_a_car_that_does_not_draw_at_the_minimum_gets_one_probe_then_is_idle() -> None:
    zero = sampled(phases(0.0), 10.0)
    k = _learn(CarKnowledge(session_s=0.0), zero, 6.0)
    assert (k.min_a, k.probed, k.idle) == (8.0, True, True)
    assert _learn(k, zero, 6.0) == k, "the probe is not in force yet: nothing changes"
    idle = _learn(k, zero, 8.0)
    assert (idle.min_a, idle.idle) == (0.0, True), "no draw at the probe either: idle"
    again = _learn(idle, zero, 6.0)
    assert (again.min_a, again.idle) == (0.0, True), "one probe per session"


def test_a_car_that_starts_at_the_probe_keeps_it_as_its_minimum() -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled(phases(0.0), 10.0), 6.0)
    k = _learn(k, sampled(phases(8.0), 20.0), 8.0)
    assert (k.min_a, k.idle, k.phases) == (8.0, False, (0, 1, 2))


def test_a_car_that_stops_drawing_above_the_probe_is_idle_without_a_probe() -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled(phases(16.0), 10.0), 16.0)
    k = _learn(k, sampled(phases(0.0), 30.0), 16.0)
    assert (k.min_a, k.idle) == (0.0, True)


def test_the_probe_never_exceeds_the_connector_maximum() -> None:
    k = _learn(CarKnowledge(session_s=0.0), sampled(phases(0.0), 10.0, max_a=7.0), 6.0)
    assert k.min_a == 7.0


def test_an_inactive_connector_forgets_everything() -> None:
    k = CarKnowledge(session_s=0.0, phases=(0,), min_a=8.0, probed=True)
    assert _learn(k, car("a", active=False), 0.0) == CarKnowledge()
    assert math.isinf(NEVER_SAMPLED)
