"""The simulated car: ramps, quirks, energy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.car import Car, CarSpec


def charging_car(spec: CarSpec, *, offered_a: float = 32.0) -> Car:
    car = Car(spec, now_s=0.0)
    car.offer(offered_a, 0.0)
    car.advance(1000.0)
    return car


@pytest.mark.parametrize(
    ("ramp_down_a_per_s", "start_a", "new_limit_a"),
    [
        pytest.param(10.0, 32.0, 10.0, id="fast-ramp"),
        pytest.param(2.0, 32.0, 16.0, id="slow-ramp"),
        pytest.param(5.0, 16.0, 6.0, id="down-to-floor"),
    ],
)
def test_car_follows_a_lowered_limit_within_its_ramp(
    ramp_down_a_per_s: float, start_a: float, new_limit_a: float
) -> None:
    spec = CarSpec(max_current_a=start_a, ramp_down_a_per_s=ramp_down_a_per_s, energy_need_wh=1e9)
    car = charging_car(spec)
    assert car.current_a(1000.0) == start_a
    car.offer(new_limit_a, 1000.0)
    ramp_s = (start_a - new_limit_a) / ramp_down_a_per_s
    halfway = car.current_a(1000.0 + ramp_s / 2)
    assert halfway == pytest.approx((start_a + new_limit_a) / 2)
    assert car.current_a(1000.0 + ramp_s) == pytest.approx(new_limit_a)
    assert car.current_a(1000.0 + ramp_s + 60) == pytest.approx(new_limit_a)


def test_car_ramps_up_to_its_own_maximum_not_the_offer() -> None:
    car = Car(CarSpec(max_current_a=16.0, ramp_up_a_per_s=4.0), now_s=0.0)
    car.offer(32.0, 0.0)
    assert car.current_a(2.0) == pytest.approx(8.0)
    assert car.current_a(4.0) == pytest.approx(16.0)
    assert car.current_a(100.0) == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("offered_a", "expected_a"),
    [
        pytest.param(7.0, 0.0, id="below-pause-threshold"),
        pytest.param(8.0, 8.0, id="at-threshold"),
        pytest.param(5.0, 0.0, id="below-iec-floor"),
        pytest.param(12.0, 12.0, id="above"),
    ],
)
def test_pause_quirk_draws_nothing_below_its_threshold(offered_a: float, expected_a: float) -> None:
    car = charging_car(
        CarSpec(max_current_a=16.0, pause_below_a=8.0, energy_need_wh=1e9), offered_a=16
    )
    car.offer(offered_a, 1000.0)
    assert car.current_a(2000.0) == pytest.approx(expected_a)


def test_wont_start_at_6_a_but_keeps_charging_when_lowered_to_6_a() -> None:
    spec = CarSpec(max_current_a=16.0, min_start_a=7.0, energy_need_wh=1e9)
    idle = Car(spec, now_s=0.0)
    idle.offer(6.0, 0.0)
    assert idle.current_a(100.0) == 0.0
    running = charging_car(spec, offered_a=10.0)
    running.offer(6.0, 1000.0)
    assert running.current_a(2000.0) == pytest.approx(6.0)


def test_single_phase_car_loads_only_its_phase() -> None:
    car = charging_car(CarSpec(phases=1, single_phase=2, max_current_a=16.0))
    assert car.phase_currents_a(1000.0) == pytest.approx((0.0, 16.0, 0.0))
    assert car.power_w(1000.0) == pytest.approx(16.0 * 230.0)


def test_constant_current_energy_is_exact() -> None:
    car = charging_car(CarSpec(max_current_a=16.0, energy_need_wh=1e9))
    before = car.energy_wh(1000.0)
    assert car.energy_wh(1000.0 + 3600.0) - before == pytest.approx(16.0 * 230.0 * 3)


def test_car_stops_when_its_energy_need_is_met() -> None:
    car = Car(CarSpec(max_current_a=16.0, energy_need_wh=1000.0, ramp_up_a_per_s=1e6), now_s=0.0)
    car.offer(16.0, 0.0)
    assert car.energy_wh(36_000.0) == pytest.approx(1000.0, abs=0.5)
    assert car.is_full(36_000.0)
    assert car.current_a(36_000.0) == 0.0


def test_invalid_spec_names_the_car_and_the_value() -> None:
    with pytest.raises(ValueError, match=r"'zoe'.*phases must be 1 or 3, got 2"):
        CarSpec(name="zoe", phases=2)


steps = st.lists(st.tuples(st.floats(0.0, 120.0), st.floats(0.0, 40.0)), min_size=1, max_size=30)


@given(steps=steps)
def test_energy_only_grows_and_current_stays_within_limits(
    steps: list[tuple[float, float]],
) -> None:
    spec = CarSpec(max_current_a=20.0, energy_need_wh=5_000.0, pause_below_a=7.0, min_start_a=8.0)
    car = Car(spec, now_s=0.0)
    now = 0.0
    energy = 0.0
    for dt, offered in steps:
        now += dt
        car.offer(offered, now)
        current = car.current_a(now)
        assert 0.0 <= current <= spec.max_current_a + 1e-9
        assert car.energy_wh(now) >= energy
        energy = car.energy_wh(now)


@given(steps=steps, splits=st.integers(1, 20))
def test_energy_does_not_depend_on_how_often_the_car_is_asked(
    steps: list[tuple[float, float]], splits: int
) -> None:
    spec = CarSpec(max_current_a=32.0, energy_need_wh=1e9, ramp_up_a_per_s=3.0)
    coarse, fine = Car(spec, now_s=0.0), Car(spec, now_s=0.0)
    now = 0.0
    for dt, offered in steps:
        for i in range(1, splits + 1):
            fine.advance(now + dt * i / splits)
        now += dt
        coarse.offer(offered, now)
        fine.offer(offered, now)
    assert fine.energy_wh(now + 50) == pytest.approx(coarse.energy_wh(now + 50), rel=1e-9, abs=1e-6)
