"""A simulated electric car on one connector: pure physics, ``now_s`` is always a parameter.

The car draws ``min(offered, own max)`` per phase on 1 or 3 phases, follows a new offered current
along a linear ramp (cars take a few seconds to settle after a PWM change), stops when its energy need
is met and can carry two field quirks: it pauses (draws 0) while offered less than
``pause_below_a``, and it will not start drawing from standstill below ``min_start_a`` (a Renault Zoe
does not start at 6 A but keeps charging when lowered to 6 A). Below the IEC 61851 floor of 6 A no
car draws at all.

Energy is integrated exactly over the piecewise-linear current, so the register only grows and does
not depend on how often the car is asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IEC_MIN_CURRENT_A = 6.0
NOMINAL_VOLTAGE_V = 230.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CarSpec:
    name: str = "car"
    max_current_a: float = 16.0
    phases: int = 3
    # Which grid phase (1, 2 or 3) a one-phase car loads; ignored for three-phase cars.
    single_phase: int = 1
    energy_need_wh: float = 30_000.0
    ramp_up_a_per_s: float = 5.0
    ramp_down_a_per_s: float = 10.0
    pause_below_a: float = 0.0
    min_start_a: float = 0.0
    voltage_v: float = NOMINAL_VOLTAGE_V

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"CarSpec {self.name!r}: phases must be 1 or 3, got {self.phases!r}")
        if self.single_phase not in (1, 2, 3):
            raise ValueError(
                f"CarSpec {self.name!r}: single_phase must be 1, 2 or 3, got {self.single_phase!r}"
            )
        if self.max_current_a <= 0:
            raise ValueError(
                f"CarSpec {self.name!r}: max_current_a must be > 0, got {self.max_current_a!r}"
            )
        if self.ramp_up_a_per_s <= 0 or self.ramp_down_a_per_s <= 0:
            raise ValueError(
                f"CarSpec {self.name!r}: ramps must be > 0 A/s, got up {self.ramp_up_a_per_s!r}, "
                f"down {self.ramp_down_a_per_s!r}"
            )


class Car:
    """The state of one car: current per phase, target, energy delivered so far."""

    __slots__ = ("_current_a", "_energy_wh", "_last_s", "_offered_a", "_target_a", "spec")

    def __init__(self, spec: CarSpec, *, now_s: float, energy_wh: float = 0.0) -> None:
        self.spec = spec
        self._last_s = now_s
        self._offered_a = 0.0
        self._target_a = 0.0
        self._current_a = 0.0
        self._energy_wh = energy_wh

    # -- queries (each advances the car to now_s first) --------------------------------------------

    def current_a(self, now_s: float) -> float:
        """Current per active phase."""
        self.advance(now_s)
        return self._current_a

    def phase_currents_a(self, now_s: float) -> tuple[float, float, float]:
        current = self.current_a(now_s)
        if self.spec.phases == 3:
            return (current, current, current)
        phases = [0.0, 0.0, 0.0]
        phases[self.spec.single_phase - 1] = current
        return (phases[0], phases[1], phases[2])

    def power_w(self, now_s: float) -> float:
        return self.current_a(now_s) * self.spec.voltage_v * self.spec.phases

    def energy_wh(self, now_s: float) -> float:
        self.advance(now_s)
        return self._energy_wh

    def is_full(self, now_s: float) -> bool:
        self.advance(now_s)
        return self._energy_wh >= self.spec.energy_need_wh

    @property
    def offered_a(self) -> float:
        return self._offered_a

    def target_a(self, now_s: float) -> float:
        self.advance(now_s)
        return self._target_a

    # -- commands ----------------------------------------------------------------------------------

    def offer(self, offered_a: float, now_s: float) -> None:
        """The charger offers ``offered_a`` per phase from ``now_s`` on (0 stops the car)."""
        self.advance(now_s)
        self._offered_a = max(0.0, offered_a)
        self._target_a = self._desired_a()

    def advance(self, now_s: float) -> None:
        """Integrate current and energy up to ``now_s``; a time in the past changes nothing."""
        dt = now_s - self._last_s
        if dt <= 0:
            return
        self._last_s = now_s
        while dt > 0:
            step = self._advance_until_event(dt)
            dt -= step

    # -- internals ---------------------------------------------------------------------------------

    def _desired_a(self) -> float:
        spec = self.spec
        if self._energy_wh >= spec.energy_need_wh:
            return 0.0
        offered = min(self._offered_a, spec.max_current_a)
        if offered < IEC_MIN_CURRENT_A or offered < spec.pause_below_a:
            return 0.0
        standing_still = self._current_a == 0.0 and self._target_a == 0.0
        if standing_still and offered < spec.min_start_a:
            return 0.0
        return offered

    def _advance_until_event(self, dt: float) -> float:
        """Advance at most ``dt`` seconds, stopping early at the end of a ramp or a full battery.

        Returns the seconds advanced; the caller loops so the integral stays exact.
        """
        start_a = self._current_a
        target_a = self._target_a
        if start_a < target_a:
            rate = self.spec.ramp_up_a_per_s
        elif start_a > target_a:
            rate = -self.spec.ramp_down_a_per_s
        else:
            rate = 0.0
        ramp_left_s = 0.0 if rate == 0.0 else (target_a - start_a) / rate
        if rate == 0.0:
            step, end_a = dt, start_a
        elif ramp_left_s <= dt:
            step, end_a = ramp_left_s, target_a
        else:
            step, end_a = dt, start_a + rate * dt
        wh_per_as = self.spec.voltage_v * self.spec.phases / 3600.0
        energy_step_wh = (start_a + end_a) / 2.0 * step * wh_per_as
        remaining_wh = self.spec.energy_need_wh - self._energy_wh
        if energy_step_wh >= remaining_wh > 0:
            # The battery fills inside this step: find when, exactly, on the linear current.
            step = _time_to_energy(start_a, rate, remaining_wh / wh_per_as)
            energy_step_wh = remaining_wh
        self._energy_wh += max(0.0, energy_step_wh)
        if self._energy_wh >= self.spec.energy_need_wh:
            # A full battery stops drawing at once (the BMS opens, no ramp down).
            self._energy_wh = max(self._energy_wh, self.spec.energy_need_wh)
            self._current_a = 0.0
            self._target_a = 0.0
            return step if step > 0 else dt
        self._current_a = 0.0 if abs(end_a) < 1e-9 else end_a
        if step < dt:
            # A ramp ended: the target may change now (quirks depend on standing still).
            self._target_a = self._desired_a()
        return step if step > 0 else dt


def _time_to_energy(start_a: float, rate_a_per_s: float, ampere_seconds: float) -> float:
    """Seconds until the integral of ``start_a + rate * t`` reaches ``ampere_seconds``."""
    if rate_a_per_s == 0.0:
        return ampere_seconds / start_a
    disc = start_a * start_a + 2.0 * rate_a_per_s * ampere_seconds
    return (-start_a + math.sqrt(max(0.0, disc))) / rate_a_per_s
